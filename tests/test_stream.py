"""`edge-guard run` and edge_guard.stream: events, skipping, alarms, reconnects, errors."""

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from edge_guard import stream as stream_mod
from edge_guard.bundle import load_bundle
from edge_guard.cli import main
from edge_guard.events import EventWriter, read_events
from edge_guard.guard import STAGES, Guard
from edge_guard.sources import Source, SourceError, parse_source
from edge_guard.stream import Stream
from stream_clip import FRAMES, NOISE, H, W, clip_frame, write_clip
from tiny_bundle import contrast_labels, make_frame_bundle, make_guard_bundle

# A frame record of the frame detector; the pairs detector's also keeps its older names.
FRAME_FIELDS = {"type", "frame", "capture_time", "score", "threshold", "adversarial", "latency_ms",
                "detector", "statistic", "scores", "boxes", "patch_size",
                "skipped_since_last", "alarm_active", "alarm_stat", "k", "timings_ms",
                "frame_size", "input_size", "backend", "provider"}
PAIRS_FIELDS = FRAME_FIELDS | {"pair_mious", "pairs"}
START_FIELDS = {"type", "time", "version", "source", "source_kind", "live", "realtime", "every",
                "max_frames", "bundle", "model_sha256", "backend", "provider", "selection", "detector",
                "statistic", "k", "threshold", "patch_size", "frame_size", "input_size", "source_fps", "alarm",
                "seed"}
END_FIELDS = {"type", "time", "reason", "frames_read", "frames_checked", "frames_skipped",
              "skipped_every", "skipped_busy", "skipped_at_stop", "frames_flagged", "alarms",
              "alarm_active", "gaps", "duration_s", "fps_read", "fps_checked", "latency_ms", "check_ms",
              "events_lost", "video_lost", "plot", "output_errors"}


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return make_guard_bundle(tmp_path_factory.mktemp("b") / "bundle", frame=(48, 64), k=8, threshold=0.99)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """30 frames of solid colours with noise at NOISE; FFV1 is lossless, so noise stays noise."""
    return write_clip(tmp_path_factory.mktemp("v") / "clip.avi")


def _types(records):
    return [r["type"] for r in records]


def _frames(records):
    return [r for r in records if r["type"] == "frame"]


def _rank(values, q):
    """The nearest-rank percentile."""
    return sorted(values)[max(0, math.ceil(q / 100 * len(values)) - 1)]


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_run_file_end_to_end(bundle_dir, video, tmp_path, capsys):
    ev, out = tmp_path / "events.jsonl", tmp_path / "checked.mp4"
    rc = main(["run", "--source", str(video), "--bundle", str(bundle_dir), "--events", str(ev),
               "--save", str(out), "--seed", "0", "--threads", "1", "--backend", "onnxruntime-cpu"])
    assert rc == 1  # frames 10-13 flagged: 3 of 5 -> an alarm
    records = read_events(ev)
    assert records[0]["type"] == "start" and records[-1]["type"] == "end"
    assert _types(records).count("start") == 1 and _types(records).count("end") == 1
    start, end, frames = records[0], records[-1], _frames(records)
    assert set(start) == START_FIELDS
    assert start["source_kind"] == "file" and not start["live"] and not start["realtime"]
    assert start["provider"] == "CPUExecutionProvider" and start["k"] == 8
    assert start["frame_size"] == [48, 64] and start["input_size"] == [H, W] and start["seed"] == 0
    assert start["source_fps"] == pytest.approx(30.0)
    assert (start["detector"], start["statistic"]) == ("pairs", "miou")
    for r in frames:
        assert set(r) == PAIRS_FIELDS and (r["detector"], r["statistic"], r["patch_size"]) == ("pairs", "miou", 16)
        assert set(r["timings_ms"]) == set(STAGES) - {"segment"}
        assert len(r["pairs"]) == len(r["pair_mious"]) == r["k"] == 8
        assert r["boxes"] == r["pairs"] and r["scores"] == r["pair_mious"]
        assert all(len(box) == 4 for box in r["boxes"])
        assert r["latency_ms"] >= r["timings_ms"]["total"] > 0
    # A file: every frame, in order, nothing skipped.
    assert [r["frame"] for r in frames] == list(range(FRAMES))
    assert all(r["skipped_since_last"] == 0 for r in frames)
    assert {r["frame"] for r in frames if r["adversarial"]} == NOISE
    assert all(r["score"] == 1.0 for r in frames if r["frame"] not in NOISE)
    alarms = [(r["state"], r["frame"]) for r in records if r["type"] == "alarm"]
    assert alarms == [("raised", 12), ("cleared", 16)]
    assert [r["alarm_active"] for r in frames] == [12 <= i < 16 for i in range(FRAMES)]
    assert start["alarm"] == {"method": "m-of-n", "m": 3, "n": 5}
    assert [r["alarm_stat"] for r in frames][10:17] == [1, 2, 3, 4, 4, 3, 2]
    # The summary agrees with the records.
    assert set(end) == END_FIELDS and end["reason"] == "end of source"
    assert end["frames_read"] == end["frames_checked"] == len(frames) == FRAMES
    assert end["frames_skipped"] == 0 and end["frames_flagged"] == len(NOISE) and end["alarms"] == 1
    lat = [r["latency_ms"] for r in frames]
    assert end["latency_ms"]["p50"] == pytest.approx(_rank(lat, 50), rel=0.007)
    assert end["latency_ms"]["p99"] == pytest.approx(_rank(lat, 99), rel=0.007)
    assert end["latency_ms"]["mean"] == pytest.approx(np.mean(lat))
    assert end["latency_ms"]["p50"] <= end["latency_ms"]["p99"] <= end["latency_ms"]["max"] == max(lat)
    assert end["fps_checked"] == pytest.approx(FRAMES / end["duration_s"])
    text = capsys.readouterr().out
    assert "30 frames read, 30 checked, 0 skipped" in text and "1 alarm(s)" in text
    # The annotated video: one frame per check, at the source's size.
    cap = cv2.VideoCapture(str(out))
    assert cap.get(cv2.CAP_PROP_FRAME_WIDTH) == W and cap.get(cv2.CAP_PROP_FRAME_HEIGHT) == H
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == FRAMES


