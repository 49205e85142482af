"""Choosing the detector's threshold from benign scores, and measuring it (NumPy + scikit-learn).

Convention everywhere: a frame is flagged adversarial when ``score < threshold`` (strict), as
the runtime decides. A threshold is always one of the benign calibration scores, so it is a
float32 value exactly (the runtime's scores are float32-rounded) and JSON keeps it exactly.

Rules, for N benign calibration scores sorted x_(1) <= ... <= x_(N):

- ``fpr`` (default): the largest threshold t whose calibration false-positive rate
  #{score < t} / N is at most the target. With m = floor(target * N) frames allowed below t,
  that is t = x_(m+1), the (m+1)-th smallest score: t <= x_(m+1) flags at most m frames, and
  any larger t flags x_(m+1) too. Tied scores cannot be split: when x_(m) = x_(m+1) the whole
  tie stays benign and the achieved rate is below the target (it is reported exactly).
- ``min-benign`` (the paper's, §5.2: "the lower bound of these mIoU"): t = x_(1), the smallest
  benign score. No epsilon is needed: under the strict ``<`` that frame is itself benign, and
  the calibration false-positive rate is 0. It is the ``fpr`` rule at target 0.

How many frames a target needs: below N = 1 / target, m = 0 and the ``fpr`` rule can only
return the minimum (refused: use ``min-benign`` or more frames); below N = 10 / target the
threshold rests on fewer than 10 frames in the tail and the achieved rate on new frames
scatters widely around the target (binomial: with m = 3 the relative error is ~60%), so a
warning says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_guard.errors import UserError

RULES = ("fpr", "min-benign")
#: Tail frames below which the fpr rule warns (see the module docstring).
MIN_TAIL_FRAMES = 10
#: Benign score quantiles recorded in guard.json (numpy's default linear interpolation).
QUANTILES = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9)


@dataclass(frozen=True)
class ThresholdChoice:
    """A threshold and how it was chosen. ``allowed``: m, the frames the rule may flag."""

    threshold: float
    rule: str
    target_fpr: float | None
    achieved_fpr: float
    frames: int
    allowed: int
    flagged: int
    warning: str | None = None


def _scores(scores) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.size == 0:
        raise UserError("no benign scores to choose a threshold from")
    if not np.all(np.isfinite(scores)):
        raise UserError("a benign score is not a finite number")
    return scores


def check_rule(rule: str, fpr: float | None, frames: int) -> None:
    """UserError (one line) unless ``rule`` with target ``fpr`` can be chosen from ``frames`` scores."""
    if rule not in RULES:
        raise UserError(f"unknown threshold rule {rule!r}: choose {' or '.join(RULES)}")
    if frames < 1:
        raise UserError("calibration needs at least 1 benign frame")
    if rule != "fpr":
        return
    if fpr is None or not (0.0 < fpr < 1.0) or not math.isfinite(fpr):
        raise UserError(f"the target false-positive rate must lie strictly between 0 and 1, got {fpr!r}")
    need = math.ceil(1.0 / fpr - 1e-9)
    if frames < need:
        raise UserError(f"{frames} calibration frames cannot resolve a false-positive rate of {fpr:g} "
                        f"(it needs at least {need} frames, {MIN_TAIL_FRAMES * need} to be reliable): "
                        f"use more frames or --rule min-benign")


def allowed_false_positives(fpr: float, frames: int) -> int:
    """m = floor(fpr * N), robust to 0.01 * 300 landing a hair below 3.0 in binary."""
    return int(math.floor(fpr * frames + 1e-9))


def pick_threshold(scores, rule: str = "fpr", fpr: float | None = 0.01) -> ThresholdChoice:
    """Threshold from benign calibration scores by ``rule`` (see the module docstring)."""
    scores = _scores(scores)
    n = scores.size
    check_rule(rule, fpr, n)
    ordered = np.sort(scores)
    m = allowed_false_positives(fpr, n) if rule == "fpr" else 0
    threshold = float(ordered[m])
    flagged = int(np.count_nonzero(scores < threshold))
    warning = None
    if rule == "fpr" and n < MIN_TAIL_FRAMES / fpr:
        warning = (f"{n} calibration frames leave only {m} benign frame(s) below the threshold: the "
                   f"false-positive rate on new frames may differ widely from {fpr:g} "
                   f"(use at least {math.ceil(MIN_TAIL_FRAMES / fpr)} frames for a reliable {fpr:g})")
    return ThresholdChoice(threshold=threshold, rule=rule, target_fpr=fpr if rule == "fpr" else None,
                           achieved_fpr=flagged / n, frames=n, allowed=m, flagged=flagged,
                           warning=warning)


def flag_rate(scores, threshold: float) -> float:
    """Fraction of ``scores`` flagged (score < threshold): the FPR on benign frames, the
    detection rate on adversarial ones."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.size == 0:
        raise UserError("no scores to measure a rate on")
    return float(np.count_nonzero(scores < threshold) / scores.size)


def detection_auc(benign, adversarial) -> float:
    """ROC AUC of the score as a detector: adversarial is the positive class and a lower score
    means more adversarial. 0.5 = chance, 1.0 = perfect separation.

    Exact by ranks, P(adv < benign) + P(tie) / 2 (sklearn's roc_auc_score of the negated
    score, without its cost: fast enough to bootstrap)."""
    b = np.sort(_scores(benign))
    a = _scores(adversarial)
    above = np.searchsorted(b, a, side="right")
    ties = above - np.searchsorted(b, a, side="left")
    return float(((b.size - above) + 0.5 * ties).sum() / (a.size * b.size))


def quantiles(scores, qs=QUANTILES) -> dict:
    """{"0.01": score, ...}: benign score quantiles (numpy linear interpolation), keys as text."""
    scores = _scores(scores)
    return {f"{q:g}": float(np.quantile(scores, q)) for q in qs}


def summary(scores) -> dict:
    """min / mean / max and the count of a set of scores."""
    scores = _scores(scores)
    return {"frames": int(scores.size), "min": float(scores.min()), "mean": float(scores.mean()),
            "max": float(scores.max())}
