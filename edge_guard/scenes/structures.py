"""Things built beside the road: facades with windows, walls, fences, hedges, the far skyline."""

from dataclasses import dataclass

import numpy as np

from edge_guard.classes import ID

from . import solids
from .camera import NEAR


def _nearest(cam, s0, s1, d):
    """Distance from the camera to the closest point of a stretch s0..s1 at lateral d, m."""
    z = min(max(s0 - cam.s, NEAR), max(s1 - cam.s, NEAR))
    return float(np.hypot(z, d - cam.d + solids.lateral_offset(cam, cam.s + z)))


@dataclass
class Facade:
    s0: float
    s1: float
    side: int
    d: float  # lateral position of the front plane (signed)
    height: float
    colour: np.ndarray  # front, lit as the scene's sun says
    end_colour: np.ndarray  # the face across the road at s0
    glass: np.ndarray
    frame: np.ndarray
    floor: float  # floor height, m
    bay: float  # window spacing along the street, m
    window: tuple  # (width, height) as fractions of bay and floor
    shop: bool
    seed: int
    layer = 0

    def extent(self):
        d1 = self.d + 25.0 * self.side
        return self.s0, self.s1, min(self.d, d1), max(self.d, d1), 0.0, self.height

    def key(self, cam):
        return _nearest(cam, self.s0, self.s1, self.d)

    def draw(self, cv, cam):
        if self.s1 - cam.s <= NEAR:
            return
        label = ID["building"]
        depth = 25.0 * self.side
        if self.s0 - cam.s > NEAR:
            lo, hi = sorted((self.d, self.d + depth))
            cv.fill([solids.front_face(cam, self.s0, lo, hi, 0.0, self.height)],
                    self.end_colour, label)
        cv.fill([solids.side_face(cam, self.s0, self.s1, self.d, 0.0, self.height)],
                self.colour, label)
        # Plinth and cornice: darker stone at the foot, a moulding under the roof line.
        d = self.d - self.side * 0.01
        cv.fill([solids.side_face(cam, self.s0, self.s1, d, 0.0, 0.7)], self.colour * 0.72)
        cv.fill([solids.side_face(cam, self.s0, self.s1, d, self.height - 0.45, self.height)],
                self.frame * 0.9)
        self._draw_windows(cv, cam)

    def _draw_windows(self, cv, cam):
        ppm = cam.pixels_per_metre(max(self.s0, cam.s + NEAR))
        if ppm * self.bay * self.window[0] < 1.5:
            return
        rng = np.random.default_rng(self.seed)
        n_cols = int((self.s1 - self.s0 - 1.0) // self.bay)
        if n_cols < 1:
            return
        margin = (self.s1 - self.s0 - n_cols * self.bay) / 2
        centres = self.s0 + margin + self.bay * (np.arange(n_cols) + 0.5)
        ww, wh = self.bay * self.window[0], self.floor * self.window[1]
        ground = 4.0 if self.shop else self.floor
        rows = np.arange(ground, self.height - self.floor * 0.9, self.floor)
        if not len(rows):
            return
        sc, yb = np.meshgrid(centres, rows + (self.floor - wh) * 0.55)
        sc, yb = sc.ravel(), yb.ravel()
        d = self.d - self.side * 0.02
        keep = sc - ww / 2 - cam.s >= NEAR
        sc, yb = sc[keep], yb[keep]
        if not len(sc):
            return
        f = 0.12
        frames = _quads_along(sc - ww / 2 - f, sc + ww / 2 + f, yb - f, yb + wh + f, d)
        panes = _quads_along(sc - ww / 2, sc + ww / 2, yb, yb + wh, d)
        cv.fill(cam.project(frames), self.frame, disjoint=True)
        group = rng.choice(4, size=len(sc), p=[0.45, 0.25, 0.2, 0.1])
        proj = cam.project(panes)
        for g, gain in enumerate((1.0, 0.7, 1.35, 2.3)):
            colour = np.clip(self.glass * gain, 0, 235)
            cv.fill(proj[group == g], colour, disjoint=True)
        if self.shop:
            s_a = centres[:-1] + self.bay * 0.1
            s_b = centres[1:] - self.bay * 0.1
            keep = s_a - cam.s >= NEAR
            shop = _quads_along(s_a[keep], s_b[keep], np.full(keep.sum(), 0.5),
                                np.full(keep.sum(), 3.0), d)
            cv.fill(cam.project(shop), self.glass * 0.8, disjoint=True)
            band = solids.side_face(cam, self.s0, self.s1, d, 3.2, 3.7)
            cv.fill([band], self.frame * 0.8)


def _quads_along(s0, s1, y0, y1, d):
    """(n, 4, 3) quads in the vertical plane at lateral d."""
    dd = np.full_like(np.asarray(s0, float), d)
    return np.stack([np.stack([s0, dd, y0], -1), np.stack([s1, dd, y0], -1),
                     np.stack([s1, dd, y1], -1), np.stack([s0, dd, y1], -1)], 1)


@dataclass
class _Block:
    """A solid box along the road (s0..s1 along, d0..d1 across, base..height up, m), each
    face shaded by its own gain; the subclasses set the label and the gains."""
    s0: float
    s1: float
    d0: float
    d1: float
    base: float
    height: float
    colour: np.ndarray
    layer = 1
    label = ID["wall"]
    gains = {"front": 0.8, "left": 1.0, "right": 0.9, "top": 1.15}

    def extent(self):
        return self.s0, self.s1, self.d0, self.d1, self.base, self.height

    def key(self, cam):
        d = self.d0 if abs(self.d0 - cam.d) < abs(self.d1 - cam.d) else self.d1
        return _nearest(cam, self.s0, self.s1, d)

    def draw(self, cv, cam):
        faces = solids.box(cam, self.s0, self.s1, self.d0, self.d1, self.base, self.height)
        for name, poly in faces.items():
            cv.fill([poly], self.colour * self.gains[name], self.label)


class Wall(_Block):
    """A concrete wall (0.8-2.8 m) in 4 m pieces, labelled wall."""


@dataclass
class Fence:
    s0: float
    s1: float
    d: float
    base: float
    height: float
    colour: np.ndarray
    mesh: bool
    layer = 1

    def extent(self):
        return self.s0, self.s1, self.d - 0.05, self.d + 0.05, self.base, self.height

    def key(self, cam):
        return _nearest(cam, self.s0, self.s1, self.d)

    def draw(self, cv, cam):
        if self.s1 - cam.s <= NEAR:
            return
        label = ID["fence"]
        panel = solids.side_face(cam, self.s0, self.s1, self.d, self.base, self.height)
        if self.mesh:
            cv.tint([panel], self.colour * 0.6, 0.45)
            cv.label([panel], label)
        else:
            cv.fill([panel], self.colour, label)
        ppm = cam.pixels_per_metre(max(self.s0, cam.s + NEAR))
        posts = [solids.front_face(cam, s, self.d - 0.05, self.d + 0.05, self.base, self.height)
                 for s in np.arange(self.s0, self.s1 + 1e-6, 2.5)]
        cv.fill(posts, self.colour * 0.7, label, disjoint=True)
        for y in (self.base + 0.1, self.height - 0.05):
            rail = solids.side_face(cam, self.s0, self.s1, self.d, y - 0.05, y + 0.05)
            cv.fill([rail], self.colour * 0.75, label)
        if self.mesh and ppm * 0.25 > 2.5:
            step = 0.25
            s = np.arange(self.s0, self.s1 - step, step)
            s = s[s - cam.s >= NEAR]
            h = self.height - self.base
            lines = [np.array([(a, self.d, self.base), (a + h, self.d, self.height)]) for a in s
                     if a + h <= self.s1]
            lines = [cam.project(p) for p in lines]
            cv.lines(lines, self.colour * 0.8, max(1.0, 0.02 * ppm))


class Hedge(_Block):
    """A hedge in 3 m pieces, labelled vegetation."""
    label = ID["vegetation"]
    gains = {"front": 0.85, "left": 1.0, "right": 0.92, "top": 1.2}


@dataclass
class Skyline:
    """Distant buildings and tree lines across the end of the street, at a fixed depth."""
    depth: float
    pieces: list  # (d0, d1, heights (n,), is_trees, colour)
    layer = -1

    def key(self, cam):
        return float("inf")

    def draw(self, cv, cam):
        s = cam.s + self.depth
        for d0, d1, heights, trees, colour in self.pieces:
            d = np.linspace(d0, d1, len(heights))
            if trees:
                top = np.stack([np.full_like(d, s), d, heights], -1)
                base = np.array([(s, d1, 0.0), (s, d0, 0.0)])
                pts = np.concatenate([top, base])
            else:
                h = heights.max()
                pts = np.array([(s, d0, 0), (s, d1, 0), (s, d1, h), (s, d0, h)], float)
            cv.fill([cam.project(pts)], colour, ID["vegetation"] if trees else ID["building"])