def test_every_and_max_frames(bundle_dir, video, tmp_path, capsys):
    ev = tmp_path / "ev.jsonl"
    rc = main(["run", "--source", str(video), "--bundle", str(bundle_dir), "--events", str(ev),
               "--every", "3", "--max-frames", "20", "--seed", "1", "--threads", "1"])
    assert rc in (0, 1)
    records = read_events(ev)
    frames, end = _frames(records), records[-1]
    assert [r["frame"] for r in frames] == list(range(0, 20, 3))
    assert [r["skipped_since_last"] for r in frames] == [0] + [2] * 6
    assert end["reason"] == "max frames" and end["frames_read"] == 20 and end["frames_checked"] == 7
    assert end["frames_skipped"] == end["skipped_every"] == 13
    # --max-frames alone; a second run appends a second start ... end to the same log.
    assert main(["run", "--source", str(video), "--bundle", str(bundle_dir), "--events", str(ev),
                 "--max-frames", "7", "--threads", "1"]) == 0
    records = read_events(ev)
    assert _types(records).count("start") == 2
    second = records[_types(records).index("end") + 1:]
    assert [r["frame"] for r in _frames(second)] == list(range(7))
    assert second[-1]["frames_read"] == second[-1]["frames_checked"] == 7


def test_events_to_stdout(bundle_dir, video, capsys):
    assert main(["run", "--source", str(video), "--bundle", str(bundle_dir), "--events", "-",
                 "--max-frames", "3", "--threads", "1"]) == 0
    cap = capsys.readouterr()
    lines = [json.loads(line) for line in cap.out.splitlines()]  # stdout: JSON only
    assert _types(lines) == ["start", "frame", "frame", "frame", "end"]
    assert "3 frames read" in cap.err


@pytest.fixture(scope="module")
def frame_bundle_dir(tmp_path_factory):
    """The frame detector on the contrast model: a patch's labels depend on its own mean, so
    on noise they disagree with the frame's; on a uniform frame they agree everywhere."""
    return make_frame_bundle(tmp_path_factory.mktemp("f") / "bundle", frame=(48, 64), k=6, threshold=0.99,
                             statistic="miou", model="contrast")


