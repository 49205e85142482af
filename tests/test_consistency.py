"""mIoU, overlap confusion, crop and vote-entropy references against hand arithmetic and
independent computations."""

import math
import zlib

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion

from edge_guard.consistency import (confusion, mean_score, miou, miou_from_confusion,
                                    overlap_confusion, pair_mious, spatial_score, vote_entropy)
from edge_guard.crop import crop_patches, crop_patches_nchw, normalisation_coefficients
from edge_guard.errors import UserError
from edge_guard.patches import sample_pairs
from label_maps import label_maps, odd_pairs

# ---------------------------------------------------------------------------------------------
# Hand-computed mIoU


def test_one_pixel_disagreement():
    a = np.array([[0, 0], [1, 1]])
    b = np.array([[0, 0], [1, 0]])
    # pixel pairs (a, b): (0,0) (0,0) (1,1) (1,0) -> n = [[2, 0], [1, 1]]
    assert confusion(a, b, 2).tolist() == [[2, 0], [1, 1]]
    # class 0: n00 = 2, row 2 + col 3 - 2 = 3 -> 2/3; class 1: n11 = 1, row 2 + col 1 - 1 = 2 -> 1/2
    # mIoU = (2/3 + 1/2) / 2 = 7/12
    assert miou(a, b, 2) == pytest.approx(7 / 12, rel=1e-6)


def test_class_in_one_map_only_counts():
    a = np.array([[2, 2], [2, 2]])
    b = np.array([[2, 2], [2, 3]])
    # n22 = 3, n23 = 1. class 2: 3 / (4 + 3 - 3) = 3/4; class 3: 0 / (0 + 1 - 0) = 0;
    # classes 0 and 1 appear in neither map and are left out: mIoU = (3/4 + 0) / 2 = 3/8
    assert miou(a, b, 4) == 0.375


def test_total_disagreement_is_zero():
    # every pixel 0 vs 1: class 0 -> 0 / (4 + 0 - 0), class 1 -> 0 / (0 + 4 - 0): mean 0
    assert miou(np.zeros((2, 2), int), np.ones((2, 2), int), 2) == 0.0


def test_identical_maps_are_one():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 19, (31, 17))
    assert miou(a, a, 19) == 1.0


def test_ignore_labels_drop_the_pixel_from_both_maps():
    a = np.array([[0, 255], [1, 1]], np.uint8)
    b = np.array([[0, 0], [255, 1]], np.uint8)
    # (0,1) and (1,0) are ignored in one map each -> only (0,0)->(0,0) and (1,1)->(1,1) count:
    # class 0: 1/1, class 1: 1/1 -> 1.0 (the b=0 at an ignored a pixel must not count)
    assert confusion(a, b, 19)[0].sum() == 1
    assert miou(a, b, 19) == 1.0


def test_labels_at_or_above_c_and_negative_are_ignored():
    a = np.array([[0, 5, -1, 1]], np.int32)
    b = np.array([[0, 0, 1, 7]], np.int32)
    # C = 5: 5, -1 and 7 are invalid -> only (0, 0) counts -> 1.0
    assert confusion(a, b, 5).sum() == 1
    assert miou(a, b, 5) == 1.0


def test_degenerate_cases_score_one():
    # No valid pixel: no evidence of inconsistency -> 1.0 (documented rule)
    assert miou(np.full((3, 3), 255, np.uint8), np.zeros((3, 3), np.uint8), 19) == 1.0
    assert miou(np.zeros((0, 0), int), np.zeros((0, 0), int), 19) == 1.0
    assert miou_from_confusion(np.zeros((19, 19), int)) == 1.0


def test_batched_equals_single():
    rng = np.random.default_rng(1)
    cms = rng.integers(0, 5, (7, 6, 6))
    cms[3] = 0
    cms[4, :, 2] = cms[4, 2, :] = 0  # an absent class
    batched = miou_from_confusion(cms)
    assert batched.dtype == np.float32 and batched.shape == (7,)
    assert [float(v) for v in batched] == [miou_from_confusion(cm) for cm in cms]


def test_shape_errors():
    with pytest.raises(UserError):
        confusion(np.zeros((2, 2), int), np.zeros((2, 3), int), 2)
    with pytest.raises(UserError):
        miou_from_confusion(np.zeros((3, 4)))
    with pytest.raises(UserError):
        confusion(np.zeros((2, 2)), np.zeros((2, 2)), 2)  # float maps


