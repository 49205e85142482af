"""Compare two patch segmenters the way the detector uses them (NumPy, no torch).

A "predictor" is any callable (N, s, s, 3) uint8 patches -> (N, s, s) integer labels. Both
see the same frames and the same random pairs (drawn with the runtime's sample_pairs and
cropped with its crop_patches); we report

- label agreement: the fraction of patch pixels where the two agree;
- the mean per-pair overlap mIoU (edge_guard.consistency) of each, and its difference;
- the per-frame spatial score of each and the mean |score_a - score_b|;
- with a detector threshold: each one's false-positive rate on these (benign) frames.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edge_guard.consistency import mean_score, pair_mious
from edge_guard.crop import crop_patches
from edge_guard.patches import sample_pairs


@dataclass
class PatchSet:
    """The patches of one frame: (2K, s, s, 3) uint8 and their (K, 4) pairs."""

    patches: np.ndarray
    pairs: np.ndarray


def draw_patch_sets(frames, patch: int, low: int, high: int, pairs: int, seed: int) -> list:
    """K pairs per frame from one seeded generator (reproducible figures)."""
    rng = np.random.default_rng(seed)
    out = []
    for frame in frames:
        p = sample_pairs(frame.shape[0], frame.shape[1], patch, low, high, pairs, rng)
        out.append(PatchSet(crop_patches(frame, p, patch), p))
    return out


@dataclass
class Parity:
    """Figures of predictor B against reference A over the same patch sets."""

    frames: int
    pairs_per_frame: int
    pixels: int
    label_agreement: float
    mean_pair_miou_ref: float
    mean_pair_miou_test: float
    pair_miou_diff: float        # |mean pair mIoU of B - that of A|
    score_shift: float           # mean over frames of |score_A - score_B|
    max_score_shift: float
    threshold: float | None = None
    fpr_ref: float | None = None   # fraction of (benign) frames scored below the threshold
    fpr_test: float | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def summary(self) -> str:
        text = (f"labels agree on {100 * self.label_agreement:.3f}% of {self.pixels} pixels; "
                f"mean pair mIoU {self.mean_pair_miou_ref:.4f} vs {self.mean_pair_miou_test:.4f} "
                f"(diff {self.pair_miou_diff:.2e}); score shift mean {self.score_shift:.2e} "
                f"max {self.max_score_shift:.2e} over {self.frames} frames x {self.pairs_per_frame} pairs")
        if self.threshold is not None:
            text += (f"; FPR at threshold {self.threshold:.4f}: {self.fpr_ref:.3f} -> {self.fpr_test:.3f}")
        return text


def run_batched(predict, patches: np.ndarray, batch: int) -> np.ndarray:
    """predict() over ``patches`` in chunks of at most ``batch``."""
    return np.concatenate([np.asarray(predict(patches[i:i + batch]))
                           for i in range(0, len(patches), batch)], axis=0)


def predict_sets(predict, sets: list, batch: int = 16, progress=None) -> list:
    """``predict`` over every patch set: a list of (2K, s, s) label arrays."""
    out = []
    for ps in sets:
        out.append(run_batched(predict, ps.patches, batch))
        if progress is not None:
            progress.update(1)
    return out


def compare_labels(ref: list, test: list, sets: list, num_classes: int,
                   threshold: float | None = None) -> Parity:
    """Compare per-set label arrays ``test`` against ``ref`` (see module docstring)."""
    agree = total = 0
    miou_ref, miou_test, score_ref, score_test = [], [], [], []
    for a, b, ps in zip(ref, test, sets):
        if a.shape != b.shape:
            raise ValueError(f"predictors disagree on the output shape: {a.shape} vs {b.shape}")
        agree += int(np.count_nonzero(a == b))
        total += a.size
        ma = pair_mious(a, ps.pairs, num_classes)
        mb = pair_mious(b, ps.pairs, num_classes)
        miou_ref.append(ma)
        miou_test.append(mb)
        score_ref.append(mean_score(ma))
        score_test.append(mean_score(mb))
    miou_ref, miou_test = np.concatenate(miou_ref), np.concatenate(miou_test)
    score_ref, score_test = np.asarray(score_ref), np.asarray(score_test)
    shift = np.abs(score_ref - score_test)
    parity = Parity(
        frames=len(sets), pairs_per_frame=int(len(sets[0].pairs)) if sets else 0, pixels=int(total),
        label_agreement=agree / max(total, 1),
        mean_pair_miou_ref=float(miou_ref.mean()), mean_pair_miou_test=float(miou_test.mean()),
        pair_miou_diff=float(abs(miou_ref.mean() - miou_test.mean())),
        score_shift=float(shift.mean()), max_score_shift=float(shift.max()))
    if threshold is not None:
        parity.threshold = float(threshold)
        parity.fpr_ref = float(np.mean(score_ref < threshold))
        parity.fpr_test = float(np.mean(score_test < threshold))
    return parity


def compare_predictors(ref, test, sets: list, num_classes: int, batch: int = 16,
                       threshold: float | None = None) -> Parity:
    """Run predictors ``ref`` and ``test`` on every patch set and compare them."""
    return compare_labels(predict_sets(ref, sets, batch), predict_sets(test, sets, batch), sets,
                          num_classes, threshold)