def test_run_frame_detector_events_and_video(frame_bundle_dir, video, tmp_path, capsys):
    ev, out = tmp_path / "events.jsonl", tmp_path / "checked.mp4"
    rc = main(["run", "--source", str(video), "--bundle", str(frame_bundle_dir), "--events", str(ev),
               "--save", str(out), "--show-labels", "--seed", "0", "--threads", "1",
               "--backend", "onnxruntime-cpu", "--k", "5"])
    assert rc in (0, 1)
    records = read_events(ev)
    start, frames = records[0], _frames(records)
    assert set(start) == START_FIELDS
    assert (start["detector"], start["statistic"], start["k"]) == ("frame", "miou", 5)
    header = capsys.readouterr().out.splitlines()[0]
    assert "frame detector, miou" in header and "K=5 (threshold set for K=6)" in header
    assert len(frames) == FRAMES
    for r in frames:
        assert set(r) == FRAME_FIELDS and r["detector"] == "frame" and r["patch_size"] == 16
        assert len(r["boxes"]) == len(r["scores"]) == r["k"] == 5
        assert all(len(box) == 2 and 0 <= box[0] <= 48 - 16 and 0 <= box[1] <= 64 - 16 for box in r["boxes"])
        assert r["score"] == pytest.approx(float(np.mean(r["scores"])), abs=1e-6)
        assert set(r["timings_ms"]) == set(STAGES)  # the guard segmented the frame: "segment" is there
    assert all(r["score"] == 1.0 for r in frames if r["frame"] not in NOISE)
    assert all(r["score"] < 1.0 for r in frames if r["frame"] in NOISE)
    cap = cv2.VideoCapture(str(out))
    assert cap.get(cv2.CAP_PROP_FRAME_WIDTH) == W and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES


def test_show_labels_needs_a_view_and_a_segmenting_bundle(bundle_dir, video, tmp_path, capfd):
    assert main(["run", "--source", str(video), "--bundle", str(bundle_dir), "--show-labels"]) == 2
    assert "add --show or --save" in _one_line(capfd.readouterr().err)
    # The pairs bundle has no full-frame graph: its verdicts carry no labels to draw.
    assert main(["run", "--source", str(video), "--bundle", str(bundle_dir), "--show-labels",
                 "--save", str(tmp_path / "x.mp4"), "--threads", "1"]) == 2
    assert "has no full-frame graph" in _one_line(capfd.readouterr().err)
    assert not (tmp_path / "x.mp4").exists()


def _slow_guard(bundle_dir, seconds: float):
    def segment(batch):
        time.sleep(seconds)
        return contrast_labels(batch)
    return Guard.from_function(load_bundle(bundle_dir), segment, seed=0)


def test_realtime_skips_frames_that_arrive_while_checking(bundle_dir, video, tmp_path):
    ev = tmp_path / "ev.jsonl"
    with EventWriter(ev) as events:
        summary = Stream(_slow_guard(bundle_dir, 0.05), parse_source(source=str(video)), events=events,
                         realtime=True, pace_fps=100.0).run()
    records = read_events(ev)
    frames = _frames(records)
    assert records[-1] == json.loads(json.dumps(summary))
    assert summary["frames_read"] == FRAMES
    assert summary["frames_read"] == summary["frames_checked"] + summary["frames_skipped"]
    assert summary["frames_skipped"] == summary["skipped_busy"] > 0
    assert summary["skipped_every"] == summary["skipped_at_stop"] == 0
    assert len(frames) == summary["frames_checked"] < FRAMES
    indices = [r["frame"] for r in frames]
    assert indices == sorted(indices) and indices[-1] == FRAMES - 1  # the newest frame is still checked
    assert sum(r["skipped_since_last"] for r in frames) == summary["frames_skipped"]
    assert [r["skipped_since_last"] for r in frames] == list(np.diff([-1] + indices) - 1)
    # One slot, not a queue: a FIFO would make the last frames wait ~1 s behind 50 ms checks.
    assert max(r["latency_ms"] for r in frames) < 600


def test_bad_alarm_option_is_one_line(capsys, video):
    assert main(["run", "--source", str(video), "--alarm", "5/3"]) == 2
    assert "1 <= M <= N" in capsys.readouterr().err.splitlines()[-1]


