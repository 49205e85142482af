"""The frame-rate budget: guard.json's thresholds for several K, the choice of K by measured
check time (a fake backend of known latency), and `run`/`check --fps`."""

import json
import time

import cv2
import numpy as np
import pytest

from cli_run import run_cli
from edge_guard.budget import BudgetChoice, budget_ms_of, end_fields, summary_line
from edge_guard.bundle import BundleError, load_bundle, write_guard_json
from edge_guard.bundle_schema import validate
from edge_guard.errors import UserError
from edge_guard.events import read_events
from edge_guard.guard import Guard
from stream_clip import FRAMES, write_clip
from tiny_bundle import make_frame_bundle, pixel_labels

FRAME = (48, 64)
TABLE = {"1": 0.5, "2": 0.6, "4": 0.7, "8": 0.8}   # the bundle's own K is 4


def _with_table(root, table=TABLE):
    doc = load_bundle(root).doc
    doc["detector"]["thresholds_by_k"] = dict(table)
    write_guard_json(root, doc)
    return root


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    root = make_frame_bundle(tmp_path_factory.mktemp("budget") / "bundle", frame=FRAME, k=4, threshold=0.7)
    return _with_table(root)


@pytest.fixture(scope="module")
def old_bundle_dir(tmp_path_factory):
    return make_frame_bundle(tmp_path_factory.mktemp("old") / "bundle", frame=FRAME, k=4, threshold=0.7)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("v") / "clip.avi")


def _frame():
    return np.random.default_rng(0).integers(0, 256, (*FRAME, 3), dtype=np.uint8)


# ---------------------------------------------------------------- guard.json

def test_the_table_is_read_smallest_k_first(bundle_dir, old_bundle_dir):
    assert load_bundle(bundle_dir).thresholds_by_k == {1: 0.5, 2: 0.6, 4: 0.7, 8: 0.8}
    assert load_bundle(old_bundle_dir).thresholds_by_k == {4: 0.7}   # older bundles: their own K


@pytest.mark.parametrize("table, message", [
    ({"0": 0.5, "4": 0.7}, "has the key '0'"),
    ({"01": 0.5, "4": 0.7}, "has the key '01'"),
    ({"two": 0.5, "4": 0.7}, "has the key 'two'"),
    ({"1025": 0.5, "4": 0.7}, "has the key '1025'"),
    ({"1": 1.5, "4": 0.7}, "thresholds_by_k.1 must lie in [0, 1]"),
    ({"1": "0.5", "4": 0.7}, "thresholds_by_k.1 must be a finite number"),
    ({"1": 0.5}, "must hold the bundle's own K=4"),
    ({"1": 0.5, "4": 0.71}, "must hold the bundle's own K=4"),
    ([0.5, 0.7], "thresholds_by_k must be an object"),
])
def test_the_schema_refuses_a_bad_table_in_one_line(old_bundle_dir, table, message):
    doc = json.loads(json.dumps(load_bundle(old_bundle_dir).doc))
    doc["detector"]["thresholds_by_k"] = table
    with pytest.raises(BundleError) as err:
        validate(doc)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_k_of_the_table_runs_with_its_own_threshold(bundle_dir, old_bundle_dir):
    with Guard.load(bundle_dir, backend="onnxruntime-cpu", pairs=2) as guard:
        assert (guard.k, guard.threshold, guard.k_text) == (2, 0.6, "K=2")
        verdict = guard.check(_frame())
    assert (verdict.k, verdict.threshold) == (2, 0.6)
    with Guard.load(old_bundle_dir, backend="onnxruntime-cpu", pairs=2) as guard:
        assert (guard.threshold, guard.k_text) == (0.7, "K=2 (threshold set for K=4)")


# ---------------------------------------------------------------- the choice of K

class FakeClock:
    """Time that passes only when the fake model runs: a frame costs FRAME_MS, each patch PATCH_MS."""

    FRAME_MS, PATCH_MS = 20.0, 10.0

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def segment(self, batch):
        per = self.FRAME_MS if batch.shape[1:3] == FRAME else self.PATCH_MS
        self.t += len(batch) * per / 1e3
        return pixel_labels(batch)


def _fake_guard(bundle_dir, seed=0):
    clock = FakeClock()
    return Guard.from_function(load_bundle(bundle_dir), clock.segment, seed=seed), clock


