"""`edge-guard calibrate`: threshold rules, AUC, offline scoring = runtime scoring, the command."""

import json
import math

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_guard.bundle import load_bundle  # noqa: E402
from edge_guard.calibration import threshold as thr  # noqa: E402
from edge_guard.calibration.calibrate import STREAM_CALIBRATION  # noqa: E402
from edge_guard.calibration.data.folders import open_dataset, read_image  # noqa: E402
from edge_guard.calibration.models import build_segmenter  # noqa: E402
from edge_guard.calibration.models.checkpoint import load_segmenter, save_checkpoint  # noqa: E402
from edge_guard.calibration.scoring import blur_ksize, scale_score, scale_scores, torch_segment  # noqa: E402
from edge_guard.errors import UserError  # noqa: E402
from edge_guard.guard import Guard  # noqa: E402
from cli_run import run_cli  # noqa: E402

FRAME = (64, 128)
PATCH, B_LOW, B_HIGH, K = 48, 4, 8, 5
CALIB, HOLDOUT = 16, 8


# ---------------------------------------------------------------- threshold rules

def _next_candidate(scores, t):
    above = np.unique(scores[scores > t])
    return float(above[0]) if above.size else math.inf


@pytest.mark.parametrize("n", [1000, 333])
@pytest.mark.parametrize("target", [0.001, 0.01, 0.05, 0.2])
def test_fpr_rule_is_the_largest_threshold_within_the_target(n, target):
    scores = np.random.default_rng(n).beta(8, 2, size=n).astype(np.float32).astype(np.float64)
    if n < 1 / target:
        with pytest.raises(UserError, match="cannot resolve"):
            thr.pick_threshold(scores, "fpr", target)
        return
    choice = thr.pick_threshold(scores, "fpr", target)
    t = choice.threshold
    assert t in scores                                   # one of the benign scores
    assert choice.achieved_fpr == thr.flag_rate(scores, t) <= target
    assert thr.flag_rate(scores, _next_candidate(scores, t)) > target
    # Brute force over every candidate threshold (each score, and above all of them).
    candidates = np.append(np.unique(scores), np.inf)
    ok = [c for c in candidates if np.mean(scores < c) <= target]
    assert t == max(ok)
    assert choice.allowed == math.floor(target * n + 1e-9) and choice.flagged == choice.allowed


def test_fpr_rule_counts_exact_products_right():
    # 0.01 * 300 is 2.9999999999999996 in binary: the rule must still allow 3 frames.
    scores = np.linspace(0.5, 1.0, 300)
    choice = thr.pick_threshold(scores, "fpr", 0.01)
    assert choice.allowed == 3 and choice.threshold == scores[3] and choice.achieved_fpr == 0.01


def test_min_benign_rule_flags_no_calibration_frame():
    scores = np.random.default_rng(1).beta(5, 1, 50)
    choice = thr.pick_threshold(scores, "min-benign", None)
    assert choice.threshold == scores.min()
    assert choice.achieved_fpr == 0.0 and not (scores.min() < choice.threshold)
    assert choice.target_fpr is None and choice.warning is None


def test_ties_are_never_split():
    scores = np.array([0.5] * 10 + [0.9] * 90)
    choice = thr.pick_threshold(scores, "fpr", 0.05)      # 5 allowed, but 10 tie at 0.5
    assert choice.threshold == 0.5 and choice.achieved_fpr == 0.0
    assert thr.flag_rate(scores, _next_candidate(scores, 0.5)) == 0.1
    scores = np.array([0.1, 0.2, 0.2, 0.2] + [0.8] * 96)
    choice = thr.pick_threshold(scores, "fpr", 0.02)      # 2 allowed: only 0.1 can go
    assert choice.threshold == 0.2 and choice.flagged == 1 and choice.achieved_fpr == 0.01


