"""Issue 27, cases 1-2: a full disk costs the log or the video, never the detection.

The faults are real: /dev/full (every write fails with ENOSPC) and a file size limit
(RLIMIT_FSIZE, what `ulimit -f` sets) in a child process, where a write past the limit is
cut short or fails with EFBIG.
"""

import json
import os
import resource
import signal
import subprocess
import sys

import cv2
import pytest

from cli_run import run_cli
from edge_guard import events as events_mod
from edge_guard.bundle import load_bundle
from edge_guard.events import EventWriter, read_events
from edge_guard.guard import Guard
from edge_guard.sources import parse_source
from edge_guard.stream import Stream
from stream_clip import FRAMES, NOISE, write_clip
from tiny_bundle import contrast_labels, make_guard_bundle



@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return make_guard_bundle(tmp_path_factory.mktemp("b") / "bundle", frame=(48, 64), k=8, threshold=0.99)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("v") / "clip.avi")


def _file_limit(limit: int):
    """preexec_fn: a file size limit of ``limit`` bytes, SIGXFSZ ignored (the write then
    fails with EFBIG instead of killing the process), SIGINT as from a terminal."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _run(args, limit=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "edge_guard", "run", *map(str, args)], capture_output=True,
                          text=True, timeout=300, preexec_fn=_file_limit(limit) if limit else None, **kwargs)


def _warnings(err: str) -> list:
    return [line for line in err.splitlines() if "warning" in line]


def test_events_on_a_full_disk_cost_the_log_not_the_run(bundle_dir, video):
    """`run --events /dev/full`: one warning, every frame checked, exit 3 (output lost)."""
    rc, out, err = run_cli(["run", "--source", video, "--bundle", bundle_dir, "--events", "/dev/full",
                            "--max-frames", "3", "--threads", "1", "--seed", "0"])
    assert rc == 3, err
    assert "Traceback" not in err
    (warning,) = _warnings(err)
    assert "cannot write events to /dev/full: No space left on device" in warning
    assert "3 frames read, 3 checked" in out
    # start + 3 frames + end: all lost, and counted.
    assert "# output lost: 5 event record(s), 0 video frame(s)" in out


def test_alarms_reach_the_caller_when_the_log_is_lost(bundle_dir, video):
    warnings = []
    guard = Guard.from_function(load_bundle(bundle_dir), contrast_labels, seed=0)
    with EventWriter("/dev/full") as events:
        summary = Stream(guard, parse_source(source=str(video)), events=events, warn=warnings.append).run()
    assert summary["frames_checked"] == FRAMES and summary["frames_flagged"] == len(NOISE)
    assert summary["alarms"] == 1
    # start, 30 frames, raised and cleared alarms, end
    assert summary["events_lost"] == events.lost == 1 + FRAMES + 2 + 1 and events.lines == 0
    assert list(summary["output_errors"]) == ["events"] and len(warnings) == 1


def test_a_file_size_limit_mid_run_leaves_whole_lines_and_exit_4(bundle_dir, video, tmp_path):
    """`ulimit -f` mid-run: the log keeps only complete records, the stream checks every
    frame, and the exit status says an alarm was raised and output was lost."""
    ev = tmp_path / "ev.jsonl"
    limit = 6000  # the start record and a few frame records
    proc = _run(["--source", video, "--bundle", bundle_dir, "--events", ev, "--threads", "1", "--seed", "0"],
                limit=limit)
    assert proc.returncode == 4, proc.stderr
    assert "Traceback" not in proc.stderr
    (warning,) = _warnings(proc.stderr)
    assert f"cannot write events to {ev}" in warning
    assert f"{FRAMES} frames read, {FRAMES} checked" in proc.stdout and "1 alarm(s)" in proc.stdout
    data = ev.read_bytes()
    assert 0 < len(data) <= limit and data.endswith(b"\n")
    records = [json.loads(line) for line in data.decode().splitlines()]  # every line whole
    # A short record (an alarm) may still fit after a long one did not: each is whole or absent.
    assert records[0]["type"] == "start" and "end" not in [r["type"] for r in records]
    lost = FRAMES + 2 + 2 - len(records)  # start, 30 frames, 2 alarms, end
    assert f"# output lost: {lost} event record(s)" in proc.stdout


def test_a_short_write_is_cut_back_to_the_last_whole_line(tmp_path, monkeypatch):
    path = tmp_path / "ev.jsonl"
    real_write = os.write
    with EventWriter(path) as events:
        assert events.write({"type": "start", "n": 0})
        # The disk takes half a line, then nothing.
        monkeypatch.setattr(events_mod.os, "write", lambda fd, data: real_write(fd, data[:len(data) // 2]))
        assert events.write({"type": "frame", "frame": 0, "pad": "x" * 100}) is False
        assert path.read_bytes().count(b"\n") == 1 and path.read_bytes().endswith(b"\n")
        monkeypatch.setattr(events_mod.os, "write", real_write)  # space again: the log goes on
        assert events.write({"type": "end"})
    assert (events.lines, events.lost) == (2, 1)
    assert "only" in events.error and "bytes written" in events.error
    assert [r["type"] for r in read_events(path)] == ["start", "end"]
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_a_torn_line_from_a_crash_is_ended_even_after_a_failed_write(tmp_path, monkeypatch):
    path = tmp_path / "ev.jsonl"
    path.write_bytes(b'{"type":"start"}\n{"type":"fra')  # a crash cut this line
    real_write = os.write
    with EventWriter(path) as events:
        monkeypatch.setattr(events_mod.os, "write", lambda fd, data: real_write(fd, data[:3]))
        assert events.write({"type": "start"}) is False
        assert path.read_bytes() == b'{"type":"start"}\n{"type":"fra'  # nothing of ours stays
        monkeypatch.setattr(events_mod.os, "write", real_write)
        assert events.write({"type": "start", "run": 2})
    lines = path.read_text().splitlines()
    assert lines[1] == '{"type":"fra' and json.loads(lines[2]) == {"type": "start", "run": 2}


def test_a_video_that_cannot_be_written_is_reported_and_the_run_goes_on(bundle_dir, video, tmp_path):
    """`ulimit -f` under `run --save`: no longer silent. The video is lost, the events (a
    file under the same limit, but small) are whole, and the exit status is 3."""
    saved = tmp_path / "sv.mp4"
    proc = _run(["--source", video, "--bundle", bundle_dir, "--save", saved, "--threads", "1",
                 "--seed", "0", "--max-frames", "8"], limit=2000)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and "FFmpeg" not in proc.stderr
    (warning,) = _warnings(proc.stderr)
    assert f"cannot write the video {saved}" in warning
    assert "8 frames read, 8 checked" in proc.stdout
    assert "# output lost: 0 event record(s), 8 video frame(s)" in proc.stdout
    cap = cv2.VideoCapture(str(saved))
    assert not cap.isOpened()  # what the user would have found, silently, before


def test_printed_lines_on_a_full_disk_cost_the_lines(bundle_dir, video, tmp_path):
    ev = tmp_path / "ev.jsonl"
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "edge_guard", "run", "--source", str(video), "--bundle",
                               str(bundle_dir), "--events", str(ev), "--threads", "1", "--max-frames", "4"],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    (warning,) = _warnings(proc.stderr)
    assert "cannot print" in warning
    end = read_events(ev)[-1]
    assert end["type"] == "end" and end["frames_checked"] == 4 and end["output_errors"] == {}


def test_run_help_documents_the_lost_output_status(capsys):
    from edge_guard.cli import main

    assert main(["run", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "3 no alarm but output was lost" in text and "4 at least one alarm raised and output was lost" in text
