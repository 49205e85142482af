"""Draw a verdict on a camera frame, for ``edge-guard run --show`` / ``--save`` and the demo.

What is drawn is what the check saw and decided: the compared regions in the frame (the
frame detector's K patches, or each of the pairs detector's K pairs as its two patch
rectangles), each green when its comparison score reaches the threshold and red when not;
a banner with the verdict (green BENIGN / red ADVERSARIAL), the detector, score and
threshold; a sparkline of recent scores with the threshold as a line; and, when asked
(``labels=True``) and the verdict carries them, the frame's segmentation as a light tint.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .classes import NUM_CLASSES, PALETTE

GREEN = (60, 200, 60)     # BGR: frames are drawn as OpenCV delivers them
RED = (40, 40, 230)
AMBER = (0, 190, 255)
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)


def draw_text(img, text, org, scale, colour, thickness=1):
    """Text outlined in black, readable on any background, in place."""
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, BLACK, thickness + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def _scale(img: np.ndarray, frame_size) -> tuple[float, float]:
    """(sy, sx): from the bundle's frame, where boxes live, to ``img``."""
    h, w = img.shape[:2]
    fh, fw = frame_size
    return h / fh, w / fw


def _rect(img, y, x, patch, sy, sx, colour) -> None:
    cv2.rectangle(img, (int(x * sx), int(y * sy)),
                  (int((x + patch) * sx) - 1, int((y + patch) * sy) - 1), colour, 1)


def score_colour(score: float, threshold: float) -> tuple:
    """Green when one comparison's score reaches the threshold, red when not."""
    return GREEN if score >= threshold else RED


def draw_pairs(img: np.ndarray, pairs, mious, patch: int, frame_size, threshold: float) -> None:
    """The pairs' patch rectangles, mapped from the bundle's frame size to ``img``'s, in place."""
    sy, sx = _scale(img, frame_size)
    for (y1, x1, y2, x2), miou in zip(pairs, mious):
        colour = score_colour(miou, threshold)
        for y, x in ((y1, x1), (y2, x2)):
            _rect(img, y, x, patch, sy, sx, colour)


def draw_patches(img: np.ndarray, tops, scores, patch: int, frame_size, threshold: float) -> None:
    """The frame detector's patches ([y, x] top-lefts), mapped to ``img``'s size, in place."""
    sy, sx = _scale(img, frame_size)
    for (y, x), score in zip(tops, scores):
        _rect(img, y, x, patch, sy, sx, score_colour(score, threshold))


def draw_boxes(img: np.ndarray, detector: str, boxes, scores, patch: int, frame_size,
               threshold: float) -> None:
    """The compared regions of either detector (a verdict's or a frame event's boxes)."""
    draw = draw_patches if detector == "frame" else draw_pairs
    draw(img, boxes, scores, patch, frame_size, threshold)


def tint_labels(img: np.ndarray, labels: np.ndarray, alpha: float = 0.35) -> None:
    """Blend the Cityscapes colours of ``labels`` (at ``img``'s size) into ``img``, in place.

    Light, so the camera image stays readable; ids outside the palette are left untinted
    (another model's classes have no colour here)."""
    known = (labels >= 0) & (labels < NUM_CLASSES)
    colours = PALETTE[np.where(known, labels, 0)][..., ::-1]  # RGB palette -> BGR frame
    mixed = cv2.addWeighted(img, 1.0 - alpha, np.ascontiguousarray(colours), alpha, 0.0)
    img[known] = mixed[known]


def draw_sparkline(img: np.ndarray, scores: Sequence[float], threshold: float,
                   box=(8, None, 160, 48)) -> None:
    """Recent scores as a polyline in a box at the bottom left (x, y, width, height), in place.

    The vertical range is [lo, 1] with lo just below the lowest score and the threshold, so
    the small variations of benign scores near 1 stay visible.
    """
    h, w = img.shape[:2]
    x0, y0, bw, bh = box
    bw, bh = min(bw, w - 2 * x0), min(bh, h // 3)
    if bw < 8 or bh < 8:
        return
    y0 = h - bh - 8 if y0 is None else y0
    roi = img[y0:y0 + bh, x0:x0 + bw]
    roi[:] = (roi.astype(np.uint16) // 3).astype(np.uint8)  # darken for contrast
    values = np.asarray([s for s in scores if np.isfinite(s)], np.float64)
    lo = max(0.0, min(values.min() if values.size else 1.0, threshold) - 0.05)
    lo = min(lo, 0.95)

    def y_of(v):
        return int(round(y0 + (bh - 1) * (1.0 - (min(max(v, lo), 1.0) - lo) / (1.0 - lo))))

    ty = y_of(threshold)
    cv2.line(img, (x0, ty), (x0 + bw - 1, ty), AMBER, 1)
    if values.size >= 2:
        xs = np.linspace(x0, x0 + bw - 1, values.size)
        pts = np.array([[int(x), y_of(v)] for x, v in zip(xs, values)], np.int32)
        cv2.polylines(img, [pts.reshape(-1, 1, 2)], False, WHITE, 1, cv2.LINE_AA)
    if values.size:
        last = values[-1]
        cv2.circle(img, (x0 + bw - 1, y_of(last)), 3, GREEN if last >= threshold else RED, -1)


def annotate(img: np.ndarray, verdict, patch: int | None = None, scores: Sequence[float] = (),
             alarm: bool = False, note: str = "", labels: bool = False) -> np.ndarray:
    """Draw ``verdict`` (a :class:`~edge_guard.verdict.Verdict`) on ``img`` (BGR, H x W x 3), in place.

    ``patch``: the boxes' side (default: the verdict's patch_size); ``scores``: recent scores
    for the sparkline; ``alarm``: an alarm episode is active; ``note``: extra text for the
    banner (e.g. "frame 120, 31 ms"); ``labels``: tint the frame with the verdict's
    segmentation when it carries one. Returns ``img``.
    """
    h, w = img.shape[:2]
    if labels and verdict.labels is not None:
        tint_labels(img, verdict.labels_at((h, w)))
    draw_boxes(img, verdict.detector, verdict.boxes, verdict.scores, verdict.patch_size or patch,
               verdict.frame_size, verdict.threshold)
    scale = max(0.4, min(1.0, w / 1200))
    label = "ADVERSARIAL" if verdict.adversarial else "BENIGN"
    colour = RED if verdict.adversarial else GREEN
    line_h = int(30 * scale) + 6
    cv2.rectangle(img, (0, 0), (w - 1, line_h + 4), BLACK, -1)
    draw_text(img, label, (8, line_h - 4), scale, colour, 2)
    info = (f"{verdict.detector} score {verdict.score:.3f}  threshold {verdict.threshold:.3f}  "
            f"K={len(verdict.boxes)}")
    if note:
        info += "  " + note
    (lw, _), _ = cv2.getTextSize(label + "  ", cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    draw_text(img, info, (8 + lw, line_h - 4), scale * 0.8, WHITE, 1)
    if alarm:
        cv2.rectangle(img, (0, 0), (w - 1, h - 1), RED, max(3, int(6 * scale)))
        (aw, _), _ = cv2.getTextSize("ALARM", cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
        draw_text(img, "ALARM", (w - aw - 12, 2 * line_h + 4), scale, RED, 2)
    draw_sparkline(img, list(scores), verdict.threshold)
    return img
