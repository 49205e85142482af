"""Pinhole camera over a road-aligned world, and projection to pixels of any frame size.

World coordinates follow the road: ``s`` metres along it, ``d`` metres to the right of its
centre line, ``y`` metres up from the asphalt. The camera drives along the road and looks
down it; a constant road curvature bends every point sideways by ``curvature * z**2 / 2``
(the view down a circular arc is the same from every point on it, so clips stay coherent).

Image coordinates are normalised first (u across, v down, both 0..1 at a 1:2 reference frame)
and scaled to the requested size last, so one scene renders identically at every size.
"""

from dataclasses import dataclass

import numpy as np

NEAR = 0.5  # metres: geometry closer than this is clipped away
ASPECT = 0.5  # reference height / width


@dataclass(frozen=True)
class Camera:
    s: float  # position along the road, m
    d: float  # lateral position, m (right of the centre line is positive)
    height: float  # above the road, m
    focal: float  # focal length in image heights
    horizon: float  # image row of the horizon, in image heights
    curvature: float  # 1/m, positive bends the road to the right
    size: tuple  # (height, width) pixels of the frame being rendered
    roll: float = 0.0  # radians, clockwise tilt of the camera about its axis

    def depth(self, s):
        """Distance along the view axis, m."""
        return np.asarray(s, np.float64) - self.s

    def project(self, pts: np.ndarray) -> np.ndarray:
        """(..., 3) world points (s, d, y) in front of the camera -> (..., 2) pixel (x, y)."""
        pts = np.asarray(pts, np.float64)
        h, w = self.size
        z = pts[..., 0] - self.s
        inv = 1.0 / z
        out = np.empty(pts.shape[:-1] + (2,))
        x = pts[..., 1] - self.d
        if self.curvature:
            x = x + (0.5 * self.curvature) * z * z
        u = x * inv * (ASPECT * self.focal * w)
        v = (self.height - pts[..., 2]) * inv * (self.focal * h) + (self.horizon - 0.5) * h
        if self.roll:
            c, s = np.cos(self.roll), np.sin(self.roll)
            u, v = c * u - s * v, s * u + c * v
        out[..., 0] = u + 0.5 * w
        out[..., 1] = v + 0.5 * h
        return out

    def pixels_per_metre(self, s) -> float:
        """Image scale at a depth, in pixels (of the frame height) per metre."""
        return self.focal * self.size[0] / max(float(s) - self.s, NEAR)

    def polygon(self, pts: np.ndarray):
        """Project one planar (n, 3) polygon, clipping it at the near plane; None if gone."""
        pts = np.asarray(pts, np.float64)
        z = pts[:, 0] - self.s
        if z.min() >= NEAR:
            return self.project(pts)
        if z.max() < NEAR:
            return None
        return self.project(clip_near(pts, self.s + NEAR))


def clip_near(pts: np.ndarray, s_near: float) -> np.ndarray:
    """Sutherland-Hodgman clip of a polygon against the plane s >= s_near."""
    out = []
    n = len(pts)
    for i in range(n):
        a, b = pts[i], pts[(i + 1) % n]
        a_in, b_in = a[0] >= s_near, b[0] >= s_near
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (s_near - a[0]) / (b[0] - a[0])
            out.append(a + t * (b - a))
    return np.array(out)