# ---------------------------------------------------------------------------------------------
# Against independent computations


def naive_miou(a, b, c):
    """Double loop over classes on sklearn's confusion matrix."""
    a, b = a.ravel().astype(np.int64), b.ravel().astype(np.int64)
    keep = (a >= 0) & (a < c) & (b >= 0) & (b < c)
    if not keep.any():
        return 1.0
    cm = sk_confusion(a[keep], b[keep], labels=list(range(c)))
    ious = []
    for i in range(c):
        row = sum(cm[i, j] for j in range(c))
        col = sum(cm[j, i] for j in range(c))
        if row + col > 0:
            ious.append(cm[i, i] / (row + col - cm[i, i]))
    return sum(ious) / len(ious)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64])
def test_random_maps_match_sklearn(seed, dtype):
    rng = np.random.default_rng(seed)
    c = int(rng.integers(2, 25))
    shape = tuple(rng.integers(1, 60, 2))
    a = rng.integers(0, c + 3, shape).astype(dtype)  # some labels >= C
    b = rng.integers(0, c + 3, shape).astype(dtype)
    if dtype != np.uint8:
        a[rng.random(shape) < 0.05] = -1
    keep = (a.astype(np.int64) >= 0) & (a < c) & (b < c) & (b.astype(np.int64) >= 0)
    expected = sk_confusion(a[keep].astype(np.int64), b[keep].astype(np.int64), labels=list(range(c)))
    assert np.array_equal(confusion(a, b, c), expected)
    assert miou(a, b, c) == pytest.approx(naive_miou(a, b, c), rel=1e-6)


# ---------------------------------------------------------------------------------------------
# overlap_confusion against a per-pair loop in frame coordinates


def naive_overlap_confusion(labels, pairs, c):
    s = labels.shape[1]
    out = []
    for i, (y1, x1, y2, x2) in enumerate(pairs.astype(int)):
        top, left = max(y1, y2), max(x1, x2)
        bottom, right = min(y1, y2) + s, min(x1, x2) + s
        a = labels[2 * i][top - y1:bottom - y1, left - x1:right - x1].ravel().astype(np.int64)
        b = labels[2 * i + 1][top - y2:bottom - y2, left - x2:right - x2].ravel().astype(np.int64)
        keep = (a >= 0) & (a < c) & (b >= 0) & (b < c)
        out.append(sk_confusion(a[keep], b[keep], labels=list(range(c))) if keep.any()
                   else np.zeros((c, c), np.int64))
    return np.stack(out)


CASES = [(kind, k, s) for kind in ("random", "uniform", "blocks", "stripes", "checker_ignore")
         for k, s in ((1, 64), (5, 96), (5, 160))] + [("blocks", 50, 512), ("random", 50, 128)]