def test_rule_inputs_are_checked_in_one_line():
    scores = np.linspace(0, 1, 200)
    for fpr in (0.0, 1.0, 1.5, -0.1, float("nan"), None):
        with pytest.raises(UserError, match="strictly between 0 and 1"):
            thr.pick_threshold(scores, "fpr", fpr)
    with pytest.raises(UserError, match="unknown threshold rule"):
        thr.pick_threshold(scores, "median", 0.01)
    with pytest.raises(UserError, match="--rule min-benign"):
        thr.pick_threshold(scores[:50], "fpr", 0.01)
    with pytest.raises(UserError, match="not a finite number"):
        thr.pick_threshold([0.5, float("nan")], "min-benign", None)
    assert "reliable" in thr.pick_threshold(scores, "fpr", 0.01).warning      # 200 < 1000
    assert thr.pick_threshold(np.linspace(0, 1, 1000), "fpr", 0.01).warning is None


def test_auc_is_chance_for_one_distribution_and_one_for_separated_sets():
    rng = np.random.default_rng(2)
    same = rng.beta(8, 2, 500)
    assert thr.detection_auc(same, same) == 0.5
    assert abs(thr.detection_auc(rng.beta(8, 2, 2000), rng.beta(8, 2, 2000)) - 0.5) < 0.05
    benign, adversarial = rng.uniform(0.6, 1.0, 300), rng.uniform(0.0, 0.5, 200)
    assert thr.detection_auc(benign, adversarial) == 1.0      # lower score = adversarial
    assert thr.detection_auc(adversarial, benign) == 0.0


def test_quantiles_are_recorded_as_text_keys():
    q = thr.quantiles(np.linspace(0, 1, 101))
    assert q["0.5"] == pytest.approx(0.5) and q["0.01"] == pytest.approx(0.01)


# ---------------------------------------------------------------- scale consistency

def _colour_rule(batch):
    """A per-pixel segmenter: (R > 127) + 2 (G > 127), 4 classes."""
    batch = np.asarray(batch)
    return ((batch[..., 0] > 127).astype(np.int32) + 2 * (batch[..., 1] > 127)).astype(np.int32)


def test_blur_kernel_sizes():
    assert [blur_ksize(s) for s in (0.5, 3, 5)] == [5, 19, 31]
    with pytest.raises(UserError):
        blur_ksize(0)


def test_scale_score_by_hand():
    uniform = np.full((40, 60, 3), (200, 30, 220), np.uint8)
    assert scale_scores(_colour_rule, uniform, num_classes=4) == {0.5: 1.0, 3.0: 1.0, 5.0: 1.0}
    # A one-pixel white line: std 0.5 keeps its centre at 255 * 0.787 = 200 (> 127), std 3
    # spreads it to 255 * 0.133 = 34, so it vanishes: classes {0, 3}, IoU_0 = (W-1)/W, IoU_3 = 0.
    line = np.zeros((40, 60, 3), np.uint8)
    line[:, 30] = 255
    assert scale_score(_colour_rule, line, 0.5, num_classes=4) == 1.0
    assert scale_score(_colour_rule, line, 3, num_classes=4) == pytest.approx(59 / 120, abs=1e-6)


# ---------------------------------------------------------------- the command, end to end


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from edge_guard.calibration.data.layout import write_split

    root = tmp_path_factory.mktemp("calibrate")
    torch.manual_seed(0)
    seg = build_segmenter("edge_small", width=16, dilations=(1, 2))
    ckpt = save_checkpoint(root / "tiny.pt", seg)
    data = root / "scenes"
    write_split(data, split="val", frames=CALIB + HOLDOUT, size=FRAME, seed=5, progress=False)
    # Two "adversarial" sets: heavy noise on benign frames, one with an attack manifest, one a
    # plain image folder. They only exercise the bookkeeping (no claim about detection).
    frames = open_dataset(data, "val", labeled=False)
    rng = np.random.default_rng(0)
    noisy = root / "noisy"
    plain = root / "plain"
    images = {}
    for i in range(4):
        image, _, name = frames[i]
        adv = np.clip(image.astype(np.int16) + rng.integers(-90, 91, image.shape), 0, 255).astype(np.uint8)
        for folder in (noisy, plain):
            path = folder / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), cv2.cvtColor(adv, cv2.COLOR_RGB2BGR))
        images[name] = {"adversarial": f"{name}.png", "success": 1.0}
    (noisy / "manifest.json").write_text(json.dumps({
        "format": "edge-guard-attack", "version": 1,
        "settings": {"method": "noise", "target": "none", "adaptive": None, "model_sha256": "0" * 64},
        "images": images}))
    return {"root": root, "ckpt": ckpt, "data": data, "noisy": noisy, "plain": plain}


