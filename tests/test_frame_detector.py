"""The patch-vs-frame detector: statistics on hand-computed cases, the frame confusion, the
patch sampler, Verdict.labels, and Guard.check on analytic models (ONNX Runtime and NumPy)."""

import json

import numpy as np
import pytest

from edge_guard import Guard, Verdict
from edge_guard.bundle import BundleError, load_bundle, validate
from edge_guard.consistency import (STATISTICS, confusion, frame_confusion, frame_scores,
                                    miou_from_confusion, score_from_confusion)
from edge_guard.crop import crop_patches, crop_tops
from edge_guard.errors import UserError
from edge_guard.patches import sample_patches
from tiny_bundle import make_frame_bundle, make_guard_bundle, pixel_labels

H, W, S = 48, 64, 16


@pytest.fixture(scope="module")
def frame_dir(tmp_path_factory):
    return make_frame_bundle(tmp_path_factory.mktemp("f") / "bundle", frame=(H, W), k=4, threshold=0.9)


def _noise(seed=1, shape=(H, W, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# ---------------------------------------------------------------- statistics, by hand

def test_agreement_is_the_diagonal_share():
    cm = np.array([[5, 1, 0], [0, 3, 0], [2, 0, 1]])       # 12 pixels, 9 on the diagonal
    assert score_from_confusion(cm, "agreement") == pytest.approx(9 / 12)
    assert score_from_confusion(np.zeros((3, 3), int), "agreement") == 1.0   # no pixel: no evidence


def test_miou_min_leaves_out_classes_of_a_few_pixels():
    # Class 2 holds 1 pixel of map a (its row) and 4 of map b (its column).
    cm = np.array([[40, 0, 2], [0, 30, 1], [0, 0, 1]])
    # classes 0: 40/(42+40-40)=40/42; 1: 30/31; 2: 1/(1+4-1)=1/4
    full = (40 / 42 + 30 / 31 + 1 / 4) / 3
    assert score_from_confusion(cm, "miou") == pytest.approx(full, rel=1e-6)
    assert score_from_confusion(cm, "miou-min", 0) == pytest.approx(full, rel=1e-6)
    # at 5 px class 2 is below the count in both maps and is left out; its pixels still
    # count against classes 0 and 1 (the unions keep them).
    assert score_from_confusion(cm, "miou-min", 5) == pytest.approx((40 / 42 + 30 / 31) / 2, rel=1e-6)
    # 4 px: present in map b with 4 pixels, so it stays
    assert score_from_confusion(cm, "miou-min", 4) == pytest.approx(full, rel=1e-6)
    # nothing reaches the count: 1.0, as for an empty region
    assert score_from_confusion(cm, "miou-min", 10_000) == 1.0


def test_statistics_are_float32_per_comparison_and_checked():
    rng = np.random.default_rng(0)
    cms = rng.integers(0, 50, (6, 5, 5))
    for stat in STATISTICS:
        v = score_from_confusion(cms, stat, 20)
        assert v.dtype == np.float32 and v.shape == (6,)
        assert all(v[i] == np.float32(score_from_confusion(cms[i], stat, 20)) for i in range(6))
    assert np.array_equal(score_from_confusion(cms, "miou"), miou_from_confusion(cms))
    with pytest.raises(UserError, match="unknown score statistic 'iou'"):
        score_from_confusion(cms, "iou")
    with pytest.raises(UserError, match="min_pixels"):
        score_from_confusion(cms, "miou-min", -1)


# ---------------------------------------------------------------- patches against the frame

def test_frame_confusion_compares_each_patch_with_its_region():
    frame = np.arange(H * W).reshape(H, W) % 3
    tops = np.array([[0, 0], [10, 20], [H - S, W - S]])
    patches = np.stack([frame[y:y + S, x:x + S] for y, x in tops])
    patches[1, 0, :5] = (patches[1, 0, :5] + 1) % 3          # 5 pixels of patch 1 disagree
    patches[2, 3, 3] = -1                                      # an invalid id is dropped
    cms = frame_confusion(patches, frame, tops, 3)
    assert cms.shape == (3, 3, 3)
    assert cms[0].sum() == S * S and np.trace(cms[0]) == S * S
    assert cms[1].sum() == S * S and np.trace(cms[1]) == S * S - 5
    assert cms[2].sum() == S * S - 1
    # rows: the patch's labels, columns: the frame's
    y, x = tops[1]
    assert np.array_equal(cms[1], confusion(patches[1], frame[y:y + S, x:x + S], 3))
    scores = frame_scores(patches, frame, tops, 3, "agreement")
    assert scores.tolist() == [1.0, np.float32((S * S - 5) / (S * S)), 1.0]
    with pytest.raises(UserError, match="falls outside"):
        frame_confusion(patches, frame, tops + [1, 0], 3)
    with pytest.raises(UserError, match="need 3 top-lefts"):
        frame_confusion(patches, frame, tops[:2], 3)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.int16])
