"""Spatial-consistency scoring: confusion matrices of compared regions and their agreement.

Two detectors compare regions: ``pairs`` (§3.2, Algorithm 1) the two patches of a pair on their
overlap, ``frame`` each patch with the frame's own labels on the same pixels. This is the
runtime's CPU path and the NumPy reference of ``overlap_confusion.cu``.

Statistics of a confusion matrix (``STATISTICS``):

- ``miou``: the paper's mIoU, defined below;
- ``agreement``: the fraction of valid pixels on which the two maps agree (trace / total);
- ``miou-min``: the mIoU over the classes with at least ``min_pixels`` pixels in either map
  (a class of a few stray pixels is left out instead of counting as a whole IoU-0 class; its
  pixels still count against the classes they were confused with).

mIoU (the paper's definition): with n_ij the pixels labelled i in the first map and j in the
second, ``mIoU = mean over present classes of n_ii / (row_i + col_i - n_ii)`` where a class is
present when it appears in either map (row_i + col_i > 0). Labels outside [0, C) are ignored
in either map: the pixel is dropped from both.

Degenerate case: no valid pixel at all (empty overlap, or every pixel ignored) gives 1.0.
No pixel means no evidence of inconsistency, and the detector flags only low scores.

Precision (every statistic): per-class IoUs (or the agreement) are float64, summed left to right in class order, divided by the
number of present classes and rounded once to float32; the frame score sums the float32
pair mIoUs left to right in float64, divides by K and rounds to float32. The CUDA kernel does
the same operations in the same order, so the two paths agree bit for bit.
"""

from __future__ import annotations

import numpy as np

from .errors import UserError
from .patches import overlap_boxes

_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
STATISTICS = ("miou", "agreement", "miou-min")
#: The default statistic and its class size: the mIoU over classes of at least 0.1% of a
#: patch (64 px at s = 256), chosen on the development split (reports/2026-12-06-frame-detector):
#: pixel agreement let the paper's adaptive attack through (AUC 0.54), the paper's mIoU false-
#: alarmed more under camera conditions.
DEFAULT_STATISTIC = "miou-min"
MIN_PIXELS_FRACTION = 64 / 256 ** 2


def default_min_pixels(patch: int) -> int:
    """The default class size of ``miou-min`` for s x s patches: 0.1% of the patch (64 at 256)."""
    return max(1, round(MIN_PIXELS_FRACTION * int(patch) ** 2))


def resolve_min_pixels(statistic: str, min_pixels: int | None, patch: int) -> int:
    """``min_pixels`` as given, or (None) the default for ``statistic``: default_min_pixels for
    miou-min, 0 for the others (they have no class size)."""
    if min_pixels is not None:
        return min_pixels
    return default_min_pixels(patch) if statistic == "miou-min" else 0


def _as_unsigned(labels: np.ndarray) -> np.ndarray:
    """View integer labels as unsigned so negative ids become huge and fall outside [0, C)."""
    if labels.dtype.kind == "u":
        return labels
    if labels.dtype.kind != "i":
        raise UserError(f"label maps must hold integers, got {labels.dtype}")
    return labels.view(_UNSIGNED[labels.dtype.itemsize])


def _check_classes(num_classes: int) -> int:
    num_classes = int(num_classes)
    if num_classes < 1:
        raise UserError(f"num_classes must be at least 1, got {num_classes}")
    return num_classes


def _clipped(labels: np.ndarray, c: int) -> np.ndarray:
    """Unsigned labels with every id >= C set to C; as they are when the type cannot hold C
    (uint8 labels of a 256-class model: every id is a class)."""
    unsigned = _as_unsigned(labels)
    if c > np.iinfo(unsigned.dtype).max:
        return unsigned
    return np.minimum(unsigned, c)


def _joint_counts(a: np.ndarray, b: np.ndarray, c: int) -> np.ndarray:
    """(C, C) int64 counts of label pairs; ids >= C (after the unsigned view) are dropped.

    Invalid ids are clipped to an extra bin C, counted and then cut away: cheaper than
    boolean masking, which copies both maps.
    """
    c1 = c + 1
    idx = _clipped(a, c).astype(np.intp)
    idx *= c1
    np.add(idx, _clipped(b, c), out=idx, casting="unsafe")  # values <= C
    return np.bincount(idx.ravel(), minlength=c1 * c1).reshape(c1, c1)[:c, :c].astype(np.int64)