def _args(ws, out, *extra):
    return ["calibrate", "--model", str(ws["ckpt"]), "--data", str(ws["data"]), "--out", str(out),
            "--frame", f"{FRAME[0]}x{FRAME[1]}", "--patch", str(PATCH), "--b-low", str(B_LOW),
            "--b-high", str(B_HIGH), "--pairs", str(K), "--calib-frames", str(CALIB),
            "--holdout-frames", str(HOLDOUT), "--seed", "3", "--quiet", *extra]


@pytest.fixture(scope="module")
def calibrated(workspace):
    out = workspace["root"] / "bundle"
    rc, stdout, stderr = run_cli(_args(workspace, out, "--fpr", "0.1", "--adversarial", str(workspace["noisy"]),
                                    "--adversarial", str(workspace["plain"])))
    assert rc == 0, stderr
    return out, stdout, stderr


def test_calibrate_writes_a_complete_bundle(calibrated, workspace):
    out, stdout, stderr = calibrated
    print(stdout)
    assert "threshold" in stdout and "held out" in stdout and "noise_none" in stdout
    assert "warning: 16 calibration frames" in stderr          # 16 < 10 / 0.1
    assert (f"{CALIB} calibration + {HOLDOUT} held-out benign frames: the first {CALIB + HOLDOUT} of "
            f"{CALIB + HOLDOUT} in split 'val' of {workspace['data'].resolve()} (cityscapes)") in stdout
    bundle = load_bundle(out)
    doc = bundle.doc
    det, rule = doc["detector"], doc["detector"]["threshold_rule"]
    # The default: the frame detector, the mIoU over classes of >= 0.1% of a patch (48 * 48 / 1000
    # = 2 px here), the full-frame graph named and hashed.
    assert (det["method"], det["statistic"], det["min_pixels"], det["patch_size"], det["k"]) == \
        ("frame", "miou-min", 2, PATCH, K)
    assert "b_low" not in det and "pairing" not in det
    assert doc["model"]["frame_graph"]["file"] == "segment.onnx" and bundle.frame_graph_path.is_file()
    # By default the threshold also holds under each camera condition: the lowest of them.
    conds = rule["conditions"]
    assert sorted(conds) == sorted(["jpeg30", "noise8", "dark0.4", "dark0.25", "bright1.5", "blur7"])
    assert det["threshold"] == min([rule["clean_threshold"]] + [c["threshold"] for c in conds.values()])
    assert all(c["frames"] == CALIB and c["achieved_fpr"] <= 0.1 for c in conds.values())
    assert "dark0.25:" in stdout and "its own threshold" in stdout
    assert (doc["frame"]["height"], doc["frame"]["width"]) == FRAME
    assert rule["rule"] == "fpr" and rule["target_fpr"] == 0.1 and rule["benign_frames"] == CALIB
    assert rule["achieved_fpr"] <= 0.1 and rule["allowed_false_positives"] == 1
    assert rule["holdout_frames"] == HOLDOUT and 0 <= rule["holdout_fpr"] <= 1
    assert set(rule["quantiles"]) >= {"0.01", "0.05", "0.5"}
    ev = doc["provenance"]["evaluation"]
    assert ev["calibration"]["frames"] == CALIB and ev["holdout"]["frames"] == HOLDOUT
    assert ev["calibration"]["min"] <= rule["clean_threshold"] <= ev["calibration"]["max"]
    assert set(ev["auc"]) == {"noise_none", "plain"}
    for name, adv in ev["adversarial"].items():
        assert adv["frames"] == 4 and 0 <= adv["detection_rate"] <= 1 and 0 <= adv["auc"] <= 1
        assert adv["auc"] == ev["auc"][name] and adv["auc_benign_frames"] == CALIB + HOLDOUT
    assert ev["adversarial"]["noise_none"]["attack"]["method"] == "noise"
    # Made against another model (its manifest says so): recorded and said, not taken as white-box.
    assert ev["adversarial"]["noise_none"]["white_box"] is False and ev["adversarial"]["plain"]["white_box"] is None
    assert "adversarial set noise_none was made against another model" in stderr
    assert "adversarial set plain has no attack manifest" in stderr
    cal = doc["provenance"]["calibration"]
    assert cal["seed"] == 3 and cal["settings"]["calib_frames"] == CALIB
    assert cal["source_checkpoint"]["sha256"] == doc["model"]["source_checkpoint"]["sha256"]
    assert len(cal["source_checkpoint"]["sha256"]) == 64
    assert doc["provenance"]["model_sha256"] == doc["model"]["sha256"]
    assert cal["export_verification"]["label_agreement"] >= 0.999


