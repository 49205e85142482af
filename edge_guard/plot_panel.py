"""Plots drawn with OpenCV, for the demo's strip and ``run --plot``: the runtime has no
matplotlib, and a vehicle should not need one to say what it saw.

:class:`Panel` maps data coordinates into a pixel box of a BGR image; the rest are the few
pieces both plots share (the score axis's range, round tick values, colours).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .overlay import WHITE

BACKGROUND = 24            # grey level of a plot's background
FRAME = (90, 90, 90)       # BGR: a panel's border and tick marks
SHADE = (70, 40, 110)      # BGR: a stretch that matters (the demo's attack, a run's alarms)
LINE = (200, 200, 200)     # BGR: the data line


def score_floor(values, threshold: float) -> float:
    """The bottom of a score axis whose top is 1: just below the lowest score and the
    threshold, so that the small variations of benign scores near 1 stay visible."""
    finite = [float(v) for v in values if np.isfinite(v)]
    lo = max(0.0, min(finite + [threshold]) - 0.05) if finite else 0.0
    return min(lo, 0.95)


def nice_ticks(lo: float, hi: float, most: int = 8) -> list[float]:
    """At most ``most`` round values (1, 2 or 5 times a power of ten apart) in [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(1, most - 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9)
    return [k * step for k in range(first, int(math.floor(hi / step + 1e-9)) + 1)]


def label(img: np.ndarray, text: str, org, scale: float = 0.42, colour=WHITE) -> None:
    """Plain text on a plot's dark margin, in place. (The frames' outlined text is for
    camera images; on OpenCV 5 its bolder outline is wider than the text and smears.)"""
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


class Panel:
    """A plot area ``box`` = (left, top, width, height) pixels of ``img`` showing data x in
    ``x_range`` and y in ``y_range`` (y grows upwards; values outside are drawn at the edge)."""

    def __init__(self, img: np.ndarray, box, x_range, y_range):
        self.img = img
        self.left, self.top, self.width, self.height = box
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range

    def px(self, x: float) -> int:
        span = self.x1 - self.x0
        return int(round(self.left + self.width * ((x - self.x0) / span if span > 0 else 0.5)))

    def py(self, y: float) -> int:
        span = self.y1 - self.y0
        f = (min(max(y, self.y0), self.y1) - self.y0) / span if span > 0 else 0.5
        return int(round(self.top + self.height * (1.0 - f)))

    @property
    def right(self) -> int:
        return self.left + self.width

    @property
    def bottom(self) -> int:
        return self.top + self.height

    def border(self) -> None:
        cv2.rectangle(self.img, (self.left, self.top), (self.right, self.bottom), FRAME, 1)

    def shade(self, xa: float, xb: float, colour=SHADE, min_px: int = 2) -> None:
        """Fill the panel's height between data x ``xa`` and ``xb`` (at least ``min_px``
        wide, so that a short stretch stays visible on a long axis)."""
        a, b = self.px(xa), self.px(xb)
        b = max(b, a + min_px - 1)
        cv2.rectangle(self.img, (max(a, self.left), self.top), (min(b, self.right), self.bottom), colour, -1)

    def hline(self, y: float, colour, text: str | None = None) -> None:
        """A horizontal line across the panel, ``text`` in the margin to its left."""
        yy = self.py(y)
        cv2.line(self.img, (self.left, yy), (self.right, yy), colour, 1)
        if text:
            self.y_label(text, y, colour)

    def y_label(self, text: str, y: float, colour=WHITE) -> None:
        """``text`` right-aligned in the left margin at data y."""
        (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)
        label(self.img, text, (max(1, self.left - tw - 6), self.py(y) + 4), 0.35, colour)

    def line(self, points, colour=LINE) -> None:
        """A polyline through (x, y) data points."""
        if len(points) >= 2:
            pts = np.array([(self.px(x), self.py(y)) for x, y in points], np.int32)
            cv2.polylines(self.img, [pts.reshape(-1, 1, 2)], False, colour, 1, cv2.LINE_AA)

    def dot(self, x: float, y: float, colour, radius: int = 3) -> None:
        cv2.circle(self.img, (self.px(x), self.py(y)), radius, colour, -1, cv2.LINE_AA)
