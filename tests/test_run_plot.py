"""`edge-guard run --plot`: the PNG of a run's scores and alarms, its bounded buffer, its errors."""

import resource
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

from cli_run import run_cli
from edge_guard.bundle import load_bundle
from edge_guard.events import read_events
from edge_guard.guard import Guard
from edge_guard.overlay import RED
from edge_guard.plot_panel import SHADE
from edge_guard.run_plot import CAPACITY, FIELDS, HEIGHT, SCORE_BOX, WIDTH, RunTrace
from edge_guard.sources import parse_source
from edge_guard.stream import Stream
from stream_clip import FRAMES, NOISE, write_clip
from tiny_bundle import contrast_labels, make_guard_bundle

COL = {name: i for i, name in enumerate(FIELDS)}


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return make_guard_bundle(tmp_path_factory.mktemp("b") / "bundle", frame=(48, 64), k=8, threshold=0.99)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("v") / "clip.avi")


def _png(path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, f"{path} does not decode"
    assert img.shape == (HEIGHT, WIDTH, 3)
    return img


def _count(img, colour) -> int:
    return int((img == np.array(colour, np.uint8)).all(axis=2).sum())


def _score_panel(img):
    left, top, width, height = SCORE_BOX
    return img[top:top + height + 1, left:left + width + 1]


def _stream(bundle_dir, video, **kwargs):
    guard = Guard.from_function(load_bundle(bundle_dir), contrast_labels, seed=0)
    return Stream(guard, parse_source(source=str(video)), **kwargs)


def test_plot_of_a_clip_with_an_alarm(bundle_dir, video, tmp_path):
    plot, ev = tmp_path / "run.png", tmp_path / "ev.jsonl"
    rc, out, err = run_cli(["run", "--source", video, "--bundle", bundle_dir, "--plot", plot, "--events", ev,
                            "--threads", "1", "--seed", "0"])
    assert rc == 1, err  # frames 10-13 flagged: one 3/5 alarm
    assert f"# plot: {plot}" in out
    end = read_events(ev)[-1]
    assert end["plot"] == str(plot) and end["output_errors"] == {}
    img = _png(plot)
    # The alarm episode is shaded on both panels, the flagged frames are red dots.
    assert _count(img, SHADE) > 1000
    assert _count(_score_panel(img), RED) >= len(NOISE)


def test_plot_on_max_frames_without_flags_differs(bundle_dir, video, tmp_path):
    plot = tmp_path / "clean.png"
    rc, out, err = run_cli(["run", "--source", video, "--bundle", bundle_dir, "--plot", plot,
                            "--max-frames", "8", "--threads", "1", "--seed", "0"])
    assert rc == 0, err
    assert "end (max frames)" in out and f"# plot: {plot}" in out
    img = _png(plot)
    assert _count(img, SHADE) == 0 and _count(_score_panel(img), RED) == 0


def test_plot_is_written_when_ctrl_c_ends_the_stream(bundle_dir, video, tmp_path):
    class CtrlC:
        def __init__(self):
            self.seen = 0

        def write(self, frame, verdict, info):
            self.seen += 1
            if self.seen == 15:
                raise KeyboardInterrupt
            return True

        def close(self):
            pass

    plot = tmp_path / "ctrl-c.png"
    stream = _stream(bundle_dir, video, sinks=[CtrlC()], plot=plot)
    summary = stream.run()
    assert summary["reason"] == "interrupted" and summary["plot"] == str(plot)
    assert stream.trace.frames == summary["frames_checked"] == 15
    _png(plot)
    # The Python API: the last run's plot, again, anywhere.
    assert stream.plot(tmp_path / "again.png") == tmp_path / "again.png"
    assert (_png(tmp_path / "again.png") == _png(plot)).all()


def test_the_trace_keeps_at_most_capacity_rows_and_loses_no_flag_or_alarm():
    trace = RunTrace(capacity=64)
    n = 10_000
    for i in range(n):
        odd = i == 7777  # one flagged frame, one frame of alarm, in a long benign run
        trace.add(i / 15.0, i, 0.1 if odd else 0.95 + 1e-6 * (i % 7), odd, 9.0 if odd else 0.5, odd)
        assert trace.rows <= 64
    rows = trace.table()
    assert trace.frames == n and trace.nbytes == 64 * len(FIELDS) * 4
    assert 32 < len(rows) <= 64 and trace.span == 256  # 10,000 frames in rows of 256
    assert rows[0, COL["frame_first"]] == 0 and rows[-1, COL["frame_last"]] == n - 1
    assert (np.diff(rows[:, COL["t_first"]]) > 0).all()
    assert rows[:, COL["flagged"]].sum() == 1 and rows[:, COL["alarm"]].sum() == 1
    hit = rows[rows[:, COL["flagged"]] > 0][0]
    assert hit[COL["frame_first"]] <= 7777 <= hit[COL["frame_last"]]
    assert hit[COL["score_min"]] == pytest.approx(0.1) and hit[COL["stat_max"]] == 9.0
    assert rows[:, COL["score_max"]].max() == pytest.approx(0.95 + 6e-6)


def test_the_default_bound_holds_for_a_long_run():
    trace = RunTrace()
    for i in range(3 * CAPACITY + 5):
        trace.add(float(i), i, 1.0, False, 0.0, False)
    assert trace.rows <= CAPACITY and trace.span == 4 and trace.nbytes == CAPACITY * len(FIELDS) * 4


@pytest.mark.parametrize("name, why", [
    ("no-such-folder/run.png", "does not exist"),
    ("run.jpg", "ending in .png"),
])
def test_a_bad_plot_path_is_refused_before_the_model_loads(video, tmp_path, name, why):
    # A bundle that does not exist: the plot must be refused before it is looked for.
    rc, out, err = run_cli(["run", "--source", video, "--bundle", tmp_path / "missing", "--plot",
                            tmp_path / name])
    assert rc == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert why in line and "--plot" in line


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_an_unwritable_plot_folder_is_refused_before_work(video, tmp_path):
    rc, out, err = run_cli(["run", "--source", video, "--bundle", tmp_path / "missing",
                            "--plot", "/proc/run.png"])
    assert rc == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert "cannot write --plot /proc/run.png" in line and "not writable" in line


def test_a_plot_that_cannot_be_written_is_lost_output(bundle_dir, video, tmp_path):
    """The folder goes away mid-run: one warning, the plot counted as lost, detection intact."""
    folder = tmp_path / "plots"
    folder.mkdir()

    class RemoveFolder:
        def write(self, frame, verdict, info):
            if info["frame_index"] == 3 and folder.exists():
                folder.rmdir()
            return True

        def close(self):
            pass

    warnings = []
    summary = _stream(bundle_dir, video, sinks=[RemoveFolder()], plot=folder / "run.png",
                      warn=warnings.append).run()
    assert summary["frames_checked"] == FRAMES and summary["alarms"] == 1
    assert list(summary["output_errors"]) == ["plot"] and summary["plot"] == str(folder / "run.png")
    (warning,) = warnings
    assert f"cannot write the plot {folder / 'run.png'}" in warning and "counted in the summary" in warning


def test_a_full_disk_at_the_end_exits_3(bundle_dir, video, tmp_path):
    """A file size limit (`ulimit -f`) the PNG does not fit in: exit 3 (no alarm, output lost),
    one warning, and no half-written PNG left behind."""
    plot = tmp_path / "run.png"

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))

    proc = subprocess.run([sys.executable, "-m", "edge_guard", "run", "--source", str(video), "--bundle",
                           str(bundle_dir), "--plot", str(plot), "--max-frames", "5", "--threads", "1"],
                          capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert proc.returncode == 3, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and f"cannot write the plot {plot}" in warnings[0], proc.stderr
    assert "# output lost:" in proc.stdout and "# plot:" not in proc.stdout
    assert not plot.exists()