@pytest.mark.parametrize("budget_ms, k, timed", [
    (1000.0, 8, [1, 2, 4, 8]),      # 100 ms for K=8 fits 900 ms
    (70.0, 4, [1, 2, 4, 8]),        # K=4 (60 ms) fits 63 ms, K=8 (100 ms) does not: timing stops there
    (45.0, 2, [1, 2, 4]),           # K=2 (40 ms) fits 40.5 ms
    (40.0, 1, [1, 2]),              # K=2 (40 ms) is over 36 ms
])
def test_the_largest_k_that_fits_runs(bundle_dir, budget_ms, k, timed):
    guard, clock = _fake_guard(bundle_dir)
    choice = guard.fit_budget(_frame(), budget_ms=budget_ms, clock=clock)
    assert (choice.k, choice.met, list(choice.times_ms)) == (k, True, timed)
    assert choice.times_ms == pytest.approx({t: 20.0 + 10.0 * t for t in timed})   # the known latency
    assert (guard.k, guard.threshold, guard.budget) == (k, TABLE[str(k)], choice)
    verdict = guard.check(_frame())
    assert (verdict.k, verdict.threshold) == (k, TABLE[str(k)])
    assert choice.warning() is None and f"K={k}, the largest that fits" in choice.describe()


def test_a_budget_that_cannot_be_met_runs_the_smallest_k_and_says_so(bundle_dir):
    guard, clock = _fake_guard(bundle_dir)
    choice = guard.fit_budget(_frame(), fps=1000, clock=clock)      # 1 ms a frame: K=1 takes 30
    assert (choice.k, choice.met, choice.times_ms) == (1, False, pytest.approx({1: 30.0}))
    assert (guard.k, guard.threshold) == (1, 0.5)
    warning = choice.warning()
    assert warning == ("the budget of 1000 fps (1.0 ms a frame) cannot be met: even K=1 takes 30.0 ms a "
                       "check here; running K=1 at about 33.3 checked frames/s")
    assert "the smallest, does not fit" in choice.describe()


def test_a_bundle_with_one_k_says_the_budget_cannot_change_it(old_bundle_dir):
    guard, clock = _fake_guard(old_bundle_dir)
    choice = guard.fit_budget(_frame(), budget_ms=1000, clock=clock)
    assert (choice.k, choice.met, choice.candidates) == (4, True, (4,))
    assert "holds a threshold for K=4 only" in choice.warning()


def test_the_warm_up_leaves_the_patch_draw_as_it_was(bundle_dir):
    """A seeded guard under a budget draws the patches a guard of that K draws without one."""
    guard, clock = _fake_guard(bundle_dir, seed=7)
    guard.fit_budget(_frame(), budget_ms=70, clock=clock)
    plain, _ = _fake_guard(bundle_dir, seed=7)
    plain.use_k(4)
    assert [guard.check(_frame()).boxes for _ in range(3)] == [plain.check(_frame()).boxes for _ in range(3)]


def test_a_backend_that_sleeps_a_known_time_per_patch(bundle_dir):
    """The real clock, 25 ms a patch: K=1 and K=2 (25, 50 ms) fit the 90 ms a check may take
    of a 100 ms budget with room to spare; K=4 (100 ms) does not, and K=8 is not timed."""
    def segment(batch):
        if batch.shape[1:3] != FRAME:
            time.sleep(0.025 * len(batch))
        return pixel_labels(batch)

    guard = Guard.from_function(load_bundle(bundle_dir), segment, seed=0)
    choice = guard.fit_budget(_frame(), budget_ms=100, repeats=1)
    assert (choice.k, choice.met, list(choice.times_ms)) == (2, True, [1, 2, 4])
    assert choice.times_ms[1] >= 25 and choice.times_ms[2] >= 50 and choice.times_ms[4] >= 100


def test_load_times_the_budget_on_the_first_frame(bundle_dir):
    with Guard.load(bundle_dir, backend="onnxruntime-cpu", budget_ms=1e6) as guard:
        assert guard.budget is None
        verdict = guard.check(_frame())
        assert guard.budget.k == verdict.k == 8 and verdict.threshold == 0.8
    with Guard.load(bundle_dir, backend="onnxruntime-cpu", fps=1e7) as guard:
        assert guard.check(_frame()).k == 1 and not guard.budget.met


def test_budget_inputs_are_checked_in_one_line(bundle_dir):
    with pytest.raises(UserError, match="K is fixed by --k and chosen by --fps/--budget-ms"):
        Guard.load(bundle_dir, backend="onnxruntime-cpu", pairs=2, fps=10)
    with pytest.raises(UserError, match="not both"):
        budget_ms_of(fps=10, budget_ms=100)
    for bad in (0, -1, float("nan"), float("inf"), True, "10"):
        with pytest.raises(UserError, match="finite number > 0"):
            budget_ms_of(fps=bad)
    assert budget_ms_of(fps=10) == 100.0 and budget_ms_of(budget_ms=25) == 25.0 and budget_ms_of() is None
    guard, _ = _fake_guard(bundle_dir)
    with pytest.raises(UserError, match="needs a budget"):
        guard.fit_budget(_frame())