def test_source_that_does_not_open_is_one_line(bundle_dir, tmp_path, capfd):
    assert main(["run", "--source", str(tmp_path / "missing.mp4"), "--bundle", str(bundle_dir)]) == 2
    assert "does not exist" in _one_line(capfd.readouterr().err)
    bogus = tmp_path / "not_a_video.mp4"
    bogus.write_text("hello")
    assert main(["run", "--source", str(bogus), "--bundle", str(bundle_dir)]) == 2
    line = _one_line(capfd.readouterr().err)
    assert line.startswith("edge-guard run: error:") and str(bogus) in line
    # No camera 97 here; OpenCV's own warnings are silenced, leaving our line.
    assert main(["run", "--camera", "97", "--bundle", str(bundle_dir)]) == 2
    assert "cannot open camera 97" in _one_line(capfd.readouterr().err)


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="DISPLAY is X11/Wayland")
def test_show_without_display_is_one_line(bundle_dir, video, monkeypatch, capfd):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["run", "--source", str(video), "--bundle", str(bundle_dir), "--show"]) == 2
    assert "--show needs a display" in _one_line(capfd.readouterr().err)


class FakeCapture:
    """A capture that delivers ``frames`` frames, then fails (a camera unplugged)."""

    def __init__(self, frames: int):
        self.left, self.released = frames, False

    def read(self):
        if self.left <= 0 or self.released:
            return False, None
        self.left -= 1
        return True, clip_frame(0)

    def get(self, prop):
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self):
        self.released = True


def _opener(script):
    """Each call takes the next step: an int -> FakeCapture(int); an exception -> raised."""
    made, steps = [], iter(script)

    def opener():
        step = next(steps, SourceError("cannot open camera 0"))
        if isinstance(step, Exception):
            raise step
        made.append(FakeCapture(step))
        return made[-1]
    return opener, made


def test_camera_dropping_mid_stream_is_reopened_with_back_off(bundle_dir, tmp_path):
    # 5 frames; gap: a failed open, a camera with no frame, then 4 frames; gap: never back.
    opener, made = _opener([5, SourceError("cannot open camera 0"), 0, 4])
    delays = (0.01, 0.02, 0.04, 0.08)
    ev = tmp_path / "ev.jsonl"
    guard = Guard.from_function(load_bundle(bundle_dir), contrast_labels, seed=0)
    with EventWriter(ev) as events:
        summary = Stream(guard, Source(0, "camera"), opener=opener, events=events, realtime=False,
                         reconnect=delays).run()
    records = read_events(ev)
    assert _types(records) == ["start"] + ["frame"] * 5 + ["gap"] + ["frame"] * 4 + ["gap", "end"]
    first, second = (r for r in records if r["type"] == "gap")
    assert first["after_frame"] == 4 and first["recovered"] and first["attempts"] == 3
    assert first["error"] is None and first["duration_s"] >= sum(delays[:3])
    assert first["end_time"] >= first["start_time"]
    assert second["after_frame"] == 8 and not second["recovered"] and second["attempts"] == len(delays)
    assert "cannot open camera 0" in second["error"]
    assert summary["reason"] == "source lost" and summary["gaps"] == 2
    assert summary["frames_read"] == summary["frames_checked"] == 9
    assert [r["frame"] for r in _frames(records)] == list(range(9))
    assert all(cap.released for cap in made)


def test_a_stream_runs_again_after_its_source_was_lost(bundle_dir, tmp_path):
    # A service restarts the same Stream after "source lost": the second run checks frames.
    opener, _ = _opener([3, 2])
    guard = Guard.from_function(load_bundle(bundle_dir), contrast_labels, seed=0)
    stream = Stream(guard, Source(0, "camera"), opener=opener, realtime=False, reconnect=())
    first = stream.run()
    second = stream.run()
    assert (first["reason"], first["frames_checked"]) == ("source lost", 3)
    assert (second["reason"], second["frames_checked"]) == ("source lost", 2)


def test_frame_0_latency_leaves_out_the_warm_up(bundle_dir, tmp_path):
    calls = []

    def segment(batch):  # the first call (the warm-up) is slow, as a cold engine is
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.5)
        return contrast_labels(batch)
    guard = Guard.from_function(load_bundle(bundle_dir), segment, seed=0)
    ev = tmp_path / "ev.jsonl"
    opener, _ = _opener([3])
    with EventWriter(ev) as events:
        Stream(guard, Source(0, "camera"), opener=opener, events=events, realtime=False, reconnect=()).run()
    frames = _frames(read_events(ev))
    assert len(calls) == 4 and frames[0]["frame"] == 0
    assert frames[0]["latency_ms"] < 400  # the warm-up's 500 ms is not frame 0's


