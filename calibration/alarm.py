"""Calibrate the sequential (CUSUM) alarm for a false-alarm rate per hour from benign clips.

The model is :class:`edge_guard.alarms.SequentialAlarm`'s: x_t = min((mu0 - s_t)/sigma0 - k, c),
S_t = max(0, S_{t-1} + x_t), raised when S_t > h, held at most h while active, cleared at 0.

Calibration, from benign per-frame score sequences (one 1-D array per clip, in frame order):

1. mu0 and sigma0 are the pooled benign median and 1.4826 * MAD (sigma0 at least 1e-3 score
   units: scores that barely vary, e.g. an agreement score of 1.0 on most frames, must not turn
   a tiny dip into many deviations); k and c are fixed (defaults 0.5 and 4 deviations).
2. A target such as one false alarm per hour at 15 frames/s needs many hours of frames to
   measure, more than benign clips hold, so the rate is extrapolated from a simulated run long
   enough for ``events`` false alarms at the target rate, made one of two ways:

   - ``model`` (default): a stated model of benign scores (:func:`fit_score_model`). Scores
     map to normal scores through their marginal: the empirical quantiles, below the ``tail``
     quantile u an exponential tail P(s < u - y) = tail * exp(-y / beta) (beta: the mean
     exceedance), so the run holds scores lower than any benign frame seen, at the rate the
     tail's shape implies. Normal scores are z = sqrt(v) * a + sqrt(1 - v) * w: a, one value
     per drive (some streets are harder than others all along), w a stationary AR(1) of
     lag-1 correlation rho within the drive (a scene looks odd on consecutive frames); v and
     rho are fitted to the within-clip autocorrelation (long lags give v, lag 1 then rho).
     Simulated drives have the clips' length and follow each other without a reset.
   - ``bootstrap``: a moving-block bootstrap: blocks of ``block`` consecutive frames (default
     2 s, at most the shortest clip) drawn from the clips and laid end to end. It keeps the
     short-range correlation but never goes below the lowest benign score: with few clips it
     puts h too low.
3. h is the smallest level (bisection) at which the simulated run raises at most
   floor(target * simulated hours) alarms, counted with the same rule the runtime applies.
4. The drift k and the cap c default to the per-frame threshold's distance from the benign
   median, delta = (mu0 - threshold) / sigma0 deviations: k = delta, the classical CUSUM
   choice (half the shift) for attacks that drive the score 2 * delta below the median, which
   is where attacked frames sit (the frame detector's plain DAG/Houdini frames: median 1.9
   delta, reports/2026-12-06-frame-detector); a frame then adds how far it falls below the
   per-frame threshold, in deviations. c = 2 * delta caps one frame at twice a frame that sits
   delta below the threshold. Without a threshold they are 0.5 and 4.
"""

from __future__ import annotations

import math

import numpy as np

from edge_guard.alarms import SequentialAlarm
from edge_guard.errors import UserError

MIN_SCALE = 1e-3
MIN_LEVEL = 1e-3  # deviations: the lowest h calibrated
_CHUNK = 1 << 16
_FIRST_CHUNK = 1 << 10


def _sequences(sequences) -> list[np.ndarray]:
    seqs = [np.asarray(s, dtype=np.float64).ravel() for s in sequences]
    seqs = [s for s in seqs if s.size]
    if not seqs:
        raise UserError("calibrating the sequential alarm needs benign score sequences, got none")
    if not all(np.isfinite(s).all() for s in seqs):
        raise UserError("benign scores must be finite numbers")
    return seqs


def reference_and_scale(sequences) -> tuple[float, float]:
    """(mu0, sigma0): pooled benign median and 1.4826 * MAD (at least MIN_SCALE), score units."""
    pooled = np.concatenate(_sequences(sequences))
    mu0 = float(np.median(pooled))
    return mu0, max(1.4826 * float(np.median(np.abs(pooled - mu0))), MIN_SCALE)


def evidence(scores, reference: float, scale: float, drift: float = 0.5, clip: float = 4.0) -> np.ndarray:
    """x_t for an array of scores (the same formula as SequentialAlarm.evidence)."""
    return np.minimum((reference - np.asarray(scores, dtype=np.float64)) / scale - drift, clip)


def count_raises(x: np.ndarray, h: float, stop_after: int | None = None) -> int:
    """Alarms SequentialAlarm raises on evidence x (1-D), from S = 0: exactly its rule, but the
    inactive stretches run vectorised (Lindley: S_t = C_t - min(-S_0, min_{j<=t} C_j)).
    ``stop_after``: stop counting past this many (calibration only asks "more than allowed?")."""
    x = np.asarray(x, dtype=np.float64)
    n, i, s0, raises, chunk = x.size, 0, 0.0, 0, _FIRST_CHUNK
    while i < n and (stop_after is None or raises <= stop_after):
        c = np.cumsum(x[i:i + chunk])
        s = c - np.minimum(np.minimum.accumulate(c), -s0)
        over = np.flatnonzero(s > h)
        if not over.size:
            # Growing chunks: frequent alarms cost little, long quiet stretches few numpy calls.
            i, s0, chunk = i + c.size, float(s[-1]), min(2 * chunk, _CHUNK)
            continue
        raises += 1
        i += int(over[0]) + 1
        held = h  # active: held at most h until it returns to 0 (few frames on benign data)
        while i < n and held > 0.0:
            held = min(max(0.0, held + x[i]), h)
            i += 1
        s0, chunk = 0.0, _FIRST_CHUNK
    return raises


