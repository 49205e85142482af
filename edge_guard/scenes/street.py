"""Street furniture and trees: street lights, traffic lights, traffic signs, trees, bushes.

All are flat figures facing the camera (their depth is small next to their distance).
"""

from dataclasses import dataclass

import numpy as np

from edge_guard.classes import ID

from . import solids
from .camera import NEAR


def _key(cam, s, d):
    z = max(s - cam.s, NEAR)
    return float(np.hypot(z, d - cam.d + solids.lateral_offset(cam, s)))


@dataclass
class StreetLight:
    s: float
    d: float
    height: float
    radius: float
    arm: float  # signed lateral length of the arm towards the road, m
    colour: np.ndarray
    lamp: np.ndarray
    layer = 1

    def extent(self):
        a = abs(self.arm) + 0.4
        return self.s, self.s, self.d - a, self.d + a, 0.0, self.height + 0.1

    def key(self, cam):
        return _key(cam, self.s, self.d)

    def draw(self, cv, cam):
        r, h, a = self.radius, self.height, self.arm
        shapes = [solids.rect(-r, 0, r, h)]
        if a:
            shapes.append(np.array([(0, h - 0.35), (a, h - 0.05), (a, h + 0.05), (0, h - 0.2)]))
        proj = solids.figure(cam, self.s, self.d, shapes)
        if proj is None:
            return
        cv.fill(proj, self.colour, ID["pole"])
        if a:
            k = np.sign(a)
            head = solids.rect(a - 0.35 * k, h - 0.12, a + 0.1 * k, h + 0.08)
            glass = solids.rect(a - 0.3 * k, h - 0.14, a + 0.05 * k, h - 0.09)
            lamp, glow = solids.figure(cam, self.s, self.d, [head, glass])
            cv.fill([lamp], self.colour * 0.8, ID["pole"])
            cv.fill([glow], self.lamp)


@dataclass
class TrafficLight:
    s: float
    d: float
    pole_height: float
    radius: float
    arm: float  # signed lateral reach of a mast arm (0 = light on the pole top)
    housing: np.ndarray
    pole: np.ndarray
    lit: int  # 0 red, 1 amber, 2 green
    facing: bool  # lamps towards the camera (else its back)
    layer = 1

    def extent(self):
        a = abs(self.arm) + 0.3
        return self.s, self.s, self.d - a, self.d + a, 0.0, self.pole_height + 0.1

    def key(self, cam):
        return _key(cam, self.s, self.d)

    def draw(self, cv, cam):
        r, h, a = self.radius, self.pole_height, self.arm
        poles = [solids.rect(-r, 0, r, h)]
        if a:
            poles.append(solids.rect(min(0, a), h - 0.12, max(0, a), h - 0.02))
        proj = solids.figure(cam, self.s, self.d, poles)
        if proj is None:
            return
        cv.fill(proj, self.pole, ID["pole"])
        # Housing on the pole top, and one more hanging from the arm's end.
        boxes = [(0.0, h - 0.95)] if not a else [(a * 0.9, h - 1.07), (0.0, 2.1)]
        for x, y0 in boxes:
            box = solids.rect(x - 0.17, y0, x + 0.17, y0 + 0.95)
            cv.fill(solids.figure(cam, self.s, self.d, [box]), self.housing, ID["traffic light"])
            if not self.facing:
                continue
            lamps = [solids.ellipse(x, y0 + 0.78 - 0.3 * i, 0.1, 0.1, 12) for i in range(3)]
            colours = [(70, 20, 20), (70, 55, 15), (15, 60, 30)]
            bright = [(255, 60, 40), (255, 190, 40), (60, 255, 150)]
            for i, lamp in enumerate(lamps):
                colour = bright[i] if i == self.lit else colours[i]
                cv.fill(solids.figure(cam, self.s, self.d, [lamp]), colour)


@dataclass
class TrafficSign:
    s: float
    d: float
    height: float  # of the plate centre
    shape: str  # circle, triangle, diamond, square, octagon, rect
    size: float
    face: np.ndarray
    rim: np.ndarray
    pole: np.ndarray
    facing: bool
    layer = 1

    def extent(self):
        r = self.size
        return self.s, self.s, self.d - r, self.d + r, 0.0, self.height + r

    def key(self, cam):
        return _key(cam, self.s, self.d)

    def _outline(self, scale):
        r, h = self.size / 2 * scale, self.height
        if self.shape == "circle":
            return solids.ellipse(0, h, r, r, 24)
        if self.shape == "octagon":
            return solids.ellipse(0, h, r, r, 8, np.pi / 8, np.pi / 8 + 2 * np.pi)
        if self.shape == "triangle":
            return np.array([(-r, h - 0.6 * r), (r, h - 0.6 * r), (0, h + r)])
        if self.shape == "diamond":
            return np.array([(0, h - r), (r, h), (0, h + r), (-r, h)])
        if self.shape == "rect":
            return solids.rect(-1.4 * r, h - 0.7 * r, 1.4 * r, h + 0.7 * r)
        return solids.rect(-r, h - r, r, h + r)

    def draw(self, cv, cam):
        bottom = self.height - self.size / 2
        pole = solids.figure(cam, self.s, self.d, [solids.rect(-0.04, 0, 0.04, bottom + 0.05)])
        if pole is None:
            return
        cv.fill(pole, self.pole, ID["pole"])
        plate = solids.figure(cam, self.s, self.d, [self._outline(1.0)])
        if not self.facing:
            cv.fill(plate, (150, 150, 150), ID["traffic sign"])
            return
        cv.fill(plate, self.rim, ID["traffic sign"])
        cv.fill(solids.figure(cam, self.s, self.d, [self._outline(0.72)]), self.face)


@dataclass
class Tree:
    s: float
    d: float
    trunk: float  # trunk height below the crown, m
    trunk_radius: float
    crown: list  # (cx, cy, rx, ry, gain) blobs in metres around the trunk top
    bark: np.ndarray
    leaves: np.ndarray
    layer = 1

    def extent(self):
        c = np.array([b[:4] for b in self.crown])
        lo = min(float((c[:, 0] - c[:, 2]).min()), -0.5)
        hi = max(float((c[:, 0] + c[:, 2]).max()), 0.5)
        top = self.trunk + float((c[:, 1] + c[:, 3]).max())
        return self.s, self.s, self.d + lo, self.d + hi, 0.0, top

    def key(self, cam):
        return _key(cam, self.s, self.d)

    def draw(self, cv, cam):
        label = ID["vegetation"]
        r = self.trunk_radius
        t = self.trunk + 0.5
        shapes = [np.array([(-r * 1.3, 0), (r * 1.3, 0), (r, t), (-r, t)])]
        n = 18 if cam.pixels_per_metre(self.s) > 4.0 else 8  # round enough at any size
        shapes += [solids.ellipse(cx, self.trunk + cy, rx, ry, n)
                   for cx, cy, rx, ry, _ in self.crown]
        proj = solids.figure(cam, self.s, self.d, shapes)
        if proj is None:
            return
        if self.trunk > 0:
            cv.fill(proj[:1], self.bark, label)
        # Darker blobs behind, lit ones in front.
        gains = np.array([g for *_, g in self.crown])
        dark = gains < 1.0
        cv.fill([p for p, k in zip(proj[1:], dark) if k], self.leaves * 0.82, label)
        cv.fill([p for p, k in zip(proj[1:], dark) if not k], self.leaves * 1.1, label)
