"""``edge-guard run --plot``: a PNG of a run's score, threshold and alarm statistic over time.

:class:`RunTrace` keeps what the plot needs of each checked frame in bounded memory;
:func:`render` draws it (OpenCV and NumPy, as the demo's strip; no matplotlib on a vehicle):
the score per checked frame against the threshold, flagged frames in red, and below it the
alarm's statistic (the CUSUM sum S and its level h, or the flagged frames of the last N and
M), with alarm episodes, raised to cleared, shaded on both panels.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .errors import UserError
from .overlay import AMBER, GREEN, RED, WHITE
from .plot_panel import BACKGROUND, Panel, label, nice_ticks, score_floor

CAPACITY = 2048  # rows: 2048 x 10 float32 = 80 KiB whatever the run's length
FIELDS = ("t_first", "t_last", "frame_first", "frame_last", "score_min", "score_max",
          "flagged", "stat_min", "stat_max", "alarm")
T0, T1, F0, F1, SMIN, SMAX, FLAGGED, AMIN, AMAX, ALARM = range(len(FIELDS))

WIDTH, HEIGHT = 1200, 460
LEFT, RIGHT = 64, 20
SCORE_BOX = (LEFT, 62, WIDTH - LEFT - RIGHT, 200)     # (left, top, width, height) pixels
STAT_BOX = (LEFT, 298, WIDTH - LEFT - RIGHT, 110)
DOTS_UP_TO = 200  # rows; beyond, only flagged rows get a dot (green dots would hide the line)


def _min(a: float, b: float) -> float:
    """min ignoring NaN (a score the guard could not compute must not blank a row)."""
    return b if a != a or b < a else a


def _max(a: float, b: float) -> float:
    return b if a != a or b > a else a


class RunTrace:
    """What the plot needs of each checked frame, in at most ``capacity`` float32 rows.

    One row per checked frame until the rows are full; then neighbouring rows are merged in
    pairs and every row from then on covers twice as many frames (``span``). A row keeps its
    frames' first and last time and index, the min and max of the score and of the alarm
    statistic, the number flagged and whether an alarm was active in any of them, so a
    flagged frame or a short alarm is never averaged away, however long the run.
    """

    def __init__(self, capacity: int = CAPACITY):
        if capacity < 2 or capacity % 2:
            raise ValueError(f"capacity must be an even number >= 2, got {capacity}")
        self.capacity = capacity
        self._rows = np.zeros((capacity, len(FIELDS)), np.float32)
        self.reset()

    def reset(self, axis: str = "time since the first checked frame") -> None:
        """Forget every frame (a new run); ``axis`` says what the times given to :meth:`add`
        are (the plot's x label, before its unit)."""
        self.axis = axis
        self.rows = self.frames = self._fill = 0
        self.span = 1           # checked frames per row
        self._origin = None     # monotonic s of the first frame

    def add(self, time_s: float, frame: int, score: float, flagged: bool, statistic: float,
            alarm: bool) -> None:
        """One checked frame. time_s: seconds on any clock (perf_counter, or a video's frame /
        fps); the plot counts from the first frame's. statistic: the alarm's after this frame;
        alarm: active after it."""
        if self._origin is None:
            self._origin = time_s
        t, score, stat = time_s - self._origin, float(score), float(statistic)
        self.frames += 1
        if self.rows == 0 or self._fill >= self.span:
            if self.rows == self.capacity:
                self._halve()
            self._rows[self.rows] = (t, t, frame, frame, score, score, bool(flagged), stat, stat, bool(alarm))
            self.rows += 1
            self._fill = 1
            return
        r = self._rows[self.rows - 1]
        r[T1], r[F1] = t, frame
        r[SMIN], r[SMAX] = _min(float(r[SMIN]), score), _max(float(r[SMAX]), score)
        r[AMIN], r[AMAX] = _min(float(r[AMIN]), stat), _max(float(r[AMAX]), stat)
        r[FLAGGED] += bool(flagged)
        r[ALARM] = max(float(r[ALARM]), float(bool(alarm)))
        self._fill += 1

    def _halve(self) -> None:
        a, b = self._rows[0::2], self._rows[1::2]
        merged = np.empty_like(a)
        merged[:, [T0, F0]] = a[:, [T0, F0]]
        merged[:, [T1, F1]] = b[:, [T1, F1]]
        merged[:, [SMIN, AMIN]] = np.fmin(a[:, [SMIN, AMIN]], b[:, [SMIN, AMIN]])
        merged[:, [SMAX, AMAX, ALARM]] = np.fmax(a[:, [SMAX, AMAX, ALARM]], b[:, [SMAX, AMAX, ALARM]])
        merged[:, FLAGGED] = a[:, FLAGGED] + b[:, FLAGGED]
        half = self.capacity // 2
        self._rows[:half] = merged
        self.rows, self.span = half, self.span * 2
        self._fill = self.span  # the last row is full: the next frame starts a new one

    def table(self) -> np.ndarray:
        """(rows, len(FIELDS)) float32: a copy of the rows kept so far."""
        return self._rows[:self.rows].copy()

    @property
    def nbytes(self) -> int:
        return self._rows.nbytes


def _time_unit(seconds: float) -> tuple[str, float]:
    if seconds >= 7200:
        return "h", 3600.0
    if seconds >= 120:
        return "min", 60.0
    return "s", 1.0


def _episodes(rows: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) seconds of each alarm stretch: from its first row to the first row after
    it (where the alarm cleared), or to the last frame when still active at the end."""
    active = rows[:, ALARM] > 0
    spans, i = [], 0
    while i < len(rows):
        if not active[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(rows) and active[j + 1]:
            j += 1
        spans.append((float(rows[i, T0]), float(rows[j + 1, T0] if j + 1 < len(rows) else rows[j, T1])))
        i = j + 1
    return spans


def _envelope(rows: np.ndarray, lo: int, hi: int) -> list:
    """(x, y) points zig-zagging through each row's max and min: a row of many frames
    draws as the vertical stretch its frames cover, one of a single frame as a point."""
    points = []
    for r in rows:
        x = 0.5 * (float(r[T0]) + float(r[T1]))
        if np.isfinite(r[hi]) and np.isfinite(r[lo]):
            points += [(x, float(r[hi])), (x, float(r[lo]))]
    return points


def render(trace: RunTrace, threshold: float, alarm: dict, title: str = "",
           subtitle: str = "") -> np.ndarray:
    """(HEIGHT, WIDTH, 3) BGR uint8: the plot of ``trace``. alarm: the alarm's ``as_dict()``
    ({"method": "cusum", "h": ...} or {"method": "m-of-n", "m": ..., "n": ...})."""
    img = np.full((HEIGHT, WIDTH, 3), BACKGROUND, np.uint8)
    rows = trace.table()
    label(img, title, (8, 18), 0.5, WHITE)
    label(img, subtitle, (8, 38), 0.42, WHITE)
    end = max(float(rows[:, T1].max()) if len(rows) else 0.0, 1e-3)
    unit, per = _time_unit(end)

    scores = rows[:, [SMIN, SMAX]].ravel()
    top = max(1.0, float(np.nanmax(scores))) if np.isfinite(scores).any() else 1.0
    score = Panel(img, SCORE_BOX, (0.0, end), (score_floor(scores, threshold), top))
    cusum = alarm.get("method") == "cusum"
    level = float(alarm["h"]) if cusum else float(alarm.get("m", 1))
    if cusum:  # room above h, where S is held during an alarm
        stats = rows[:, AMAX]
        stat_top = max(level * 1.25, float(np.nanmax(stats)) if np.isfinite(stats).any() else 0.0)
    else:
        stat_top = float(alarm.get("n", level))
    stat = Panel(img, STAT_BOX, (0.0, end), (0.0, max(stat_top, 1e-6)))

    for a, b in _episodes(rows):  # at least 5 px: a short alarm in a long run must still show
        score.shade(a, b, min_px=5)
        stat.shade(a, b, min_px=5)
    label(img, f"score per checked frame: threshold {threshold:.3f} in amber, flagged frames (below it) "
               "in red, alarm episodes (raised to cleared) shaded", (LEFT, SCORE_BOX[1] - 8), 0.42, WHITE)
    if cusum:
        what = f"alarm statistic: the CUSUM sum S, raised above h = {level:.2f} (amber), cleared at 0"
    else:
        what = (f"alarm statistic: flagged frames of the last {alarm.get('n')} checked, raised at "
                f"M = {alarm.get('m')} or more (amber)")
    label(img, what, (LEFT, STAT_BOX[1] - 8), 0.42, WHITE)

    for panel in (score, stat):
        panel.border()
    score.hline(threshold, AMBER, f"{threshold:.3f}")
    for v in (score.y0, score.y1):
        if abs(score.py(v) - score.py(threshold)) >= 12:  # else it would print over the threshold's
            score.y_label(f"{v:.2f}", v)
    stat.hline(level, AMBER, f"h {level:.2f}" if cusum else f"M {level:g}")
    stat.y_label("0", 0.0)
    stat.y_label(f"{stat.y1:.1f}" if cusum else f"{stat.y1:g}", stat.y1)

    if not len(rows):
        label(img, "no frame was checked", (score.left + 12, score.top + 24), 0.5, WHITE)
    score.line(_envelope(rows, SMIN, SMAX))
    stat.line(_envelope(rows, AMIN, AMAX))
    few = len(rows) <= DOTS_UP_TO
    for r in rows:
        if (r[FLAGGED] > 0 or few) and np.isfinite(r[SMIN]):
            score.dot(0.5 * (float(r[T0]) + float(r[T1])), float(r[SMIN]), RED if r[FLAGGED] > 0 else GREEN,
                      3 if few else 2)

    for t in nice_ticks(0.0, end / per):
        x = score.px(t * per)
        for panel in (score, stat):
            cv2.line(img, (x, panel.bottom), (x, panel.bottom + 4), WHITE, 1)
        text = f"{t:g}"
        (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.38, 1)
        label(img, text, (x - tw // 2, stat.bottom + 18), 0.38, WHITE)
    axis = f"{trace.axis} ({unit})"
    if len(rows):
        axis += f"; source frames {int(rows[0, F0])} to {int(rows[-1, F1])}, {trace.frames} checked"
        if trace.span > 1:
            axis += f"; each point spans {trace.span} checked frames (their min and max)"
    label(img, axis, (LEFT, HEIGHT - 12), 0.42, WHITE)
    return img


def check_plot_path(path, option: str = "--plot") -> Path:
    """UserError (one line) unless ``path`` names a .png that can be written in an existing
    folder (a probe file proves it, before any work)."""
    from .writable import check_file

    path = Path(path).expanduser()
    if path.suffix.lower() != ".png":
        raise UserError(f"{option} {path}: give a file name ending in .png")
    if not path.is_dir() and not path.resolve().parent.is_dir():
        raise UserError(f"cannot write {option} {path}: the folder {path.parent} does not exist")
    check_file(path, option)
    return path


def write_png(path, img: np.ndarray) -> Path:
    """Write ``img`` as a PNG to ``path``; UserError (one line) when it cannot be, and no
    half-written file is left behind."""
    path = Path(path).expanduser()
    ok, data = cv2.imencode(".png", img)
    if not ok:
        raise UserError(f"cannot write the plot {path}: PNG encoding failed")
    try:
        with open(path, "wb") as f:
            f.write(data.tobytes())
    except OSError as exc:
        if path.is_file():
            try:
                os.unlink(path)  # a cut PNG does not open: better none than a broken one
            except OSError:
                pass
        raise UserError(f"cannot write the plot {path}: {exc.strerror or exc}") from None
    return path


def write_run_plot(path, trace: RunTrace, guard, alarm, source, summary: dict | None = None) -> Path:
    """The plot of a stream's run (:meth:`~edge_guard.stream.Stream.plot`), titled with the
    source, the guard's detector and the summary's counts; UserError when it cannot be written."""
    s = summary or {}
    title = f"edge-guard run: {source} ({s.get('reason', 'running')})"
    subtitle = (f"{guard.bundle.method} detector, {guard.bundle.statistic}, {guard.k_text} | "
                f"{s.get('frames_checked', trace.frames)} checked, {s.get('frames_flagged', 0)} flagged, "
                f"{alarm.episodes} alarm(s) ({alarm.describe()})")
    return write_png(path, render(trace, guard.threshold, alarm.as_dict(), title, subtitle))
