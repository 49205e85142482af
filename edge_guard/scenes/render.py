"""Procedural street scenes labelled with the 19 Cityscapes train ids (255 = void).

``render_frame(seed)`` gives one frame; ``render_clip(seed, n)`` gives n consecutive frames of
the same drive (frame 0 is ``render_frame(seed)``). The ego drives at the scene's speed but
brakes for whatever moves in its path (:func:`ego_track`), as a driver would. A seed fixes the street, its users, the
light and the sensor noise, so the output is byte-identical on every call; the street is laid
out in metres and rendered at the requested size, so one seed at two sizes is one scene.
Only NumPy and OpenCV are needed.

Example::

    image, labels = render_frame(7, size=(256, 512))   # (256, 512, 3) RGB, (256, 512) ids
"""

import numpy as np

from edge_guard.classes import IGNORE

from . import appearance
from .camera import NEAR, Camera
from .canvas import Canvas
from .ground import Z_FAR, draw_ground
from .world import FPS, Scene, sample_scene

DEFAULT_SIZE = (512, 1024)
EGO_HALF_WIDTH = 1.1  # m: half the ego's width plus a margin: the corridor it drives through
FOLLOW_GAP = 6.0  # m: the nearest the camera comes to a road user ahead in that corridor


def _check(seed, size):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    h, w = (int(v) for v in size)
    if h < 16 or w < 16:
        raise ValueError(f"frame size must be at least 16x16, got {h}x{w}")
    return int(seed), (h, w)


def make_scene(seed: int, frames: int = 1) -> Scene:
    """The street of a seed in metres, laid out for a drive of ``frames`` frames."""
    return sample_scene(np.random.SeedSequence([seed, 0]), (frames - 1) / FPS)


def render_frame(seed: int, size=DEFAULT_SIZE):
    """One frame: (image (H, W, 3) uint8 RGB, labels (H, W) uint8 train ids)."""
    seed, size = _check(seed, size)
    return render_scene(make_scene(seed), seed, 0, size)


def render_clip(seed: int, length: int, size=DEFAULT_SIZE):
    """``length`` consecutive frames (at 15 frames/s) of one drive: list of (image, labels)."""
    seed, size = _check(seed, size)
    if int(length) < 1:
        raise ValueError(f"clip length must be at least 1, got {length!r}")
    scene = make_scene(seed, int(length))
    track = ego_track(scene, int(length))
    return [render_scene(scene, seed, i, size, s) for i, s in enumerate(track)]


def ego_track(scene: Scene, length: int) -> np.ndarray:
    """(length,) camera positions along the road (m) of a drive of ``length`` frames.

    The ego goes at ``scene.speed`` but never nearer than FOLLOW_GAP to a road user (vehicle,
    person, bike) in its corridor ahead, and never backwards: it follows a slower vehicle,
    stops for someone crossing and drives on once the way is clear. Without this the camera
    drove through slower traffic and people, frames no camera can see, which the detector
    rightly finds odd. Frame 0 is unchanged: traffic in the ego's lane starts >= 8 m ahead.
    """
    movers = [o for o in scene.objects if hasattr(o, "at") and o.layer >= 0]
    lo, hi = scene.camera["d"] - EGO_HALF_WIDTH, scene.camera["d"] + EGO_HALF_WIDTH
    track = np.zeros(max(int(length), 0))
    s = lag = 0.0  # lag: metres behind the free drive, so an unhindered drive stays speed * t exactly
    for i in range(track.size):
        free = scene.speed * (i / FPS)
        want = free - lag
        if movers:
            ext = np.array([o.at(i / FPS).extent() for o in movers], np.float64)
            ahead = (ext[:, 3] >= lo) & (ext[:, 2] <= hi) & (ext[:, 1] >= s)
            if ahead.any():
                want = min(want, float(ext[ahead, 0].min()) - FOLLOW_GAP)
        s = max(s, want) if i else max(0.0, min(want, free))
        lag = free - s
        track[i] = s
    return track


