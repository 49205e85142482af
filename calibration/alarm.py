"""Calibrate the sequential (CUSUM) alarm for a false-alarm rate per hour from benign clips.

The model is :class:`edge_guard.alarms.SequentialAlarm`'s: x_t = min((mu0 - s_t)/sigma0 - k, c),
S_t = max(0, S_{t-1} + x_t), raised when S_t > h, held at most h while active, cleared at 0.

Calibration, from benign per-frame score sequences (one 1-D array per clip, in frame order):

1. mu0 and sigma0 are the pooled benign median and 1.4826 * MAD (sigma0 at least 1e-3 score
   units: scores that barely vary, e.g. an agreement score of 1.0 on most frames, must not turn
   a tiny dip into many deviations); k and c are fixed (defaults 0.5 and 4 deviations).
2. A target such as one false alarm per hour at 15 frames/s needs many hours of frames to
   measure, more than benign clips hold. The rate is extrapolated by a moving-block bootstrap:
   blocks of ``block`` consecutive frames (default 2 s, at most the shortest clip) are drawn at
   random from the clips and laid end to end into a simulated run long enough for ``events``
   false alarms at the target rate. Blocks keep the short-range correlation of the scores (a
   scene that looks odd for a second looks odd on consecutive frames); what they lose is
   dependence longer than a block, and scenes unlike any benign clip are not simulated at all.
3. h is the smallest level (bisection) at which the simulated run raises at most
   floor(target * simulated hours) alarms, counted with the same rule the runtime applies.
"""

from __future__ import annotations

import math

import numpy as np

from edge_guard.alarms import SequentialAlarm
from edge_guard.errors import UserError

MIN_SCALE = 1e-3
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


def calibrate_cusum(sequences, per_hour: float = 1.0, fps: float = 15.0, drift: float = 0.5,
                    clip: float = 4.0, block: int | None = None, events: int = 30,
                    max_frames: int = 20_000_000, seed: int = 0) -> dict:
    """guard.json's ``alarm`` section for benign ``sequences`` (list of 1-D score arrays, frame
    order), a target of ``per_hour`` false alarms per hour at ``fps`` checked frames/s.

    ``events``: false alarms the simulated run would hold at the target rate (its length;
    capped at ``max_frames``, which only makes h more conservative). Deterministic by ``seed``.
    """
    if not (per_hour > 0 and math.isfinite(per_hour) and fps > 0 and math.isfinite(fps)):
        raise UserError(f"the alarm rate and frame rate must be positive, got {per_hour}/h at {fps} fps")
    seqs = _sequences(sequences)
    shortest = min(s.size for s in seqs)
    block = min(int(block) if block else max(1, round(2 * fps)), shortest)
    mu0, sigma0 = reference_and_scale(seqs)
    frames_per_hour = 3600.0 * fps
    frames = int(min(max_frames, math.ceil(events / per_hour * frames_per_hour)))
    frames = max(frames, block)
    hours = frames / frames_per_hour
    allowed = math.floor(per_hour * hours)
    x = evidence(block_bootstrap(seqs, frames, block, np.random.default_rng(seed)), mu0, sigma0,
                 drift, clip)
    lo, hi = 0.0, max(float(clip), 1.0)
    while count_raises(x, hi, allowed) > allowed:
        lo, hi = hi, 2 * hi
    while hi - lo > 1e-3 * hi:  # invariant: hi meets the target, lo does not (or is 0)
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if count_raises(x, mid, allowed) <= allowed else (mid, hi)
    simulated = count_raises(x, hi)
    alarm = SequentialAlarm(hi, mu0, sigma0, drift, clip)
    observed = sum(count_raises(evidence(s, mu0, sigma0, drift, clip), hi) for s in seqs)
    return {**alarm.as_dict(), "target_per_hour": float(per_hour), "fps": float(fps),
            "calibration": {"benign_frames": int(sum(s.size for s in seqs)), "clips": len(seqs),
                            "extrapolation": "moving-block bootstrap", "block_frames": int(block),
                            "seed": int(seed), "simulated_hours": hours,
                            "simulated_false_alarms": int(simulated),
                            "achieved_per_hour": simulated / hours,
                            "benign_false_alarms": int(observed)}}
