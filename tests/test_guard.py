"""Guard.check (frame -> Verdict) on ONNX Runtime against the NumPy reference; `edge-guard check`."""

import contextlib
import io
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edge_guard.backends import FunctionRunner, open_runner
from edge_guard.bundle import Bundle, BundleError, load_bundle, validate
from edge_guard.consistency import mean_score, pair_mious
from edge_guard.crop import crop_patches
from edge_guard.cli import main
from edge_guard.errors import MissingDependency, UserError
from edge_guard.guard import STAGES, Guard, Verdict
from edge_guard.patches import sample_pairs
from tiny_bundle import contrast_labels, make_frame_bundle, make_guard_bundle

H, W = 48, 64


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return make_guard_bundle(tmp_path_factory.mktemp("g") / "bundle", frame=(H, W), k=8, threshold=0.99)


@pytest.fixture(scope="module")
def logits_dir(tmp_path_factory):
    return make_guard_bundle(tmp_path_factory.mktemp("l") / "bundle", frame=(H, W), k=8, output="logits")


@pytest.fixture
def guard(bundle_dir):
    with Guard.load(bundle_dir, backend="onnxruntime-cpu", seed=0, threads=1) as g:
        yield g


def _noise(seed=1, shape=(H, W, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_uniform_frame_is_consistent(guard):
    v = guard.check(np.full((H, W, 3), (30, 200, 90), np.uint8))
    assert isinstance(v, Verdict)
    assert v.score == 1.0 and v.pair_mious == [1.0] * 8 and not v.adversarial
    assert v.threshold == pytest.approx(0.99) and len(v.pairs) == 8
    assert v.frame_size == (H, W) and v.input_size == (H, W)


def test_noise_scores_lower_and_is_flagged(guard):
    v = guard.check(_noise())
    assert 0.5 < v.score < 0.99 and v.adversarial
    assert min(v.pair_mious) < 1.0
    assert v.score == pytest.approx(np.mean(v.pair_mious), abs=1e-6)


def test_channel_order(guard, bundle_dir):
    """The model reads R and G only: noise in channel 0 is blue for BGR frames, red for RGB ones."""
    frame = np.full((H, W, 3), 100, np.uint8)
    frame[..., 0] = _noise()[..., 0]
    assert guard.check(frame).score == 1.0
    assert guard.check(frame, rgb=True).score < 1.0
    # A graph that takes BGR: channel 0 is now its "R".
    doc = json.loads((bundle_dir / "guard.json").read_text())
    doc["model"]["input"]["channels"] = "BGR"
    bgr_bundle = Bundle(root=bundle_dir, doc=validate(doc))
    with Guard(bgr_bundle, open_runner(bgr_bundle, "onnxruntime-cpu", threads=1), seed=0) as g:
        assert g.check(frame).score < 1.0
        assert g.check(frame, rgb=True).score == 1.0


def test_grey_and_four_channel_frames_are_converted(bundle_dir):
    grey = np.full((H, W), 77, np.uint8)
    with Guard.load(bundle_dir, backend="onnxruntime-cpu", seed=3, threads=1) as g:
        assert g.check(grey).score == 1.0
        assert g.check(grey[..., None]).score == 1.0
    bgr = _noise(5)
    bgra = np.dstack([bgr, np.full((H, W), 255, np.uint8)])
    with Guard.load(bundle_dir, backend="onnxruntime-cpu", seed=3, threads=1) as a, \
            Guard.load(bundle_dir, backend="onnxruntime-cpu", seed=3, threads=1) as b:
        va, vb = a.check(bgra), b.check(bgr)
        assert va.pairs == vb.pairs and va.score == vb.score
        # A reversed (negative-stride) view works too: RGB given as rgb=True equals BGR.
        va, vb = a.check(bgr[:, :, ::-1], rgb=True), b.check(bgr)
        assert va.score == vb.score


@pytest.mark.parametrize("frame,words", [
    (np.zeros((2, H, W, 3), np.uint8), "got shape (2, 48, 64, 3)"),
    (np.full((H, W, 3), np.nan, np.float32), "holds NaN"),
    (np.zeros((H, W, 3), np.float64), "must be uint8, got float64"),
    (np.zeros((H, W, 3), np.uint16), "must be uint8, got uint16"),
    (np.zeros((0, W, 3), np.uint8), "the frame is empty"),
    (np.zeros((H, W, 2), np.uint8), "got shape (48, 64, 2)"),
    (np.zeros(5, np.uint8), "got shape (5,)"),
    ([[1, 2], [3, 4]], "a frame is a NumPy array, got list"),
])
def test_bad_frames_are_refused(guard, frame, words):
    with pytest.raises(UserError) as exc:
        guard.check(frame)
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_frames_are_resized_to_the_bundle(guard):
    big = cv2.resize(np.full((H, W, 3), 140, np.uint8), (3 * W, 2 * H))
    v = guard.check(big)
    assert v.input_size == (2 * H, 3 * W) and v.frame_size == (H, W) and v.score == 1.0
    small = guard.check(np.full((20, 30, 3), 9, np.uint8))  # upscaled: bilinear
    assert small.frame_size == (H, W) and small.score == 1.0
    for y1, x1, y2, x2 in v.pairs:
        assert 0 <= min(y1, y2) and max(y1, y2) + 16 <= H and max(x1, x2) + 16 <= W
        assert 2 <= abs(y1 - y2) < 6 and 2 <= abs(x1 - x2) < 6


def test_same_seed_same_verdicts(bundle_dir):
    frames = [_noise(i) for i in range(4)]
    runs = []
    for seed in (7, 7, 8):
        with Guard.load(bundle_dir, backend="onnxruntime-cpu", seed=seed, threads=1) as g:
            runs.append([g.check(f) for f in frames])
    same = [(v.pairs, v.pair_mious, v.score, v.adversarial) for v in runs[0]]
    assert same == [(v.pairs, v.pair_mious, v.score, v.adversarial) for v in runs[1]]
    assert [v.pairs for v in runs[0]] != [v.pairs for v in runs[2]]
    # Unseeded guards draw from OS entropy: two of them disagree somewhere.
    with Guard.load(bundle_dir, backend="onnxruntime-cpu", threads=1) as a, \
            Guard.load(bundle_dir, backend="onnxruntime-cpu", threads=1) as b:
        assert [a.check(f).pairs for f in frames] != [b.check(f).pairs for f in frames]


@pytest.mark.parametrize("which", ["labels", "logits"])
def test_onnxruntime_equals_numpy_reference(bundle_dir, logits_dir, which):
    root = bundle_dir if which == "labels" else logits_dir
    bundle = load_bundle(root)
    reference = Guard.from_function(bundle, contrast_labels, seed=11)
    frames = [_noise(i) for i in range(6)]
    frames.append(cv2.GaussianBlur(_noise(9), (0, 0), 3))  # smooth: large coherent regions
    scores = set()
    with Guard.load(root, backend="onnxruntime-cpu", seed=11, threads=1) as ort:
        for f in frames:
            a, b = ort.check(f), reference.check(f)
            assert a.pairs == b.pairs
            assert a.pair_mious == b.pair_mious and a.score == b.score
            assert a.adversarial == b.adversarial
            scores.add(a.score)
    assert len(scores) > 3 and reference.provider == "python"


def test_verdict_equals_algorithm_1_by_hand(bundle_dir):
    """Sampling, crop with the BGR->RGB swap, the oracle model and the mIoUs, written out."""
    rng = np.random.default_rng(5)
    with Guard.load(bundle_dir, backend="onnxruntime-cpu", seed=5, threads=1) as g:
        for i in range(3):
            frame = _noise(20 + i)
            v = g.check(frame)
            pairs = sample_pairs(H, W, 16, 2, 6, 8, rng)
            labels = contrast_labels(crop_patches(frame, pairs, 16, swap_rb=True))
            mious = pair_mious(labels, pairs, 4)
            assert v.pairs == pairs.tolist() and v.pair_mious == mious.tolist()
            assert v.score == mean_score(mious)


def test_pairs_override_and_timings(bundle_dir):
    with Guard.load(bundle_dir, backend="onnxruntime-cpu", seed=0, pairs=3, threads=1) as g:
        v = g.check(_noise())
    assert g.k == 3 and len(v.pairs) == 3 and len(v.pair_mious) == 3
    assert tuple(v.timings_ms) == tuple(x for x in STAGES if x != "segment")  # no full-frame graph
    assert all(t >= 0 for t in v.timings_ms.values())
    stages = sum(v.timings_ms[s] for s in STAGES[:-1] if s in v.timings_ms)
    assert v.timings_ms["total"] == pytest.approx(stages, rel=1e-6, abs=1e-6)
    d = v.as_dict()
    assert json.loads(json.dumps(d)) == d and d["k"] == 3
    for bad in (0, -1, 2.5, True):
        with pytest.raises(UserError, match="positive integer"):
            Guard.load(bundle_dir, backend="onnxruntime-cpu", pairs=bad)
    with pytest.raises(UserError, match="at most K=1024 patches or pairs"):  # not a MemoryError traceback
        Guard.load(bundle_dir, backend="onnxruntime-cpu", pairs=10**9)
    # Headers say when the threshold was set for another K (the score's spread depends on K).
    assert g.k_text == f"K=3 (threshold set for K={g.bundle.k})" and g.bundle.k != 3
    with Guard.load(bundle_dir, backend="onnxruntime-cpu", threads=1) as same:
        assert same.k_text == f"K={same.bundle.k}"
    with pytest.raises(UserError, match="seed must be"):
        Guard.load(bundle_dir, backend="onnxruntime-cpu", seed=-1)


def test_provider_reported(bundle_dir, guard):
    assert guard.backend == "onnxruntime" and guard.provider == "CPUExecutionProvider"
    with Guard.load(bundle_dir, backend="auto", threads=1) as g:
        import onnxruntime as ort

        assert g.backend == "onnxruntime"
        assert g.provider in ort.get_available_providers()
        assert g.provider == g.runner._session.get_providers()[0]


def test_backend_choices(bundle_dir):
    bundle = load_bundle(bundle_dir)
    with pytest.raises(UserError, match=r"TensorRT backend needs tensorrt.*edge-guard\[gpu\]"):
        open_runner(bundle, "tensorrt")  # no TensorRT here; tests/test_tensorrt_backend.py has fakes
    with pytest.raises(UserError, match="unknown backend 'cuda'"):
        open_runner(bundle, "cuda")


def test_missing_onnxruntime_names_the_extra(bundle_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    with pytest.raises(MissingDependency, match=r"edge-guard\[cpu\].*edge-guard\[gpu\]"):
        Guard.load(bundle_dir)


def test_missing_default_bundle(monkeypatch, tmp_path):
    import edge_guard.guard as guard_module

    monkeypatch.setattr(guard_module, "DEFAULT_BUNDLE", tmp_path / "absent")
    with pytest.raises(BundleError, match="shipped bundle is not installed"):
        Guard.load()


def test_runner_lifecycle(bundle_dir):
    runner = FunctionRunner(contrast_labels)
    batch = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(UserError, match="not active"):
        runner.infer(batch)
    with runner:
        assert runner.infer(batch).dtype == np.int32
        with pytest.raises(UserError, match="uint8"):
            runner.infer(batch.astype(np.float32))
    assert not runner.is_active
    with FunctionRunner(lambda b: np.zeros((1, 4, 4), np.int32)) as bad:
        with pytest.raises(UserError, match="does not fit the bundle"):
            bad.infer(batch)
    g = Guard.load(bundle_dir, backend="onnxruntime-cpu", threads=1)
    g.close()
    with pytest.raises(UserError, match="not active"):
        g.check(_noise())


# ---------------------------------------------------------------- edge-guard check

def _cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("img")
    cv2.imwrite(str(root / "flat.png"), np.full((H, W, 3), 60, np.uint8))
    cv2.imwrite(str(root / "flat_grey.png"), np.full((2 * H, 2 * W), 200, np.uint8))
    cv2.imwrite(str(root / "noise.png"), _noise())
    (root / "broken.png").write_bytes(b"not an image")
    return root


def test_cli_exit_statuses(bundle_dir, images):
    base = ["check", "--bundle", str(bundle_dir), "--backend", "onnxruntime-cpu", "--seed", "0",
            "--threads", "1"]
    rc, out, err = _cli(base + [str(images / "flat.png"), str(images / "flat_grey.png")])
    assert rc == 0 and err == "" and out.count("benign") == 2 and "CPUExecutionProvider" in out
    assert "pairs detector, miou" in out and "min pair" in out
    rc, out, err = _cli(base + [str(images / "flat.png"), str(images / "noise.png")])
    assert rc == 1 and "ADVERSARIAL" in out
    broken, missing = images / "broken.png", images / "missing.png"
    rc, out, err = _cli(base + [str(broken), str(missing), str(images), str(images / "noise.png")])
    assert rc == 2 and "ADVERSARIAL" in out  # the readable image is still checked
    assert err.strip().splitlines() == [f"edge-guard check: error: {broken}: cannot read it as an image",
                                        f"edge-guard check: error: {missing}: no such file",
                                        f"edge-guard check: error: {images}: not a file"]
    rc, out, err = _cli(["check", "--bundle", str(images), str(images / "flat.png")])
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1 and "has no guard.json" in err


def test_cli_output_into_a_closed_pipe_is_quiet(bundle_dir, images):
    # `edge-guard check ... | head -c 10`: the reader leaves early; no BrokenPipeError traceback.
    cmd = [sys.executable, "-m", "edge_guard", "check", "--bundle", str(bundle_dir), "--backend",
           "onnxruntime-cpu", "--threads", "1", "--json"] + [str(images / "flat.png")] * 200
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err and err == ""


def test_cli_json_lines(bundle_dir, images):
    rc, out, err = _cli(["check", "--bundle", str(bundle_dir), "--backend", "onnxruntime-cpu",
                         "--seed", "4", "--pairs", "5", "--json", "--threads", "1",
                         str(images / "flat.png"), str(images / "noise.png")])
    assert rc == 1 and err == ""
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["image"] for r in rows] == [str(images / "flat.png"), str(images / "noise.png")]
    assert [r["adversarial"] for r in rows] == [False, True]
    assert rows[0]["score"] == 1.0 and rows[1]["score"] < 0.99
    assert all(r["k"] == 5 and len(r["pair_mious"]) == 5 and len(r["pairs"]) == 5 for r in rows)
    assert set(rows[0]["timings_ms"]) == set(STAGES) - {"segment"}
    assert rows[0]["backend"] == "onnxruntime" and rows[0]["provider"] == "CPUExecutionProvider"
    # The CLI's verdict is the library's for the same seed.
    with Guard.load(bundle_dir, backend="onnxruntime-cpu", seed=4, pairs=5, threads=1) as g:
        g.check(cv2.imread(str(images / "flat.png")))
        v = g.check(cv2.imread(str(images / "noise.png")))
    assert v.pairs == rows[1]["pairs"] and v.score == rows[1]["score"]


def test_cli_k_is_pairs(bundle_dir, images):
    """--k is the name of K (patches or pairs); --pairs stays as its alias."""
    runs = [_cli(["check", "--bundle", str(bundle_dir), "--backend", "onnxruntime-cpu", "--seed", "4", opt, "3",
                  "--json", "--threads", "1", str(images / "noise.png")]) for opt in ("--k", "--pairs")]
    rows = [json.loads(out) for _, out, _ in runs]
    assert rows[0]["k"] == rows[1]["k"] == 3 and rows[0]["scores"] == rows[1]["scores"]
    for command in ("check", "run"):
        _, help_text, _ = _cli([command, "--help"])
        help_text = " ".join(help_text.split())
        assert "--k K, --pairs K" in help_text and "patches (frame detector) or pairs (pairs detector)" in help_text


@pytest.fixture(scope="module")
def frame_dir(tmp_path_factory):
    return make_frame_bundle(tmp_path_factory.mktemp("fr") / "bundle", frame=(H, W), k=4)


def test_cli_frame_detector_columns_json_and_labels_pngs(frame_dir, images, tmp_path):
    names = ["flat.png", "flat_grey.png", "noise.png"]
    paths = [str(images / n) for n in names]
    folder = tmp_path / "out" / "labels"   # created, parents too
    base = ["check", "--bundle", str(frame_dir), "--backend", "onnxruntime-cpu", "--seed", "2", "--threads", "1",
            "--k", "3"]
    rc, out, err = _cli(base + ["--labels-out", str(folder)] + paths)
    assert rc == 0 and err == ""   # the per-pixel model: every patch agrees with the frame
    assert "frame detector, agreement" in out and "K=3 (threshold set for K=4)" in out and "min patch" in out
    with Guard.load(frame_dir, backend="onnxruntime-cpu", threads=1) as g:
        for name, path in zip(names, paths):
            image = cv2.imread(path)
            png = cv2.imread(str(folder / name.replace(".png", "_labels.png")), cv2.IMREAD_UNCHANGED)
            want = g.check(image).labels_at()
            assert png.dtype == np.uint8 and png.shape == image.shape[:2] == want.shape
            assert np.array_equal(png, want)
    rc, out, err = _cli(base + ["--json", "--labels-out", str(folder)] + paths)
    rows = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and [r["labels_png"] for r in rows] == [str(folder / n.replace(".png", "_labels.png"))
                                                            for n in names]
    for r in rows:
        assert (r["detector"], r["statistic"], r["k"], r["patch_size"]) == ("frame", "agreement", 3, 16)
        assert len(r["scores"]) == 3 and all(len(box) == 2 for box in r["boxes"])
        assert "pair_mious" not in r and "pairs" not in r and set(r["timings_ms"]) == set(STAGES)
