"""edge_guard.alarms: M of the last N checked frames, against the definition."""

import numpy as np
import pytest

from edge_guard.alarms import AlarmWindow, parse_alarm
from edge_guard.errors import UserError


def test_alarm_window_raises_once_per_episode():
    flags = [1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0]
    alarm = AlarmWindow(3, 5)
    changes = [(i, c) for i, f in enumerate(flags) if (c := alarm.update(bool(f)))]
    assert changes == [(3, "raised"), (8, "cleared"), (13, "raised"), (15, "cleared")]
    assert alarm.episodes == 2 and not alarm.active
    # Against the definition, on random sequences.
    rng = np.random.default_rng(0)
    for m, n in [(1, 1), (2, 3), (3, 5), (5, 5)]:
        flags = rng.random(300) < 0.4
        alarm, active = AlarmWindow(m, n), False
        for i, f in enumerate(flags):
            now = flags[max(0, i - n + 1):i + 1].sum() >= m
            expected = "raised" if now and not active else "cleared" if active and not now else None
            assert alarm.update(bool(f)) == expected
            active = now
    assert parse_alarm("3/5") == (3, 5)
    for bad in ("5/3", "0/4", "3", "a/b"):
        with pytest.raises(UserError):
            parse_alarm(bad)
