"""edge_guard.events: JSON Lines written per line, read back, torn lines handled."""

import json

import numpy as np
import pytest

from edge_guard.errors import UserError
from edge_guard.events import EventWriter, read_events


def _types(records):
    return [r["type"] for r in records]


def test_event_writer(tmp_path):
    path = tmp_path / "ev.jsonl"
    with EventWriter(path) as events:
        events.write({"type": "frame", "score": float("nan"), "v": np.float32(0.5), "l": [np.int64(3)]})
        # Flushed per line: readable while the writer is still open.
        assert json.loads(path.read_text()) == {"type": "frame", "score": None, "v": 0.5, "l": [3]}
    with open(path, "a") as f:
        f.write('{"type": "fra')  # a line torn by a crash
    assert len(read_events(path)) == 1
    # The restarted service's log goes on after the torn line, on a line of its own.
    with EventWriter(path) as events:
        events.write({"type": "start"})
        events.write({"type": "end"})
    assert _types(read_events(path)) == ["frame", "start", "end"]
    with open(path, "a") as f:
        f.write('{"type": "fra\n{"type": "frame"}\n')  # torn, and not by a restart
    with pytest.raises(ValueError, match="line 5 is not JSON"):
        read_events(path)
    with pytest.raises(UserError, match="does not exist"):
        EventWriter(tmp_path / "nope" / "ev.jsonl")