def render_scene(scene: Scene, seed: int, index: int, size, s: float | None = None):
    """Draw frame ``index`` of a scene's drive at a size, the camera ``s`` metres along the
    road (default: ``scene.speed`` times the frame's time); ``seed`` keys light and noise."""
    t = index / FPS
    cam = Camera(s=scene.speed * t if s is None else float(s), size=size, **scene.camera)
    cv = Canvas(size)
    _draw_sky(cv, cam, scene.sky)
    objects = [o.at(t) if hasattr(o, "at") else o for o in scene.objects]
    for o in sorted((o for o in objects if o.layer < 0), key=lambda o: o.layer):
        o.draw(cv, cam)
    draw_ground(cv, cam, scene.road)
    standing = [o for o in objects if o.layer >= 0]
    standing = [o for o, keep in zip(standing, _in_view(standing, cam)) if keep]
    for layer in (0, 1):
        todo = [(o.key(cam), i, o) for i, o in enumerate(standing) if o.layer == layer]
        for _, _, o in sorted(todo, key=lambda k: (-k[0], k[1])):
            o.draw(cv, cam)
    if scene.hood is not None:
        _draw_hood(cv, scene.hood, scene.sky)
    look = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    noise = np.random.default_rng(np.random.SeedSequence([seed, 2, index]))
    image = appearance.finish(cv.image, cv.labels, look, noise)
    return image, cv.labels


def _in_view(objects, cam) -> np.ndarray:
    """Which objects can show in the frame: in front of the camera, nearer than the far
    plane, overlapping the frame and at least a pixel tall or wide (bool per object)."""
    if not objects:
        return np.zeros(0, bool)
    ext = np.array([o.extent() for o in objects], np.float64)
    near = cam.s + NEAR
    alive = (ext[:, 1] >= near) & (ext[:, 0] <= cam.s + Z_FAR)
    s0 = np.maximum(ext[:, 0], near)
    s1 = np.maximum(ext[:, 1], s0)
    corners = np.stack([np.stack(np.broadcast_arrays(s, d, y), -1) for s in (s0, s1)
                        for d in (ext[:, 2], ext[:, 3]) for y in (ext[:, 4], ext[:, 5])], 1)
    px = cam.project(corners)
    lo, hi = px.min(1), px.max(1)
    h, w = cam.size
    inside = (hi[:, 0] >= -2) & (lo[:, 0] <= w + 2) & (hi[:, 1] >= -2) & (lo[:, 1] <= h + 2)
    visible_size = (hi - lo).max(1) >= 1.0
    return alive & inside & visible_size


def _draw_sky(cv, cam, sky):
    from edge_guard.classes import ID

    h, w = cv.size
    top, low = (np.asarray(c, np.float32) for c in sky)
    v = (np.arange(h, dtype=np.float32) + 0.5) / h
    a = np.clip((cam.horizon - v) / max(cam.horizon, 1e-3), 0, 1) ** 0.6
    rows = low[None] + a[:, None] * (top - low)[None]
    cv.image[:] = np.clip(rows + 0.5, 0, 255).astype(np.uint8)[:, None, :]
    cv.labels[:] = ID["sky"]


def _draw_hood(cv, hood, sky):
    h, w = cv.size
    x = np.linspace(-0.05, 1.05, 33)
    y = 1.0 - hood["top"] + hood["bulge"] * (2 * x - 1) ** 2
    edge = np.stack([x * w, y * h], -1)
    poly = np.concatenate([edge, [(1.05 * w, 1.05 * h), (-0.05 * w, 1.05 * h)]])
    cv.fill([poly], hood["paint"], IGNORE)
    band = np.concatenate([edge, (edge + (0, 0.35 * hood["top"] * h))[::-1]])
    cv.tint([band], np.asarray(sky[1]), 0.35)