def test_the_pairs_detector_keeps_the_papers_geometry_and_statistic(workspace, tmp_path):
    out = tmp_path / "pairs"
    rc, stdout, stderr = run_cli(_args(workspace, out, "--fpr", "0.1", "--detector", "pairs",
                                       "--statistic", "miou", "--conditions", "none"))
    assert rc == 0, stderr
    det = load_bundle(out).detector
    assert "conditions" not in det["threshold_rule"]
    assert (det["method"], det["statistic"], det["b_low"], det["b_high"], det["pairing"]) == \
        ("pairs", "miou", B_LOW, B_HIGH, "independent")
    assert "pairs detector (miou)" in stdout and f"b=[{B_LOW},{B_HIGH})" in stdout
    with Guard.load(out, backend="onnxruntime-cpu", seed=0) as guard:   # and its frame's labels
        v = guard.check(np.zeros((FRAME[0], FRAME[1], 3), np.uint8))
    assert v.detector == "pairs" and v.labels.shape == FRAME


def test_a_plain_image_folder_is_named_as_such(tmp_path):
    from edge_guard.calibration.image_sets import benign_sets, describe_benign

    for name in ("a/x.png", "a/b/y.png", "z.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 8, 3), np.uint8))
    cal, held = benign_sets(tmp_path, "val", 2, 0)
    line = describe_benign(cal, held)
    assert line.startswith("2 calibration + 0 held-out benign frames: the first 2 of 3 images found under")
    assert "subfolders" in line and "--split does not apply" in line


def test_the_bundle_checks_frames_at_runtime(calibrated, workspace):
    out, _, _ = calibrated
    image = read_image(open_dataset(workspace["data"], "val", labeled=False).image_paths[0])
    with Guard.load(out, backend="onnxruntime-cpu", seed=0) as guard:
        verdict = guard.check(image, rgb=True)
    assert verdict.threshold == load_bundle(out).threshold
    assert 0.0 <= verdict.score <= 1.0 and len(verdict.scores) == K
    assert verdict.detector == "frame" and verdict.labels.shape == FRAME
    assert verdict.adversarial == (verdict.score < verdict.threshold)


def test_offline_scoring_equals_the_runtime(calibrated, workspace):
    """PyTorch through Guard.from_function vs the exported graph under ONNX Runtime, same seed."""
    out, _, _ = calibrated
    bundle = load_bundle(out)
    seg, _ = load_segmenter(workspace["ckpt"])
    frames = open_dataset(workspace["data"], "val", labeled=False)
    images = [read_image(p) for p in frames.image_paths[:CALIB]]
    seed = lambda: np.random.default_rng(np.random.SeedSequence([3, STREAM_CALIBRATION]))  # noqa: E731
    with Guard.from_function(bundle, torch_segment(seg), seed=seed()) as offline, \
            Guard.load(out, backend="onnxruntime-cpu", seed=seed()) as runtime:
        a = [offline.check(im, rgb=True) for im in images]
        b = [runtime.check(im, rgb=True) for im in images]
    for va, vb in zip(a, b):
        assert va.pairs == vb.pairs
        np.testing.assert_allclose(va.pair_mious, vb.pair_mious, atol=1e-2)
    ort_scores = np.array([v.score for v in b])
    torch_scores = np.array([v.score for v in a])
    assert np.abs(ort_scores - torch_scores).max() < 1e-2
    # The threshold in guard.json is what calibration saw: the runtime's own scores of the
    # calibration frames with the calibration stream reproduce it (m = floor(0.1 * 16) = 1).
    ev = bundle.doc["provenance"]["evaluation"]["calibration"]
    clean = bundle.detector["threshold_rule"]["clean_threshold"]   # before the camera conditions
    assert np.sort(torch_scores)[1] == clean
    assert abs(np.sort(ort_scores)[1] - clean) < 1e-2
    assert ev["min"] == pytest.approx(torch_scores.min()) and ev["mean"] == pytest.approx(torch_scores.mean())


def test_scale_score_runs_the_torch_model(workspace):
    seg, _ = load_segmenter(workspace["ckpt"])
    image = read_image(open_dataset(workspace["data"], "val", labeled=False).image_paths[0])
    scores = scale_scores(torch_segment(seg), image)
    assert set(scores) == {0.5, 3.0, 5.0} and all(0.0 <= v <= 1.0 for v in scores.values())


@pytest.mark.parametrize("extra, message", [
    (["--rule", "median"], "unknown --rule"),
    (["--fpr", "0"], "strictly between 0 and 1"),
    (["--fpr", "1.5"], "strictly between 0 and 1"),
    (["--fpr", "0.01"], "cannot resolve a false-positive rate"),
    (["--fpr", "0.1", "--frame", "54x128", "--detector", "pairs"], "patch + b_high - 1"),
    (["--fpr", "0.1", "--b-high", "60", "--detector", "pairs"], "exceeds the patch size"),
    (["--fpr", "0.1", "--frame", "40x128"], "too small for 48x48 patches"),
    (["--fpr", "0.1", "--conditions", "fog"], "unknown camera condition 'fog'"),
    (["--fpr", "0.1", "--condition-frames", "5"], "--condition-frames 5 cannot resolve a false-positive rate of 0.1"),
    (["--fpr", "0.1", "--calib-frames", "30"], "has 24 frames"),
])
def test_user_mistakes_exit_2_in_one_line(workspace, tmp_path, extra, message):
    out = tmp_path / "bundle"
    rc, stdout, stderr = run_cli(_args(workspace, out, *extra))
    assert rc == 2, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("edge-guard calibrate: error:")
    assert message in stderr
    assert not (out / "guard.json").exists()


def test_missing_data_and_adversarial_folders_exit_2(workspace, tmp_path):
    args = _args(workspace, tmp_path / "b", "--fpr", "0.1")
    missing = list(args)
    missing[missing.index("--data") + 1] = str(tmp_path / "nowhere")
    rc, _, stderr = run_cli(missing)
    assert rc == 2 and "does not exist" in stderr and stderr.count("\n") == 1
    rc, _, stderr = run_cli(args + ["--adversarial", str(tmp_path / "no_attack")])
    assert rc == 2 and "adversarial folder" in stderr and stderr.count("\n") == 1
