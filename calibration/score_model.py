"""A stated model of benign per-frame scores over time, to simulate hours of driving from
minutes of clips (the sequential alarm's false-alarm rate; model in calibration.alarm).

marginal: empirical quantiles above the ``tail`` quantile u, an exponential tail below it,
P(s < u - y) = tail * exp(-y / beta); dependence: normal scores z = sqrt(v) a + sqrt(1 - v) w,
a ~ N(0, 1) once per drive, w a stationary AR(1) of lag-1 correlation rho.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri

from edge_guard.errors import UserError

LONG_LAGS = (10, 15, 20)  # frames: the correlation left at these lags is the drive's own level


def _lag_correlation(z: list, lag: int) -> float | None:
    pairs = [(s[:-lag], s[lag:]) for s in z if s.size > lag]
    if not pairs:
        return None
    a = np.concatenate([p[0] for p in pairs])
    b = np.concatenate([p[1] for p in pairs])
    return float(np.mean(a * b))  # normal scores: mean 0, variance 1


def fit_score_model(sequences, tail: float = 0.02) -> dict:
    """The model's parameters from benign score sequences (list of 1-D arrays, frame order):
    {"quantiles" (201 scores at p = 0..1), "tail", "u", "beta", "v", "rho", "clip_frames",
    "lag_correlations" {lag: r}}. Every clip must be longer than the longest of LONG_LAGS
    for v to be estimated from it."""
    seqs = [np.asarray(s, np.float64).ravel() for s in sequences]
    seqs = [s for s in seqs if s.size]
    pooled = np.concatenate(seqs) if seqs else np.zeros(0)
    if pooled.size < 50 or not 0 < tail < 0.5:
        raise UserError(f"a benign score model needs at least 50 frames and 0 < tail < 0.5, got "
                        f"{pooled.size} frames, tail {tail}")
    order = np.argsort(pooled, kind="stable")
    ranks = np.empty(pooled.size)
    ranks[order] = np.arange(1, pooled.size + 1)
    z_all = ndtri(ranks / (pooled.size + 1))
    z = np.split(z_all, np.cumsum([s.size for s in seqs])[:-1])
    lags = {lag: _lag_correlation(z, lag) for lag in (1, 2, 3, 5) + LONG_LAGS}
    long = [lags[lag] for lag in LONG_LAGS if lags[lag] is not None]
    if len(long) < len(LONG_LAGS):
        raise UserError(f"the benign clips are too short to fit the score model: they need more "
                        f"than {max(LONG_LAGS)} frames each")
    v = float(np.clip(np.mean(long), 0.0, 0.95))
    rho = float(np.clip((lags[1] - v) / (1.0 - v), 0.0, 0.99))
    u = float(np.quantile(pooled, tail))
    below = u - pooled[pooled < u]
    beta = float(below.mean()) if below.size else 1e-3
    return {"quantiles": np.quantile(pooled, np.linspace(0, 1, 201)).tolist(), "tail": tail, "u": u,
            "beta": max(beta, 1e-6), "v": v, "rho": rho,
            "clip_frames": int(round(np.mean([s.size for s in seqs]))),
            "lag_correlations": {str(k): (None if r is None else round(r, 4)) for k, r in lags.items()}}


def scores_from_normal(model: dict, z: np.ndarray) -> np.ndarray:
    """Scores for normal scores z through the model's marginal (exponential lower tail)."""
    p = ndtr(np.asarray(z, np.float64))
    q = np.asarray(model["quantiles"])
    s = np.interp(p, np.linspace(0, 1, q.size), q)
    low = p < model["tail"]
    s[low] = model["u"] - model["beta"] * np.log(model["tail"] / np.maximum(p[low], 1e-300))
    return s


def simulate_scores(model: dict, frames: int, rng: np.random.Generator) -> np.ndarray:
    """(frames,) benign scores: drives of the clips' length end to end."""
    m = max(1, int(model["clip_frames"]))
    drives = -(-int(frames) // m)
    v, rho = model["v"], model["rho"]
    e = rng.standard_normal((drives, m))
    w = np.empty_like(e)
    w[:, 0] = e[:, 0]
    scale = np.sqrt(1.0 - rho * rho)
    for t in range(1, m):  # m is a clip's length (~100): the loop is short, each step vectorised
        w[:, t] = rho * w[:, t - 1] + scale * e[:, t]
    z = np.sqrt(v) * rng.standard_normal((drives, 1)) + np.sqrt(1.0 - v) * w
    return scores_from_normal(model, z.ravel()[:int(frames)])