def test_streams_opening_in_threads_leave_stderr_working(bundle_dir, capfd):
    # Each open captures file descriptor 2; interleaved, they once left it on a deleted file.
    def opener():
        time.sleep(0.05)
        return FakeCapture(2)
    guard = Guard.from_function(load_bundle(bundle_dir), contrast_labels, seed=0)
    threads = [threading.Thread(target=Stream(guard, Source(i, "camera"), opener=opener,
                                              realtime=False, reconnect=()).run) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.write(2, b"still here\n")  # what C libraries and a crashing interpreter write to
    assert "still here" in capfd.readouterr().err


def test_lost_camera_exits_2_after_the_summary(bundle_dir, monkeypatch, capsys):
    opener, _ = _opener([3])
    monkeypatch.setattr(stream_mod, "open_capture", lambda source: opener())
    monkeypatch.setattr("edge_guard.cli.run.reconnect_delays", lambda n: (0.01,) * n)
    assert main(["run", "--camera", "0", "--bundle", str(bundle_dir), "--reconnect", "2"]) == 2
    cap = capsys.readouterr()
    assert "3 frames read" in cap.out and "1 gap(s)" in cap.out
    assert _one_line(cap.err) == ("edge-guard run: error: lost camera 0 "
                                  "(no frame after 2 reconnect attempt(s))")


class StopAt:
    """A sink that interrupts (like Ctrl-C) or asks to stop at the n-th checked frame."""

    def __init__(self, n: int, interrupt: bool):
        self.n, self.interrupt, self.seen, self.closed = n, interrupt, 0, False

    def write(self, frame, verdict, info):
        self.seen += 1
        if self.seen == self.n:
            if self.interrupt:
                raise KeyboardInterrupt
            return False
        return True

    def close(self):
        self.closed = True


@pytest.mark.parametrize("interrupt", [True, False])
def test_ctrl_c_or_stop_ends_cleanly(bundle_dir, video, tmp_path, interrupt):
    ev = tmp_path / "ev.jsonl"
    sink = StopAt(4, interrupt)
    guard = Guard.from_function(load_bundle(bundle_dir), contrast_labels, seed=0)
    with EventWriter(ev) as events:
        summary = Stream(guard, parse_source(source=str(video)), events=events, sinks=[sink]).run()
    assert sink.closed
    assert summary["reason"] == ("interrupted" if interrupt else "window closed")
    assert summary["frames_checked"] == 4
    assert summary["frames_read"] == summary["frames_checked"] + summary["frames_skipped"]
    assert summary["frames_skipped"] == summary["skipped_at_stop"]
    records = read_events(ev)
    assert records[-1]["type"] == "end" and len(_frames(records)) == 4


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_signal_ends_the_command_cleanly(bundle_dir, tmp_path, sig):
    """Ctrl-C (SIGINT) or SIGTERM: the summary, the end record, exit 0 (no alarm)."""
    video = tmp_path / "long.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FFV1"), 30.0, (32, 32))
    for i in range(300):  # 10 s when read in real time
        writer.write(np.full((32, 32, 3), i % 256, np.uint8))
    writer.release()
    ev = tmp_path / "ev.jsonl"
    # A shell's background job inherits SIGINT ignored, and Python then leaves it ignored:
    # the child gets the default disposition, as a command started from a terminal has.
    proc = subprocess.Popen([sys.executable, "-m", "edge_guard", "run", "--source", str(video),
                             "--bundle", str(bundle_dir), "--realtime", "--events", str(ev),
                             "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 30
    # A frame record, not the start record (whose keys contain "frame" too).
    while not (ev.exists() and '"type":"frame"' in ev.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(getattr(signal, sig))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    end = read_events(ev)[-1]
    assert end["type"] == "end" and end["reason"] == ("interrupted" if sig == "SIGINT" else "terminated")
    assert 0 < end["frames_read"] < 300
    assert end["frames_read"] == end["frames_checked"] + end["frames_skipped"]
    assert "frames read" in out and "Traceback" not in err