@pytest.mark.parametrize("kind, k, s", CASES)
def test_overlap_confusion_matches_naive(kind, k, s):
    rng = np.random.default_rng(zlib.crc32(f"{kind}-{k}-{s}".encode()))
    c = 19
    labels = label_maps(kind, 2 * k, s, c, rng)
    for pairs in (odd_pairs(k, s, rng),
                  sample_pairs(3 * s, 3 * s, s, s // 16, s // 8 + 1, k, rng)):
        got = overlap_confusion(labels, pairs, c)
        assert got.dtype == np.int64 and got.shape == (k, c, c)
        assert np.array_equal(got, naive_overlap_confusion(labels, pairs, c))
        mious = pair_mious(labels, pairs, c)
        # the per-pair mIoU computed again from the frame-coordinate slices, independently
        expected = []
        for i, (y1, x1, y2, x2) in enumerate(pairs.astype(int)):
            top, left = max(y1, y2), max(x1, x2)
            bottom, right = min(y1, y2) + s, min(x1, x2) + s
            expected.append(naive_miou(labels[2 * i][top - y1:bottom - y1, left - x1:right - x1],
                                       labels[2 * i + 1][top - y2:bottom - y2, left - x2:right - x2], c))
        assert mious == pytest.approx(expected, rel=1e-6)
        assert spatial_score(labels, pairs, c) == pytest.approx(np.mean(expected), rel=1e-6)


def test_overlap_confusion_c64_and_dtypes():
    rng = np.random.default_rng(5)
    labels = rng.integers(-2, 70, (10, 80, 80))
    pairs = odd_pairs(5, 80, rng)
    expected = naive_overlap_confusion(labels, pairs, 64)
    for dtype in (np.int32, np.int64, np.int16):
        assert np.array_equal(overlap_confusion(labels.astype(dtype), pairs, 64), expected)


def test_overlap_confusion_errors():
    with pytest.raises(UserError, match="need 4 label patches"):
        overlap_confusion(np.zeros((3, 8, 8), int), np.zeros((2, 4), int), 19)


def test_mean_score_is_the_float32_mean():
    assert mean_score([1.0, 0.5, 0.0]) == 0.5
    with pytest.raises(UserError):
        mean_score([])


# ---------------------------------------------------------------------------------------------
# Crop references against plain slicing


def test_crop_matches_slicing():
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)
    pairs = sample_pairs(150, 200, 64, 7, 33, 6, rng)
    batch = crop_patches(frame, pairs, 64)
    assert batch.shape == (12, 64, 64, 3)
    for i, (y1, x1, y2, x2) in enumerate(pairs):
        assert np.array_equal(batch[2 * i], frame[y1:y1 + 64, x1:x1 + 64])
        assert np.array_equal(batch[2 * i + 1], frame[y2:y2 + 64, x2:x2 + 64])
    swapped = crop_patches(frame, pairs, 64, swap_rb=True)
    assert np.array_equal(swapped[..., 0], batch[..., 2]) and np.array_equal(swapped[..., 1], batch[..., 1])
    out = np.empty_like(batch)
    assert crop_patches(frame, pairs, 64, out=out) is out and np.array_equal(out, batch)


def test_crop_nchw_normalises():
    rng = np.random.default_rng(4)
    frame = rng.integers(0, 256, (90, 100, 3), dtype=np.uint8)
    pairs = sample_pairs(90, 100, 40, 3, 9, 3, rng)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    got = crop_patches_nchw(frame, pairs, 40, mean, std, swap_rb=True)
    assert got.shape == (6, 3, 40, 40) and got.dtype == np.float32
    scale, bias = normalisation_coefficients(mean, std)
    for i, (y, x) in enumerate(pairs.reshape(-1, 2)):
        rgb = frame[y:y + 40, x:x + 40, ::-1].astype(np.float64)
        ref = (rgb / 255.0 - np.array(mean)) / np.array(std)
        assert np.allclose(got[i].transpose(1, 2, 0), ref, atol=1e-5)
        # the exact float32 rounding steps the kernel performs, pixel by pixel
        for c in range(3):
            v = np.float32(rgb[5, 7, c]) * scale[c]
            assert got[i, c, 5, 7] == np.float32(np.float32(v) + bias[c])
    half = crop_patches_nchw(frame, pairs, 40, mean, std, swap_rb=True, dtype=np.float16)
    assert half.dtype == np.float16 and np.array_equal(half, got.astype(np.float16))


def test_crop_rejects_patches_outside():
    frame = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(UserError, match="outside"):
        crop_patches(frame, np.array([[0, 0, 20, 20]]), 32)


# ---------------------------------------------------------------------------------------------
# Vote entropy (§3.1)


def test_vote_entropy_by_hand():
    # frame 3 x 3, patches of size 2 at (0, 0) and (0, 1):
    #   A = [[0, 0], [0, 0]] covers (0,0) (0,1) (1,0) (1,1)
    #   B = [[1, 0], [0, 0]] covers (0,1) (0,2) (1,1) (1,2)
    # (0,1) gets votes {0, 1}: p = (1/2, 1/2), H = ln 2; every other covered pixel agrees: 0.
    # Row 2 is covered by no patch: NaN.
    labels = np.array([[[0, 0], [0, 0]], [[1, 0], [0, 0]]])
    h = vote_entropy(labels, np.array([[0, 0], [0, 1]]), (3, 3), 19)
    assert h.dtype == np.float32
    assert np.allclose(h[:2], [[0, math.log(2), 0], [0, 0, 0]])
    assert np.isnan(h[2]).all()


def test_vote_entropy_three_way_split_and_ignore():
    # one pixel frame, four patches of size 1 voting 0, 1, 2 and 255 (ignored):
    # p = (1/3, 1/3, 1/3) -> H = ln 3
    labels = np.array([0, 1, 2, 255], np.uint8).reshape(4, 1, 1)
    h = vote_entropy(labels, np.zeros((4, 2), int), (1, 1), 19)
    assert h[0, 0] == pytest.approx(math.log(3), rel=1e-6)
