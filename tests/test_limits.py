"""Issue 27, cases 3, 4 and 7: every size, count and thread setting has an upper bound,
checked before any work, and the error (one line) names the limit."""

import json

import pytest

from cli_run import run_cli
from edge_guard.alarms import AlarmWindow
from edge_guard.bundle import BundleError, load_bundle, validate
from edge_guard.errors import UserError
from edge_guard.limits import MAX_CLASSES, MAX_PAIRS, MAX_SIDE, max_threads, usable_cores
from tiny_bundle import make_guard_bundle


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return make_guard_bundle(tmp_path_factory.mktemp("b") / "bundle")


def _refused(argv, *words):
    """Exit 2 with argparse's (or our) one error line, which holds every word."""
    rc, out, err = run_cli(argv)
    errors = [line for line in err.splitlines() if "error:" in line]
    assert rc == 2 and len(errors) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


THREADS = str(max_threads() + 1)

OPTIONS = [
    (["bench", "--frame", "99999x99999"], "--frame", f"at most {MAX_SIDE} pixels a side"),
    (["generate", "--out", "{tmp}/g", "--size", "99999x99999"], "--size", f"at most {MAX_SIDE}"),
    (["calibrate", "--data", "{tmp}", "--out", "{tmp}/b", "--frame", "16385x1024"], "--frame", str(MAX_SIDE)),
    (["calibrate", "--data", "{tmp}", "--out", "{tmp}/b", "--patch", "16385"], "--patch", f"at most {MAX_SIDE}"),
    (["calibrate", "--data", "{tmp}", "--out", "{tmp}/b", "--k", "1025"], "--k", f"at most {MAX_PAIRS}"),
    (["check", "x.png", "--k", "1025"], "--k", f"at most {MAX_PAIRS}"),
    (["bench", "--k", "1,5,2000"], "--k", f"at most K={MAX_PAIRS}"),
    (["bench", "--iters", "10000000"], "--iters", "at most 1000000"),
    (["bench", "--threads", "100000"], "--threads", f"at most {max_threads()} threads"),
    (["run", "--source", "x.mp4", "--threads", THREADS], "--threads", f"at most {max_threads()} threads"),
    (["check", "x.png", "--threads", THREADS], "--threads", "per usable CPU core"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/m.pt", "--threads", THREADS], "--threads", "at most"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/m.pt", "--workers", THREADS], "--workers", "worker processes"),
    (["generate", "--out", "{tmp}/g", "--workers", THREADS], "--workers", "worker processes"),
    (["generate", "--out", "{tmp}/g", "--clip-length", "100000"], "--clip-length", "at most 3600"),
    (["run", "--source", "x.mp4", "--reconnect", "1000000000"], "--reconnect", "at most 1000"),
    (["run", "--source", "x.mp4", "--alarm", "1/100000"], "--alarm", "at most N=10000"),
    (["check", "x.png", "--max-pixels", str(MAX_SIDE * MAX_SIDE + 1)], "--max-pixels", "at most"),
    (["attack", "--data", "{tmp}", "--method", "dag", "--target", "pure", "--out", "{tmp}/a",
      "--batch", "100000"], "--batch", "at most 4096"),
    (["build-engine", "{tmp}", "--max-pairs", "5000"], "--max-pairs", f"at most {MAX_PAIRS}"),
]


@pytest.mark.parametrize("argv,option,words", OPTIONS, ids=[" ".join(a[:1] + [o]) for a, o, _ in OPTIONS])
def test_an_option_past_its_bound_is_one_line_naming_the_limit(argv, option, words, tmp_path):
    _refused([a.format(tmp=tmp_path) for a in argv], f"argument {option}", words)
    assert not (tmp_path / "g").exists() and not (tmp_path / "b").exists()


def test_generate_refuses_clips_that_would_not_fit_in_memory(tmp_path):
    _refused(["generate", "--out", tmp_path / "g", "--size", "16384x16384", "--clips", "1",
              "--clip-length", "100", "--frames", "0"], "GiB", "at most 8 GiB", "--clip-length")
    assert not (tmp_path / "g").exists()


