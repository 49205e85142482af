"""Latency statistics of a long-running stream, in constant memory."""

from __future__ import annotations

import math

import numpy as np


class Durations:
    """p50/p99/mean/max of durations in ms, in constant memory (a stream may run for days).

    Log-spaced bins, 200 per decade from 1 us to 100 s: a percentile is the centre of its bin,
    within 0.6 % of the exact value; mean and max are exact.
    """

    PER_DECADE, LOW, DECADES = 200, -3, 8

    def __init__(self):
        self.counts = np.zeros(self.PER_DECADE * self.DECADES + 2, np.int64)  # + under/overflow
        self.n, self.total, self.max = 0, 0.0, 0.0

    def add(self, ms: float) -> None:
        ms = float(ms)
        pos = (math.log10(ms) - self.LOW) * self.PER_DECADE + 1 if ms > 0 else 0
        self.counts[min(max(int(pos), 0), len(self.counts) - 1)] += 1
        self.n, self.total, self.max = self.n + 1, self.total + ms, max(self.max, ms)

    def percentile(self, q: float) -> float:
        i = int(np.searchsorted(np.cumsum(self.counts), q / 100 * self.n, side="left"))
        if i == 0:
            return 0.0
        centre = 10 ** (self.LOW + (i - 0.5) / self.PER_DECADE)
        return min(centre, self.max)

    def summary(self) -> dict | None:
        if not self.n:
            return None
        return {"p50": self.percentile(50), "p99": self.percentile(99),
                "mean": self.total / self.n, "max": self.max}
