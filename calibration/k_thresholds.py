"""Thresholds for several K at once (``edge-guard calibrate --ks``), for the runtime's
frame-rate budget (:mod:`edge_guard.budget`) to pick K from.

Each K is scored by its own Guard, whose patches come from the same generator stream
(``SeedSequence([seed, stream])``) that a calibration with only that K uses: K's threshold
here is the one ``calibrate --k K`` gives on the same frames, and the bundle's own K draws
exactly the patches it drew before other K were added. The frame detector segments each
frame once and hands the labels to the other K's guards (``check(labels=)``): the patch
draw and the scores are the same as segmenting again (the model is deterministic), at a
fraction of the cost. Each K's threshold follows the bundle's rule: the rule's threshold on
the clean frames and under each camera condition, the lowest of them.
"""

from __future__ import annotations

import contextlib

import numpy as np

from edge_guard.errors import UserError
from edge_guard.guard import Guard
from edge_guard.limits import MAX_PAIRS

from . import threshold as thr

#: The default ladder: each K about 1.6x the last, so a budget loses little to the step.
LADDER = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987)


def default_ks(k: int) -> tuple:
    """The K calibrated by default: the ladder up to 2K (a faster device can afford more
    patches than the bundle's K), and K itself. K = 5: 1, 2, 3, 5, 8."""
    return tuple(sorted({v for v in LADDER if v <= min(2 * int(k), MAX_PAIRS)} | {int(k)}))


def parse_ks(text: str) -> tuple:
    """'1,2,3,5,8' -> (1, 2, 3, 5, 8), sorted, no repeats; UserError (one line) otherwise."""
    values = []
    for part in str(text).split(","):
        part = part.strip()
        if not (part.isascii() and part.isdigit()) or not 1 <= int(part) <= MAX_PAIRS:
            raise UserError(f"--ks {text!r}: give K values as comma-separated integers in 1..{MAX_PAIRS}, "
                            "e.g. 1,2,3,5,8")
        values.append(int(part))
    return tuple(sorted(set(values)))


def check_ks(ks) -> None:
    """UserError (one line) unless every K is an integer in 1..MAX_PAIRS."""
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_PAIRS:
            raise UserError(f"every K of --ks must be an integer in 1..{MAX_PAIRS}, got {k!r}")


def score_ks(bundle, segment, images, make_rng, progress: bool, ks, transform=None) -> dict:
    """{K: the runtime's score of every frame of ``images`` at K}, one pass over the frames.

    ``make_rng()``: a fresh generator of the set's stream (each K gets its own);
    ``transform``: applied once to each frame, before any K sees it (a camera condition
    whose noise generator must advance once per frame, as with one K)."""
    from tqdm import tqdm

    shares_labels = bundle.method == "frame"
    desc = f"scoring {images.name}" + (f" at K={','.join(map(str, ks))}" if len(ks) > 1 else "")
    scores: dict = {k: [] for k in ks}
    frames = images.images() if transform is None else map(transform, images.images())
    with contextlib.ExitStack() as stack:
        # The pairs detector's score does not need the frame's labels: it is not segmented.
        guards = {k: stack.enter_context(Guard.from_function(bundle, segment, seed=make_rng(), pairs=k,
                                                             segment_frames=shares_labels))
                  for k in ks}
        bar = stack.enter_context(tqdm(total=len(images), desc=desc, unit="frame", disable=not progress,
                                       dynamic_ncols=True))
        for image in frames:
            labels = None
            for k, guard in guards.items():
                verdict = guard.check(image, rgb=True, labels=labels)
                if shares_labels:
                    labels = verdict.labels
                scores[k].append(verdict.score)
            bar.update(1)
    return {k: np.array(v, np.float64) for k, v in scores.items()}


def k_thresholds(cal_by_k: dict, conditions_by_k: dict, rule: str, fpr) -> dict:
    """{K: {threshold, clean_threshold, conditions {c: threshold}}}: per K the rule's
    threshold on the clean scores and under each condition; the lowest of them is K's."""
    out = {}
    for k, scores in cal_by_k.items():
        clean = thr.pick_threshold(scores, rule, fpr).threshold
        under = {c: thr.pick_threshold(by_k[k], rule, fpr).threshold for c, by_k in conditions_by_k.items()}
        out[k] = {"threshold": min([clean] + list(under.values())), "clean_threshold": clean,
                  "conditions": under}
    return out


def table(by_k: dict) -> dict:
    """guard.json's detector.thresholds_by_k: {"K": threshold}, smallest K first."""
    return {str(k): by_k[k]["threshold"] for k in sorted(by_k)}


def record(by_k: dict, cal_by_k: dict, held_by_k: dict, adv_by_k: dict, settings, how: str) -> dict:
    """provenance.thresholds_by_k: how the table was computed and what each K measured
    (its calibration and held-out false-positive rates, each adversarial set's detection
    rate at its threshold)."""
    per_k = {}
    for k in sorted(by_k):
        t, cal = by_k[k]["threshold"], cal_by_k[k]
        entry = {**by_k[k], "calibration_fpr": thr.flag_rate(cal, t),
                 "flagged_frames": int(np.count_nonzero(cal < t)), "quantiles": thr.quantiles(cal)}
        if k in held_by_k:
            entry["holdout_fpr"] = thr.flag_rate(held_by_k[k], t)
        if adv_by_k:
            entry["detection_rate"] = {name: thr.flag_rate(scores[k], t) for name, scores in adv_by_k.items()}
        per_k[str(k)] = entry
    return {"ks": sorted(by_k), "rule": settings.rule, "target_fpr": settings.fpr,
            "conditions": list(settings.conditions), "seed": settings.seed,
            "method": how, "by_k": per_k}


#: What every table says about its scoring (the reproducibility contract above).
SCORING = ("each K scored on the same frames (calibration, each camera condition, held-out) by "
           "its own Guard, drawing patches from the same SeedSequence([seed, stream]) as the "
           "bundle's K; each K's threshold by the bundle's rule, the lowest over the clean frames "
           "and each condition")