def test_the_agreement_fast_path_equals_the_confusion(dtype):
    # frame_scores skips the C x C matrices for agreement: same float32 values, invalid ids
    # (negative, >= C) dropped in either map.
    rng = np.random.default_rng(1)
    lo = 0 if dtype == np.uint8 else -2
    for _ in range(40):
        c, s = int(rng.integers(1, 8)), int(rng.integers(1, 20))
        h, w = s + int(rng.integers(0, 10)), s + int(rng.integers(0, 10))
        frame = rng.integers(lo, c + 2, (h, w)).astype(dtype)
        k = int(rng.integers(1, 5))
        tops = np.stack([rng.integers(0, h - s + 1, k), rng.integers(0, w - s + 1, k)], 1)
        patches = rng.integers(lo, c + 2, (k, s, s)).astype(dtype)
        ref = score_from_confusion(frame_confusion(patches, frame, tops, c), "agreement")
        assert np.array_equal(frame_scores(patches, frame, tops, c, "agreement"), np.asarray(ref).reshape(-1))


def test_sample_patches_lie_inside_and_reach_every_edge():
    tops = sample_patches(H, W, S, 4000, np.random.default_rng(0))
    assert tops.dtype == np.int32 and tops.shape == (4000, 2)
    assert tops[:, 0].min() == 0 and tops[:, 0].max() == H - S
    assert tops[:, 1].min() == 0 and tops[:, 1].max() == W - S
    again = sample_patches(H, W, S, 4000, np.random.default_rng(0))
    assert np.array_equal(tops, again)
    assert sample_patches(S, S, S, 3, np.random.default_rng(1)).tolist() == [[0, 0]] * 3
    with pytest.raises(UserError, match="too small for 16x16 patches"):
        sample_patches(S - 1, W, S, 1)
    with pytest.raises(UserError, match="at least 1"):
        sample_patches(H, W, S, 0)


def test_crop_tops_is_crop_patches_of_pairs_read_as_tops():
    frame = _noise()
    pairs = np.array([[0, 1, 5, 9], [30, 40, 32, 47]])
    assert np.array_equal(crop_tops(frame, pairs.reshape(-1, 2), S), crop_patches(frame, pairs, S))
    assert np.array_equal(crop_tops(frame, [[2, 3]], S, swap_rb=True)[0], frame[2:18, 3:19, ::-1])


# ---------------------------------------------------------------- the Guard

def test_a_per_pixel_model_agrees_with_the_frame_everywhere(frame_dir):
    # Every patch of a per-pixel model labels its pixels as the frame does: score 1.
    with Guard.load(frame_dir, backend="onnxruntime-cpu", seed=0, threads=1) as guard:
        assert guard.method == "frame" and guard.segmenter is not None
        for seed in range(3):
            v = guard.check(_noise(seed), rgb=True)
            assert v.detector == "frame" and v.statistic == "agreement"
            assert v.score == 1.0 and v.scores == [1.0] * 4 and not v.adversarial
            assert len(v.boxes) == 4 and all(len(b) == 2 for b in v.boxes)
            # the frame's labels are the full-frame graph's
            assert v.labels.dtype == np.int32 and np.array_equal(v.labels, pixel_labels(_noise(seed)[None])[0])
            assert "segment" in v.timings_ms


