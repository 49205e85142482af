"""Saying plainly when the bundle does not fit the camera: far more frames flagged than the
bundle was calibrated for.

A bundle's threshold is set on benign frames for a false-positive rate p0 (guard.json's
threshold_rule). When, over the last minute of a stream (or a batch of images), the flagged
share is far above p0 (a binomial tail below TAIL and at least FACTOR * p0), either someone
attacks for that long, or the frames are unlike the ones the bundle was calibrated on (the
shipped bundle has seen generated streets only and flags real photos). Said once, with the
command that calibrates on the user's own frames.
"""

from __future__ import annotations

import math
from collections import deque

TAIL = 1e-6  # chance of so many flags at the calibrated rate
FACTOR = 5.0  # and at least this many times the calibrated share
MIN_FRAMES = 3
WINDOW_S = 60.0
CALIBRATE = "edge-guard calibrate --data YOUR_BENIGN_FRAMES --out BUNDLE"


def calibrated_rate(bundle) -> float:
    """p0: the false-positive rate the bundle's threshold was set for (at least 1e-4)."""
    rule = (getattr(bundle, "detector", None) or {}).get("threshold_rule", {})
    rate = rule.get("target_fpr")
    if rate is None:  # min-benign: no calibration frame flagged
        rate = 1.0 / max(int(rule.get("benign_frames", 100)), 1)
    return max(float(rate), 1e-4)


def binomial_tail(flagged: int, frames: int, p: float) -> float:
    """P(X >= flagged) for X ~ Binomial(frames, p), summed in log space (no SciPy here)."""
    if flagged <= 0:
        return 1.0
    if p >= 1.0:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [math.lgamma(frames + 1) - math.lgamma(i + 1) - math.lgamma(frames - i + 1) + i * lp
             + (frames - i) * lq for i in range(flagged, frames + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def out_of_domain(flagged: int, frames: int, p0: float) -> bool:
    """Whether ``flagged`` of ``frames`` is far above the calibrated rate p0."""
    return (frames >= MIN_FRAMES and flagged >= FACTOR * p0 * frames
            and binomial_tail(flagged, frames, p0) < TAIL)


def message(flagged: int, frames: int, p0: float, what: str) -> str:
    """The one line that says it."""
    return (f"{flagged} of the {what} ({flagged / frames:.0%}) were flagged, against the {p0:.1%} the "
            "bundle was calibrated for: a sustained attack, or frames unlike the ones it was calibrated "
            "on (the shipped bundle has seen generated streets only); to calibrate on your own benign "
            f"frames: {CALIBRATE}")


class DomainWatch:
    """The flags of the last ``frames`` checked frames; ``update(flagged)`` returns the line to
    say, once per run, when they are far above p0 (else None)."""

    def __init__(self, p0: float, fps: float | None):
        self.p0 = float(p0)
        self.frames = max(int(round(WINDOW_S * (fps or 15.0))), 30)
        self._flags: deque = deque(maxlen=self.frames)
        self._count = 0  # flags in the window, kept as it slides (this runs on every frame)
        self.said: str | None = None

    def update(self, flagged: bool) -> str | None:
        if len(self._flags) == self.frames:
            self._count -= self._flags[0]
        self._flags.append(bool(flagged))
        self._count += bool(flagged)
        if self.said is not None or len(self._flags) < self.frames:
            return None
        count = self._count
        if not out_of_domain(count, self.frames, self.p0):
            return None
        self.said = message(count, self.frames, self.p0, f"last {self.frames} checked frames")
        return self.said
