"""Projected shapes that stand up from the ground: walls along the road, boxes, flat figures.

Three kinds of plane cover every object: a face along the road (constant d), a face across
it (constant s, a "billboard" facing the camera) and the top of a box.
"""

import numpy as np

from .camera import NEAR


def depth_samples(cam, s0, s1, z_min=NEAR):
    """s positions from s0 to s1 (clipped at z_min) at which an edge along the road must be
    sampled so its projection follows the road's curve; None when it is all behind."""
    a = max(s0, cam.s + z_min)
    if s1 <= a:
        return None
    za, zb = a - cam.s, s1 - cam.s
    # Without curvature edges along the road stay straight in the image.
    bend = abs(cam.curvature) * (zb - za) ** 2 / 8
    if bend < 0.02 * za:
        return np.array([a, s1])
    n = max(2, min(40, int(np.log(zb / za) / np.log(1.12)) + 2))
    return cam.s + za * (zb / za) ** np.linspace(0.0, 1.0, n)


def _along_poly(cam, s, d0, y0, d1, y1):
    """Polygon through (s_i, d0, y0) forwards and (s_i, d1, y1) back."""
    n = len(s)
    pts = np.empty((2 * n, 3))
    pts[:n, 0], pts[n:, 0] = s, s[::-1]
    pts[:n, 1], pts[n:, 1] = d0, d1
    pts[:n, 2], pts[n:, 2] = y0, y1
    return cam.project(pts)


def side_face(cam, s0, s1, d, y0, y1):
    """Pixel polygon of a vertical face along the road: s0..s1 at lateral d, heights y0..y1."""
    s = depth_samples(cam, s0, s1)
    return None if s is None else _along_poly(cam, s, d, y0, d, y1)


def top_face(cam, s0, s1, d0, d1, y):
    s = depth_samples(cam, s0, s1)
    return None if s is None else _along_poly(cam, s, d0, y, d1, y)


def front_face(cam, s, d0, d1, y0, y1):
    """Pixel quad of a face across the road at s (None when behind the near plane)."""
    if s - cam.s < NEAR:
        return None
    return cam.project(np.array([(s, d0, y0), (s, d1, y0), (s, d1, y1), (s, d0, y1)], float))


def lateral_offset(cam, s):
    """How far the road's curve has moved lateral positions at s, m."""
    z = s - cam.s
    return 0.5 * cam.curvature * z * z


def box(cam, s0, s1, d0, d1, y0, y1):
    """Visible faces of an axis-aligned box: dict name -> pixel polygon.

    Names: 'front' (the face at s0, towards the camera), 'left'/'right' (d0/d1 faces),
    'top'. Visible faces of a box never overlap, so their drawing order is free.
    """
    s = depth_samples(cam, s0, s1)
    if s is None:
        return {}
    n = len(s)
    # Corners on every depth sample: index [sample, d0/d1, y0/y1].
    pts = np.empty((n, 2, 2, 3))
    pts[..., 0] = s[:, None, None]
    pts[:, 0, :, 1], pts[:, 1, :, 1] = d0, d1
    pts[:, :, 0, 2], pts[:, :, 1, 2] = y0, y1
    px = cam.project(pts)
    off = lateral_offset(cam, 0.5 * (s[0] + s[-1])) - cam.d
    faces = {"front": px[0].reshape(4, 2)[[0, 2, 3, 1]]}
    if d1 + off < 0:
        faces["right"] = np.concatenate([px[:, 1, 0], px[::-1, 1, 1]])
    if d0 + off > 0:
        faces["left"] = np.concatenate([px[:, 0, 0], px[::-1, 0, 1]])
    if y1 < cam.height:
        faces["top"] = np.concatenate([px[:, 0, 1], px[::-1, 1, 1]])
    return faces


def figure(cam, s, d, shapes):
    """Project flat shapes drawn in a plane across the road at (s, d).

    shapes: list of (n, 2) arrays of (lateral offset, height) in metres. Returns the list
    of pixel arrays, or None when the plane is behind the near plane.
    """
    if s - cam.s < NEAR:
        return None
    pts = np.concatenate(shapes) if len(shapes) > 1 else np.asarray(shapes[0], np.float64)
    world = np.empty((len(pts), 3))
    world[:, 0] = s
    world[:, 1] = d + pts[:, 0]
    world[:, 2] = pts[:, 1]
    proj = cam.project(world)
    if len(shapes) == 1:
        return [proj]
    return np.split(proj, np.cumsum([len(p) for p in shapes[:-1]]))


def along(cam, s, d, shapes):
    """Project flat shapes drawn in a vertical plane along the road (constant d).

    shapes: (n, 2) arrays of (offset along the road, height) in metres from (s, d).
    """
    out = []
    for pts in shapes:
        pts = np.asarray(pts, np.float64)
        world = np.stack([s + pts[:, 0], np.full(len(pts), d), pts[:, 1]], -1)
        out.append(cam.polygon(world) if len(pts) >= 3 else _segment(cam, world))
    return out


def _segment(cam, world):
    if (world[:, 0] - cam.s).min() < NEAR:
        return None
    return cam.project(world)


_CIRCLES = {}


def ellipse(cx, cy, rx, ry, n=20, start=0.0, stop=2 * np.pi):
    """(n, 2) points of an ellipse (arc) in metres."""
    key = (n, start, stop)
    unit = _CIRCLES.get(key)
    if unit is None:
        t = np.linspace(start, stop, n, endpoint=stop - start < 2 * np.pi - 1e-9)
        unit = _CIRCLES[key] = np.stack([np.cos(t), np.sin(t)], -1)
    return unit * (rx, ry) + (cx, cy)


def rect(x0, y0, x1, y1):
    return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], float)