def test_guard_threads_are_bounded_before_the_bundle_is_read(tmp_path):
    from edge_guard.guard import Guard

    # A bundle that does not exist: the thread count is refused first, before any work.
    with pytest.raises(UserError, match=rf"at most {max_threads()} threads \(4 per usable CPU core"):
        Guard.load(tmp_path / "nope", threads=512)
    with pytest.raises(UserError, match="positive integer"):
        Guard.load(tmp_path / "nope", threads=0)


def test_bench_threads_and_k_are_bounded_as_a_library_too(bundle_dir):
    from edge_guard.bench import run_bench

    with pytest.raises(UserError, match="threads"):
        run_bench(bundle_dir, threads=100000, pairs=(1,), iters=1, warmup=0)
    with pytest.raises(UserError, match=f"at most K={MAX_PAIRS}"):
        run_bench(bundle_dir, pairs=(1, MAX_PAIRS + 1), iters=1, warmup=0)


def test_max_threads_follows_the_cores_this_process_may_use():
    assert max_threads() == 4 * usable_cores() >= 4


@pytest.mark.parametrize("classes", [MAX_CLASSES + 1, 50000])
def test_a_class_count_past_the_bound_is_refused_at_load(bundle_dir, tmp_path, classes):
    doc = json.loads((bundle_dir / "guard.json").read_text())
    doc["model"]["num_classes"] = classes
    doc["model"]["class_names"] = [f"c{i}" for i in range(classes)]
    with pytest.raises(BundleError, match=f"model.num_classes must be <= {MAX_CLASSES}, got {classes}"):
        validate(doc)
    root = tmp_path / "b"
    root.mkdir()
    (root / "model.onnx").write_bytes((bundle_dir / "model.onnx").read_bytes())
    (root / "guard.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="num_classes must be <= 256"):
        load_bundle(root)


def test_the_class_bound_is_what_the_host_scoring_handles(bundle_dir):
    """The bound is not arbitrary: a 256-class confusion (uint8 labels' whole range) scores."""
    import numpy as np

    from edge_guard.consistency import pair_scores

    labels = np.random.default_rng(0).integers(0, MAX_CLASSES, (2, 16, 16)).astype(np.uint8)
    scores = pair_scores(labels, np.array([[0, 0, 2, 2]]), MAX_CLASSES)
    assert scores.shape == (1,) and 0 <= scores[0] <= 1


def test_an_oversized_guard_json_is_refused_unread(bundle_dir, tmp_path):
    from edge_guard.limits import MAX_JSON_BYTES

    root = tmp_path / "b"
    root.mkdir()
    (root / "model.onnx").write_bytes((bundle_dir / "model.onnx").read_bytes())
    with open(root / "guard.json", "wb") as f:
        f.truncate(MAX_JSON_BYTES + 10)  # sparse: costs no disk
    with pytest.raises(BundleError, match="larger than 16 MiB"):
        load_bundle(root)


def test_an_alarm_window_past_the_bound_is_refused():
    with pytest.raises(UserError, match="at most N=10000"):
        AlarmWindow(1, 10001)
    assert AlarmWindow(3, 10000).n == 10000


def test_evaluate_k_lists_are_bounded(tmp_path):
    pytest.importorskip("torch")
    _refused(["evaluate", "--data", tmp_path, "--out", tmp_path / "e", "--ks", "1,5,5000"],
             "--ks: at most K=1024", "5000")
    assert not (tmp_path / "e").exists()


def test_calibration_settings_refuse_what_guard_json_would(tmp_path):
    pytest.importorskip("torch")
    from edge_guard.calibration.calibrate import CalibrationSettings

    with pytest.raises(UserError, match=f"at most {MAX_PAIRS}, got 2000"):
        CalibrationSettings(k=2000).check()
    with pytest.raises(UserError, match=f"at most {MAX_SIDE} pixels a side"):
        CalibrationSettings(frame_size=(20000, 20000)).check()