def confusion(a: np.ndarray, b: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrix (C, C) int64 of two label maps of one shape: n[i, j] = #(a == i, b == j)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise UserError(f"label maps differ in shape: {a.shape} vs {b.shape}")
    return _joint_counts(a, b, _check_classes(num_classes))


def miou_from_confusion(cm: np.ndarray):
    """mIoU of a (C, C) confusion matrix -> float, or of a (..., C, C) stack -> (...) float32."""
    cm = np.asarray(cm)
    if cm.ndim < 2 or cm.shape[-1] != cm.shape[-2]:
        raise UserError(f"a confusion matrix is square (..., C, C), got shape {cm.shape}")
    cm = cm.astype(np.int64, copy=False)
    diag = np.diagonal(cm, axis1=-2, axis2=-1)
    union = cm.sum(axis=-1) + cm.sum(axis=-2) - diag
    present = union > 0
    iou = np.where(present, diag / np.maximum(union, 1), 0.0)
    # cumsum adds strictly left to right, as the kernel does (np.sum adds pairwise).
    total = np.cumsum(iou, axis=-1)[..., -1] if cm.shape[-1] else np.zeros(cm.shape[:-2])
    count = present.sum(axis=-1)
    score = np.where(count > 0, total / np.maximum(count, 1), 1.0).astype(np.float32)
    return float(score) if cm.ndim == 2 else score


def check_statistic(statistic: str, min_pixels: int = 0) -> tuple[str, int]:
    """(statistic, min_pixels) validated; UserError (one line) otherwise."""
    if statistic not in STATISTICS:
        raise UserError(f"unknown score statistic {statistic!r}: choose {', '.join(STATISTICS)}")
    if isinstance(min_pixels, bool) or int(min_pixels) != min_pixels or min_pixels < 0:
        raise UserError(f"min_pixels must be a non-negative integer, got {min_pixels!r}")
    return statistic, int(min_pixels)


def score_from_confusion(cm: np.ndarray, statistic: str = "miou", min_pixels: int = 0):
    """The ``statistic`` of a (C, C) confusion matrix -> float, or of (..., C, C) -> (...) float32.

    ``min_pixels`` applies to ``miou-min`` only. No valid pixel (or, for ``miou-min``, no
    class reaching ``min_pixels``) gives 1.0, as for the paper's mIoU.
    """
    statistic, min_pixels = check_statistic(statistic, min_pixels)
    if statistic == "miou":
        return miou_from_confusion(cm)
    cm = np.asarray(cm)
    if cm.ndim < 2 or cm.shape[-1] != cm.shape[-2]:
        raise UserError(f"a confusion matrix is square (..., C, C), got shape {cm.shape}")
    cm = cm.astype(np.int64, copy=False)
    diag = np.diagonal(cm, axis1=-2, axis2=-1)
    if statistic == "agreement":
        total = cm.sum(axis=(-2, -1))
        hits = diag.sum(axis=-1)
        score = np.where(total > 0, hits / np.maximum(total, 1), 1.0).astype(np.float32)
        return float(score) if cm.ndim == 2 else score
    rows, cols = cm.sum(axis=-1), cm.sum(axis=-2)
    union = rows + cols - diag
    present = (union > 0) & ((rows >= min_pixels) | (cols >= min_pixels))
    iou = np.where(present, diag / np.maximum(union, 1), 0.0)
    total = np.cumsum(iou, axis=-1)[..., -1] if cm.shape[-1] else np.zeros(cm.shape[:-2])
    count = present.sum(axis=-1)
    score = np.where(count > 0, total / np.maximum(count, 1), 1.0).astype(np.float32)
    return float(score) if cm.ndim == 2 else score


def miou(a: np.ndarray, b: np.ndarray, num_classes: int) -> float:
    """mIoU between two label maps of one shape (classes present in either map)."""
    return miou_from_confusion(confusion(a, b, num_classes))


def _check_batch(labels: np.ndarray, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    labels = np.asarray(labels)
    pairs = np.asarray(pairs).reshape(-1, 4)
    if labels.ndim != 3 or labels.shape[1] != labels.shape[2]:
        raise UserError(f"patch labels must be (2K, s, s), got shape {labels.shape}")
    if labels.shape[0] != 2 * len(pairs):
        raise UserError(f"{len(pairs)} pairs need {2 * len(pairs)} label patches, got {labels.shape[0]}")
    return labels, pairs, labels.shape[1]


def overlap_confusion(labels: np.ndarray, pairs: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrices (K, C, C) int64 of each pair's two predictions on their overlap.

    ``labels``: (2K, s, s) integer predictions, patch 2i and 2i+1 from pair i;
    ``pairs``: (K, 4) top-lefts [y1, x1, y2, x2] as drawn by :func:`sample_pairs`.
    """
    labels, pairs, size = _check_batch(labels, pairs)
    c = _check_classes(num_classes)
    out = np.empty((len(pairs), c, c), np.int64)
    for i, (ay, ax, by, bx, h, w) in enumerate(overlap_boxes(pairs, size)):
        out[i] = _joint_counts(labels[2 * i, ay:ay + h, ax:ax + w],
                               labels[2 * i + 1, by:by + h, bx:bx + w], c)
    return out


def pair_mious(labels: np.ndarray, pairs: np.ndarray, num_classes: int) -> np.ndarray:
    """(K,) float32 mIoU of every pair's overlap."""
    return miou_from_confusion(overlap_confusion(labels, pairs, num_classes)).reshape(-1)


def pair_scores(labels: np.ndarray, pairs: np.ndarray, num_classes: int, statistic: str = "miou",
                min_pixels: int = 0) -> np.ndarray:
    """(K,) float32 ``statistic`` of every pair's overlap (``miou``: :func:`pair_mious`)."""
    cm = overlap_confusion(labels, pairs, num_classes)
    return np.asarray(score_from_confusion(cm, statistic, min_pixels), np.float32).reshape(-1)


def _check_frame_args(patch_labels, frame_labels, tops):
    patch_labels = np.asarray(patch_labels)
    frame_labels = np.asarray(frame_labels)
    tops = np.asarray(tops).reshape(-1, 2)
    if patch_labels.ndim != 3 or patch_labels.shape[1] != patch_labels.shape[2]:
        raise UserError(f"patch labels must be (K, s, s), got shape {patch_labels.shape}")
    if frame_labels.ndim != 2:
        raise UserError(f"frame labels must be (H, W), got shape {frame_labels.shape}")
    if len(tops) != len(patch_labels):
        raise UserError(f"{len(patch_labels)} label patches need {len(patch_labels)} top-lefts, got {len(tops)}")
    size = patch_labels.shape[1]
    height, width = frame_labels.shape
    if len(tops) and (tops.min() < 0 or tops[:, 0].max() + size > height or tops[:, 1].max() + size > width):
        raise UserError(f"a {size}x{size} patch falls outside the {height}x{width} frame labels")
    return patch_labels, frame_labels, tops, size


def frame_confusion(patch_labels: np.ndarray, frame_labels: np.ndarray, tops: np.ndarray,
                    num_classes: int) -> np.ndarray:
    """Confusion matrices (K, C, C) int64 of each patch's labels (rows) against the frame's
    labels on the same pixels (columns).

    ``patch_labels``: (K, s, s) predictions of the patches segmented alone; ``frame_labels``:
    (H, W) prediction of the whole frame; ``tops``: (K, 2) top-lefts [y, x] in the frame.
    """
    patch_labels, frame_labels, tops, size = _check_frame_args(patch_labels, frame_labels, tops)
    c = _check_classes(num_classes)
    out = np.empty((len(tops), c, c), np.int64)
    for i, (y, x) in enumerate(tops.tolist()):
        out[i] = _joint_counts(patch_labels[i], frame_labels[y:y + size, x:x + size], c)
    return out


def frame_scores(patch_labels: np.ndarray, frame_labels: np.ndarray, tops: np.ndarray,
                 num_classes: int, statistic: str = "miou", min_pixels: int = 0) -> np.ndarray:
    """(K,) float32 ``statistic`` of every patch against the frame's labels (patch-vs-frame)."""
    statistic, min_pixels = check_statistic(statistic, min_pixels)
    if statistic == "agreement":
        return _frame_agreement(patch_labels, frame_labels, tops, num_classes)
    cm = frame_confusion(patch_labels, frame_labels, tops, num_classes)
    return np.asarray(score_from_confusion(cm, statistic, min_pixels), np.float32).reshape(-1)


def _frame_agreement(patch_labels, frame_labels, tops, num_classes) -> np.ndarray:
    """Agreement without building the C x C matrices: its trace and total are the pixels
    where both labels are valid and equal, and where both are valid (the runtime's hot path:
    a third of the confusion's time at K = 5, s = 256). Equal to the confusion's value."""
    patch_labels, frame_labels, tops, size = _check_frame_args(patch_labels, frame_labels, tops)
    c = _check_classes(num_classes)
    a_all, f_all = _as_unsigned(patch_labels), _as_unsigned(frame_labels)
    out = np.empty(len(tops), np.float32)
    for i, (y, x) in enumerate(tops.tolist()):
        a, b = a_all[i], f_all[y:y + size, x:x + size]
        valid = a < c
        valid &= b < c
        total = int(np.count_nonzero(valid))
        hits = int(np.count_nonzero((a == b) & valid))
        out[i] = np.float32(hits / total) if total else np.float32(1.0)
    return out


def mean_score(mious: np.ndarray) -> float:
    """The frame's score: mean of the K comparison scores (pair mIoUs, or any statistic),
    float32-rounded as the kernel computes it."""
    mious = np.asarray(mious, np.float32).reshape(-1)
    if mious.size == 0:
        raise UserError("cannot score a frame with no patches")
    return float(np.float32(np.cumsum(mious.astype(np.float64))[-1] / mious.size))


def spatial_score(labels: np.ndarray, pairs: np.ndarray, num_classes: int) -> float:
    """Algorithm 1: mean over the K pairs of the mIoU of their overlaps."""
    return mean_score(pair_mious(labels, pairs, num_classes))


def vote_entropy(patch_labels: np.ndarray, boxes: np.ndarray, frame_shape: tuple[int, int],
                 num_classes: int) -> np.ndarray:
    """Per-pixel self-entropy of the votes of the patches that contain it (§3.1, Fig. 3).

    ``patch_labels``: (M, s, s) predictions of M patches; ``boxes``: (M, 2) their top-lefts
    [y, x] in a frame of ``frame_shape`` (H, W). A pixel's votes are normalised by the number
    of patches that gave it a valid label (the paper's K, which random boxes make vary per
    pixel); H(m) = -sum_j V_m[j] log V_m[j] in nats. Returns (H, W) float32, NaN where no patch
    gave a valid vote.
    """
    patch_labels = np.asarray(patch_labels)
    boxes = np.asarray(boxes, np.int64).reshape(-1, 2)
    if patch_labels.ndim != 3 or patch_labels.shape[1] != patch_labels.shape[2]:
        raise UserError(f"patch labels must be (M, s, s), got shape {patch_labels.shape}")
    if len(boxes) != len(patch_labels):
        raise UserError(f"{len(patch_labels)} patches need {len(patch_labels)} boxes, got {len(boxes)}")
    c = _check_classes(num_classes)
    height, width = (int(v) for v in frame_shape)
    size = patch_labels.shape[1]
    if len(boxes) and (boxes.min() < 0 or boxes[:, 0].max() + size > height
                       or boxes[:, 1].max() + size > width):
        raise UserError(f"a {size}x{size} patch falls outside the {height}x{width} frame")
    unsigned = _as_unsigned(patch_labels)
    total = np.zeros((height, width), np.int32)
    for lab, (y, x) in zip(unsigned, boxes):
        total[y:y + size, x:x + size] += lab < c
    entropy = np.zeros((height, width), np.float64)
    votes = np.zeros((height, width), np.int32)
    denom = np.maximum(total, 1)
    # One class at a time keeps memory at O(H W) instead of O(H W C).
    for j in range(c):
        votes.fill(0)
        for lab, (y, x) in zip(unsigned, boxes):
            votes[y:y + size, x:x + size] += lab == j
        p = votes / denom
        entropy -= np.where(votes > 0, p * np.log(np.where(votes > 0, p, 1.0)), 0.0)
    entropy[total == 0] = np.nan
    return entropy.astype(np.float32)