def block_bootstrap(sequences, frames: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """A (frames,) run of blocks of ``block`` consecutive scores drawn uniformly from every
    position where a whole block fits inside one clip (block <= the shortest clip)."""
    seqs = _sequences(sequences)
    block = int(block)
    if not 1 <= block <= min(s.size for s in seqs):
        raise UserError(f"a bootstrap block of {block} frames does not fit the shortest clip "
                        f"({min(s.size for s in seqs)} frames)")
    pooled = np.concatenate(seqs)
    offsets = np.cumsum([0] + [s.size for s in seqs[:-1]])
    starts = np.concatenate([o + np.arange(s.size - block + 1) for o, s in zip(offsets, seqs)])
    count = -(-int(frames) // block)
    picks = starts[rng.integers(0, starts.size, size=count)]
    return pooled[(picks[:, None] + np.arange(block)).ravel()[:int(frames)]]


def default_drift_and_clip(reference: float, scale: float, threshold: float | None) -> tuple[float, float]:
    """(k, c) in deviations: delta and 2 * delta for delta = (mu0 - threshold) / sigma0 (see
    the module docstring), or 0.5 and 4 without a threshold (or one above the median)."""
    if threshold is None or threshold >= reference:
        return 0.5, 4.0
    delta = (reference - float(threshold)) / scale
    return delta, 2.0 * delta


def _level(x: np.ndarray, allowed: int, start: float) -> float:
    """The smallest h (to 0.1%) at which evidence x raises at most ``allowed`` alarms."""
    lo, hi = 0.0, max(float(start), 1.0)
    while count_raises(x, hi, allowed) > allowed:
        lo, hi = hi, 2 * hi
    # invariant: hi meets the target, lo does not (or is 0); h stops at MIN_LEVEL when even
    # "any frame with positive evidence" meets it (no benign frame that low was simulated)
    while hi - lo > 1e-3 * hi and hi > MIN_LEVEL:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if count_raises(x, mid, allowed) <= allowed else (mid, hi)
    return hi


def calibrate_cusum(sequences, per_hour: float = 1.0, fps: float = 15.0, drift: float | None = None,
                    clip: float | None = None, threshold: float | None = None,
                    extrapolation: str = "model", tail: float = 0.02, block: int | None = None,
                    events: int = 30, max_frames: int = 20_000_000, seed: int = 0) -> dict:
    """guard.json's ``alarm`` section for benign ``sequences`` (list of 1-D score arrays, frame
    order), a target of ``per_hour`` false alarms per hour at ``fps`` checked frames/s.

    ``threshold``: the bundle's per-frame threshold, for the default drift and cap;
    ``extrapolation``: "model" or "bootstrap" (module docstring); ``events``: false alarms the
    simulated run would hold at the target rate (its length; capped at ``max_frames``, which
    only makes h more conservative). Deterministic by ``seed``.
    """
    from .score_model import fit_score_model, simulate_scores

    if not (per_hour > 0 and math.isfinite(per_hour) and fps > 0 and math.isfinite(fps)):
        raise UserError(f"the alarm rate and frame rate must be positive, got {per_hour}/h at {fps} fps")
    if extrapolation not in ("model", "bootstrap"):
        raise UserError(f"extrapolation is 'model' or 'bootstrap', got {extrapolation!r}")
    seqs = _sequences(sequences)
    mu0, sigma0 = reference_and_scale(seqs)
    k0, c0 = default_drift_and_clip(mu0, sigma0, threshold)
    drift = k0 if drift is None else float(drift)
    clip = c0 if clip is None else float(clip)
    frames_per_hour = 3600.0 * fps
    frames = int(min(max_frames, math.ceil(events / per_hour * frames_per_hour)))
    rng = np.random.default_rng(seed)
    how: dict = {"extrapolation": extrapolation}
    if extrapolation == "model":
        model = fit_score_model(seqs, tail)
        scores = simulate_scores(model, frames, rng)
        how["model"] = {k: v for k, v in model.items() if k != "quantiles"}
    else:
        block = min(int(block) if block else max(1, round(2 * fps)), min(s.size for s in seqs))
        frames = max(frames, block)
        scores = block_bootstrap(seqs, frames, block, rng)
        how["block_frames"] = int(block)
    hours = frames / frames_per_hour
    allowed = math.floor(per_hour * hours)
    x = evidence(scores, mu0, sigma0, drift, clip)
    h = _level(x, allowed, clip)
    simulated = count_raises(x, h)
    alarm = SequentialAlarm(h, mu0, sigma0, drift, clip)
    observed = sum(count_raises(evidence(s, mu0, sigma0, drift, clip), h) for s in seqs)
    return {**alarm.as_dict(), "target_per_hour": float(per_hour), "fps": float(fps),
            "calibration": {"benign_frames": int(sum(s.size for s in seqs)), "clips": len(seqs),
                            **how, "threshold": threshold, "seed": int(seed),
                            "simulated_hours": hours, "simulated_false_alarms": int(simulated),
                            "achieved_per_hour": simulated / hours,
                            "benign_false_alarms": int(observed)}}
