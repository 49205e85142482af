"""An image and its label map drawn together, so every label edge is exactly where the paint is.

Shapes are rasterised with OpenCV at 1/16-pixel precision; the image gets anti-aliased edges,
the labels hard ones. Image-only detail (windows, lane paint, shadows) passes ``label=None``.
"""

import cv2
import numpy as np

from edge_guard.classes import IGNORE

SHIFT = 4
_SCALE = 1 << SHIFT


def _fixed(poly: np.ndarray) -> np.ndarray:
    # Pixel centres sit at integer coordinates; continuous coordinates put them at +0.5.
    return np.round((np.asarray(poly, np.float64) - 0.5) * _SCALE).astype(np.int32)


def _fixed_all(polys, min_points=3):
    """Polygons as a list of fixed-point int32 arrays; accepts a list or an (n, k, 2) array."""
    if polys is None:
        return []
    if isinstance(polys, np.ndarray):
        if not len(polys):
            return []
        return list(_fixed(polys))
    return [_fixed(p) for p in polys if p is not None and len(p) >= min_points]


class Canvas:
    """(H, W, 3) uint8 RGB image and (H, W) uint8 train-id labels, drawn in lockstep."""

    def __init__(self, size):
        h, w = size
        self.size = (h, w)
        self.image = np.zeros((h, w, 3), np.uint8)
        self.labels = np.full((h, w), IGNORE, np.uint8)

    def fill(self, polys, colour, label=None, disjoint=False):
        """Fill polygons ((n, 2) pixel arrays or an (m, n, 2) array; None entries skipped).

        OpenCV fills several polygons of one call by the even-odd rule, so overlapping ones
        are drawn one by one unless the caller says they are ``disjoint``.
        """
        polys = _fixed_all(polys)
        if not polys:
            return
        groups = [polys] if disjoint or len(polys) == 1 else [[p] for p in polys]
        rgb = _rgb(colour)
        for group in groups:
            cv2.fillPoly(self.image, group, rgb, cv2.LINE_AA, SHIFT)
            if label is not None:
                cv2.fillPoly(self.labels, group, int(label), cv2.LINE_8, SHIFT)

    def label(self, polys, label):
        """Label polygons without painting them (what shows through a mesh fence)."""
        for p in _fixed_all(polys):
            cv2.fillPoly(self.labels, [p], int(label), cv2.LINE_8, SHIFT)

    def lines(self, polylines, colour, thickness: float, label=None, closed=False):
        """Stroke polylines ((n, 2) pixel arrays) of a width in pixels (at least one)."""
        polylines = _fixed_all(polylines, 2)
        if not polylines:
            return
        t = max(1, int(round(thickness)))
        cv2.polylines(self.image, polylines, closed, _rgb(colour), t, cv2.LINE_AA, SHIFT)
        if label is not None:
            cv2.polylines(self.labels, polylines, closed, int(label), t, cv2.LINE_8, SHIFT)

    def tint(self, polys, colour, alpha: float):
        """Blend a colour into the image inside polygons (shadows, glass); labels untouched."""
        polys = [p for p in (polys or []) if p is not None and len(p) >= 3]
        if not polys or alpha <= 0:
            return
        h, w = self.size
        pts = np.concatenate(polys)
        x0, y0 = np.floor(pts.min(0)).astype(int) - 1
        x1, y1 = np.ceil(pts.max(0)).astype(int) + 2
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x0 >= x1 or y0 >= y1:
            return
        roi = self.image[y0:y1, x0:x1]
        mask = np.zeros(roi.shape[:2], np.uint8)
        for p in polys:
            cv2.fillPoly(mask, [_fixed(p - (x0, y0))], 255, cv2.LINE_8, SHIFT)
        solid = np.empty_like(roi)
        solid[:] = _rgb(colour)
        blended = cv2.addWeighted(roi, 1.0 - alpha, solid, alpha, 0.0)
        np.copyto(roi, blended, where=mask[..., None] > 0)


def _rgb(colour):
    """A colour as the tuple of ints OpenCV wants."""
    return tuple(np.clip(np.asarray(colour, np.float64) + 0.5, 0, 255).astype(np.int64).tolist())