def test_the_end_record_says_whether_the_rate_kept_up():
    class G:
        k = 4
        budget = BudgetChoice(budget_ms=100.0, k=4, times_ms={4: 60.0}, met=True, candidates=(1, 4), fps=10.0)

    fields = end_fields(G(), 9.5)
    assert fields == {"k": 4, "budget": {"fps": 10.0, "budget_ms": 100.0, "k": 4, "achieved_fps": 9.5, "met": False}}
    assert summary_line(fields) == "# budget 10 fps: K=4 ran, 9.5 checked frames/s: NOT met (below 10 frames/s)"
    assert end_fields(G(), 10.0)["budget"]["met"] and end_fields(object(), 10.0) == {}


# ---------------------------------------------------------------- the commands

def test_run_under_a_budget_says_which_k_and_the_rate(bundle_dir, video, tmp_path):
    ev = tmp_path / "events.jsonl"
    rc, out, err = run_cli(["run", "--source", video, "--bundle", bundle_dir, "--events", ev, "--seed", "0",
                            "--threads", "1", "--backend", "onnxruntime-cpu", "--budget-ms", "1e6"])
    assert rc in (0, 1), err
    records = read_events(ev)
    start, end = records[0], records[-1]
    assert start["k"] == 8 and start["threshold"] == 0.8
    b = start["budget"]
    assert (b["k"], b["met"], b["budget_ms"], b["fps"], b["candidates"]) == (8, True, 1e6, None, [1, 2, 4, 8])
    assert set(b["warmup_ms"]) == {"1", "2", "4", "8"} and all(v > 0 for v in b["warmup_ms"].values())
    frames = [r for r in records if r["type"] == "frame"]
    assert len(frames) == FRAMES and all(r["k"] == 8 == len(r["boxes"]) and r["threshold"] == 0.8 for r in frames)
    assert end["k"] == 8 and end["budget"]["met"] and end["budget"]["achieved_fps"] == end["fps_checked"] > 0
    lines = out.splitlines()
    assert "K=8, threshold 0.8000" in lines[0]
    assert lines[1].startswith("# budget 1000000.0 ms a frame") and "K=8, the largest that fits" in lines[1]
    assert "warm-up check times (median) K=1 " in lines[1] and "K=8 " in lines[1]
    assert any(line.startswith("# budget 1000000.0 ms a frame: K=8 ran,") and line.endswith(": met") for line in lines)
    assert "warning" not in err


def test_run_says_plainly_when_the_budget_cannot_be_met(bundle_dir, video, tmp_path):
    ev = tmp_path / "events.jsonl"
    rc, out, err = run_cli(["run", "--source", video, "--bundle", bundle_dir, "--events", ev, "--threads", "1",
                            "--backend", "onnxruntime-cpu", "--fps", "1e7", "--max-frames", "3"])
    assert rc in (0, 1), err
    warning = [line for line in err.splitlines() if line.strip()]
    assert len(warning) == 1 and warning[0].startswith("edge-guard run: warning: the budget of 1e+07 fps")
    assert "cannot be met: even K=1 takes" in warning[0] and "running K=1 at about" in warning[0]
    start, end = read_events(ev)[0], read_events(ev)[-1]
    assert start["k"] == 1 and start["budget"]["met"] is False and list(start["budget"]["warmup_ms"]) == ["1"]
    assert end["budget"]["met"] is False and "NOT met" in out


@pytest.mark.parametrize("extra, message", [
    (["--fps", "10", "--k", "2"], "K is fixed by --k and chosen by --fps/--budget-ms: give one of them"),
    (["--fps", "10", "--budget-ms", "50"], "not allowed with argument --fps"),
    (["--fps", "0"], "must be a finite number > 0"),
    (["--budget-ms", "nan"], "must be a finite number > 0"),
])
@pytest.mark.parametrize("command", ["run", "check"])
def test_budget_mistakes_exit_2_in_one_line(bundle_dir, video, tmp_path, command, extra, message):
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), _frame())
    target = ["--source", video] if command == "run" else [image]
    rc, out, err = run_cli([command, *target, "--bundle", bundle_dir, "--backend", "onnxruntime-cpu", *extra])
    assert rc == 2 and message in err
    assert err.strip().splitlines()[-1].startswith(f"edge-guard {command}: error:")


def test_check_accepts_a_budget(bundle_dir, tmp_path):
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), _frame())
    rc, out, err = run_cli(["check", image, image, "--bundle", bundle_dir, "--backend", "onnxruntime-cpu",
                            "--fps", "0.001"])
    assert rc in (0, 1) and err == ""
    header = out.splitlines()
    assert "K=8, threshold 0.8000" in header[0] and "K=8, the largest that fits" in header[2]
    rc, out, err = run_cli(["check", image, "--bundle", bundle_dir, "--backend", "onnxruntime-cpu",
                            "--fps", "1e7", "--json"])
    row = json.loads(out.splitlines()[0])
    assert (row["k"], row["threshold"]) == (1, 0.5)
    assert err.startswith("edge-guard check: warning: the budget of 1e+07 fps") and err.count("\n") == 1