def test_a_position_dependent_model_drops_the_score(frame_dir):
    # Labels that depend on where a pixel sits in the model's input (its column, in quarters
    # of the input's width): a patch labels its pixels unlike the frame does.
    def by_column(batch):
        b, h, w, _ = batch.shape
        return np.broadcast_to((np.arange(w) * 4 // w)[None, None, :], (b, h, w)).astype(np.int32)

    bundle = load_bundle(frame_dir)
    guard = Guard.from_function(bundle, by_column, seed=0)
    v = guard.check(_noise())
    assert v.score < 0.6 and v.adversarial
    # with the per-pixel model through the same reference path: 1
    per_pixel = Guard.from_function(bundle, pixel_labels, seed=0)
    assert per_pixel.check(_noise(), rgb=True).score == 1.0


def test_labels_passed_in_spend_only_the_patches(frame_dir):
    calls = []

    def segment(batch):
        calls.append(batch.shape)
        return pixel_labels(batch)

    guard = Guard.from_function(load_bundle(frame_dir), segment, seed=0)
    frame = _noise()
    own = pixel_labels(frame[None])[0]
    v = guard.check(frame, rgb=True, labels=own)
    assert calls == [(4, S, S, 3)] and v.score == 1.0 and v.labels is own and "segment" not in v.timings_ms
    # labels that are not the frame's: the patches disagree with them
    v = guard.check(frame, rgb=True, labels=(own + 1) % 4)
    assert v.score == 0.0 and v.adversarial
    for bad, words in (((own[:-1]), "bundle's frame size 48x64"), (own.astype(np.float32), "integer (H, W)"),
                       ([[0]], "integer (H, W)")):
        with pytest.raises(UserError, match=words.replace("(", r"\(").replace(")", r"\)")):
            guard.check(frame, labels=bad)


def test_labels_at_gives_the_segmentation_at_the_input_size(frame_dir):
    with Guard.load(frame_dir, backend="onnxruntime-cpu", seed=0, threads=1) as guard:
        big = np.repeat(np.repeat(_noise(), 2, axis=0), 2, axis=1)      # 96x128: each pixel 2x2
        v = guard.check(big, rgb=True)
    assert v.input_size == (2 * H, 2 * W) and v.labels.shape == (H, W)
    up = v.labels_at()
    assert up.shape == (2 * H, 2 * W) and np.array_equal(up[::2, ::2], v.labels)
    assert np.array_equal(v.labels_at((H, W)), v.labels)
    assert v.labels_at(np.array([H, W])).shape == (H, W)
    assert v.labels_at((H // 2, W // 2)).shape == (H // 2, W // 2)
    d = v.as_dict()
    assert "labels" not in d and d["detector"] == "frame" and d["boxes"] == v.boxes and "pairs" not in d
    assert json.loads(json.dumps(d)) == d


def test_the_pairs_detector_segments_the_frame_when_it_has_the_graph(tmp_path):
    # A pairs bundle with a frame graph: the paper's score, and the labels for the vehicle.
    root = make_frame_bundle(tmp_path / "p", frame=(H, W), k=3)
    doc = json.loads((root / "guard.json").read_text())
    doc["detector"].update(method="pairs", statistic="miou", b_low=2, b_high=6, pairing="independent")
    (root / "guard.json").write_text(json.dumps(doc))
    with Guard.load(root, backend="onnxruntime-cpu", seed=0, threads=1) as guard:
        v = guard.check(_noise(), rgb=True)
    assert v.detector == "pairs" and len(v.boxes[0]) == 4 and v.score == 1.0
    assert np.array_equal(v.labels, pixel_labels(_noise()[None])[0])
    assert v.as_dict()["pair_mious"] == v.scores
    with Guard.load(root, backend="onnxruntime-cpu", seed=0, threads=1, segment=False) as guard:
        v = guard.check(_noise(), rgb=True)
    assert v.labels is None and "segment" not in v.timings_ms
    with pytest.raises(UserError, match="no labels"):
        v.labels_at()


def test_top_level_import():
    import edge_guard

    assert edge_guard.Guard is Guard and edge_guard.Verdict is Verdict
    with pytest.raises(AttributeError):
        edge_guard.Nope  # noqa: B018


# ---------------------------------------------------------------- the bundle contract

def test_the_frame_graph_is_checked_like_the_model(frame_dir, tmp_path):
    import shutil

    root = tmp_path / "b"
    shutil.copytree(frame_dir, root)
    assert load_bundle(root).frame_graph_path == root / "segment.onnx"
    with open(root / "segment.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="not the full-frame graph guard.json was calibrated for"):
        load_bundle(root)
    (root / "segment.onnx").unlink()
    with pytest.raises(BundleError, match="names the full-frame graph segment.onnx, which is missing"):
        load_bundle(root)


def test_the_frame_method_needs_its_graph_and_old_names_still_load(frame_dir, tmp_path):
    doc = json.loads((frame_dir / "guard.json").read_text())
    no_graph = json.loads(json.dumps(doc))
    del no_graph["model"]["frame_graph"]
    with pytest.raises(BundleError, match="model.frame_graph .*is missing"):
        validate(no_graph)
    bad = json.loads(json.dumps(doc))
    bad["detector"]["statistic"] = "dice"
    with pytest.raises(BundleError, match="detector.statistic is 'dice'"):
        validate(bad)
    null = json.loads(json.dumps(doc))
    null["model"]["frame_graph"] = None       # not "no graph": a malformed section
    with pytest.raises(BundleError, match="model.frame_graph must be an object"):
        validate(null)
    same = json.loads(json.dumps(doc))
    same["model"]["frame_graph"]["file"] = same["model"]["file"]
    with pytest.raises(BundleError, match="its own file"):
        validate(same)
    # A bundle written before the frame detector: method "spatial", no statistic = the paper's.
    old = make_guard_bundle(tmp_path / "old", frame=(H, W))
    b = load_bundle(old)
    assert (b.method, b.statistic, b.frame_graph_path, b.patch_batch(5)) == ("pairs", "miou", None, 10)
    assert load_bundle(frame_dir).patch_batch(5) == 5


def test_sessions_do_not_spin(frame_dir, monkeypatch):
    # The guard's two sessions run by turns: idle threads spinning in one stall the other.
    import onnxruntime

    from edge_guard.backends import onnxruntime as ortb

    made = []
    real = onnxruntime.SessionOptions

    def options():
        made.append(real())
        return made[-1]

    monkeypatch.setattr(onnxruntime, "SessionOptions", options)
    with Guard.load(frame_dir, backend="onnxruntime-cpu", seed=0, threads=1):
        pass
    assert len(made) == 2 and all(o.get_session_config_entry(ortb.NO_SPIN[0]) == "0" for o in made)
    # and a session the vehicle opens itself afterwards is still free to choose
    onnxruntime.InferenceSession(str(frame_dir / "model.onnx"), real(), providers=["CPUExecutionProvider"])
