"""Road users: cars, trucks, buses, trams, motorcycles and bicycles with riders, pedestrians.

Vehicles are boxes (wheels, body, cabin) seen from behind or from the front; people and
two-wheelers are flat figures facing the camera. Every moving thing has ``at(t)`` giving
its pose t seconds into a clip.
"""

from dataclasses import dataclass, replace

import numpy as np

from edge_guard.classes import ID

from . import solids
from .camera import NEAR

_TYRE = np.array((28.0, 28.0, 30.0))
_DETAIL_PX = 8.0  # objects shorter than this many pixels are drawn without their details


def _key(cam, s, d0, d1):
    z = max(s - cam.s, NEAR)
    off = solids.lateral_offset(cam, s) - cam.d
    x = 0.0 if d0 + off <= 0 <= d1 + off else min(abs(d0 + off), abs(d1 + off))
    return float(np.hypot(z, x))


@dataclass
class Vehicle:
    kind: str  # car, truck, bus, train
    s: float  # the end nearest the camera, m
    d: float  # centre, m
    length: float
    width: float
    height: float
    speed: float  # m/s along the road
    rear: bool  # we see its rear (it drives away) or its front (oncoming/parked facing us)
    paint: np.ndarray
    glass: np.ndarray
    sky: np.ndarray  # what its roof and windows reflect
    trim: np.ndarray  # second colour: a truck's cargo box
    layer = 1

    def at(self, t):
        return replace(self, s=self.s + self.speed * t)

    def extent(self):
        w = self.width / 2 + 0.2
        return self.s, self.s + self.length, self.d - w, self.d + w, 0.0, self.height + 1.0

    def key(self, cam):
        return _key(cam, self.s, self.d - self.width / 2, self.d + self.width / 2)

    def draw(self, cv, cam):
        if self.s + self.length - cam.s <= NEAR:
            return
        label = ID[self.kind]
        s0, s1 = self.s, self.s + self.length
        d0, d1 = self.d - self.width / 2, self.d + self.width / 2
        if cam.pixels_per_metre(s0) * self.height < _DETAIL_PX:  # far away: a plain box
            self._faces(cv, cam, label, s0, s1, d0, d1, 0.0, self.height, self.paint, 0.3)
            return
        shadow = solids.top_face(cam, s0 - 0.3, s1 + 0.3, d0 - 0.15, d1 + 0.15, 0.01)
        cv.tint([shadow], (8, 8, 10), 0.55)
        wheel_r = {"car": 0.33, "truck": 0.5, "bus": 0.5, "train": 0.0}[self.kind]
        if wheel_r:  # one dark box per axle: tyres and the shade between them
            for a, b in ((s1 - 1.0 - 2 * wheel_r, s1 - 1.0), (s0 + 0.8, s0 + 0.8 + 2 * wheel_r)):
                axle = solids.box(cam, a, b, d0 + 0.02, d1 - 0.02, 0.0, 2 * wheel_r)
                cv.fill(list(axle.values()), _TYRE, label, disjoint=True)
        getattr(self, "_draw_" + self.kind)(cv, cam, label, s0, s1, d0, d1)

    def _faces(self, cv, cam, label, s0, s1, d0, d1, y0, y1, colour, top_mix=0.5):
        faces = solids.box(cam, s0, s1, d0, d1, y0, y1)
        for name, poly in faces.items():
            c = colour * {"front": 0.85, "left": 1.0, "right": 0.92, "top": 1.0}[name]
            if name == "top":
                c = (1 - top_mix) * c + top_mix * self.sky
            cv.fill([poly], c, label)
        return faces

    def _on_front(self, cam, s, shapes):
        """Flat detail on the face at s (across the road), shapes in (d, y) metres."""
        return solids.figure(cam, s, 0.0, shapes) if s - cam.s >= NEAR else None

    def _lights(self, cv, cam, s, d0, d1, y):
        w = 0.12 * (d1 - d0)
        if self.rear:
            colour, lamp = (170, 20, 20), (0.22, 0.14)
        else:
            colour, lamp = (235, 235, 215), (0.18, 0.12)
        shapes = [solids.rect(d0 + 0.08, y, d0 + 0.08 + w, y + lamp[1] * 1.5),
                  solids.rect(d1 - 0.08 - w, y, d1 - 0.08, y + lamp[1] * 1.5)]
        proj = self._on_front(cam, s, shapes)
        if proj is not None:
            cv.fill(proj, colour)

    def _draw_car(self, cv, cam, label, s0, s1, d0, d1):
        h, L = self.height, self.length
        belt = 0.58 * h
        self._faces(cv, cam, label, s0, s1, d0, d1, 0.3, belt, self.paint, 0.3)
        # Cabin: set back from the end we see more when seen from behind (the boot is short).
        c0 = s0 + (0.18 if self.rear else 0.3) * L
        c1 = s1 - (0.3 if self.rear else 0.18) * L
        faces = self._faces(cv, cam, label, c0, c1, d0 + 0.1, d1 - 0.1, belt, h, self.paint, 0.6)
        if "front" in faces:
            win = self._on_front(cam, c0, [np.array([
                (d0 + 0.2, belt + 0.04), (d1 - 0.2, belt + 0.04),
                (d1 - 0.24, h - 0.07), (d0 + 0.24, h - 0.07)])])
            if win is not None:
                cv.fill(win, 0.6 * self.glass + 0.4 * self.sky * 0.6)
        for name, d in (("left", d0 + 0.1), ("right", d1 - 0.1)):
            if name in faces:
                side = solids.side_face(cam, c0 + 0.15, c1 - 0.15, d, belt + 0.05, h - 0.08)
                cv.fill([side], self.glass)
        self._lights(cv, cam, s0, d0, d1, belt - 0.2)
        plate = self._on_front(cam, s0, [solids.rect(self.d - 0.26, 0.42, self.d + 0.26, 0.54)])
        if plate is not None:
            cv.fill(plate, (215, 215, 205))
        bumper = self._on_front(cam, s0, [solids.rect(d0, 0.3, d1, 0.4)])
        if bumper is not None:
            cv.fill(bumper, self.paint * 0.5 + 10)

    def _draw_truck(self, cv, cam, label, s0, s1, d0, d1):
        h, L = self.height, self.length
        cab = min(2.4, 0.3 * L)
        self._faces(cv, cam, label, s0, s1, d0 + 0.2, d1 - 0.2, 0.5, 1.1, np.array((35.0, 35, 38)))
        if self.rear:
            cab_s, box_s = (s1 - cab, s1), (s0, s1 - cab - 0.2)
        else:
            cab_s, box_s = (s0, s0 + cab), (s0 + cab + 0.2, s1)
        cargo = self.trim
        # Draw the part further away first: it can show over the nearer one's top.
        parts = [(cab_s, 2.9, self.paint), (box_s, h, cargo)]
        parts.sort(key=lambda p: -p[0][0])
        for (a, b), top, colour in parts:
            faces = self._faces(cv, cam, label, a, b, d0, d1, 1.0, top, colour, 0.2)
            if (a, b) == cab_s and not self.rear and "front" in faces:
                win = self._on_front(cam, a, [solids.rect(d0 + 0.15, 1.8, d1 - 0.15, 2.7)])
                cv.fill(win, self.glass)
        if self.rear:
            seam = solids.rect(self.d - 0.02, 1.1, self.d + 0.02, h - 0.1)
            door = self._on_front(cam, s0, [seam])
            if door is not None:
                cv.fill(door, cargo * 0.6)
        self._lights(cv, cam, s0, d0, d1, 0.9 if self.rear else 1.2)

    def _draw_bus(self, cv, cam, label, s0, s1, d0, d1):
        h = self.height
        faces = self._faces(cv, cam, label, s0, s1, d0, d1, 0.3, h, self.paint, 0.3)
        for name, d in (("left", d0), ("right", d1)):
            if name in faces:
                band = solids.side_face(cam, s0 + 0.3, s1 - 0.3, d, 1.15, h - 0.4)
                cv.fill([band], self.glass)
        top = h - 0.5 if self.rear else h - 0.35
        bottom = h - 1.2 if self.rear else 1.1
        win = self._on_front(cam, s0, [solids.rect(d0 + 0.15, bottom, d1 - 0.15, top)])
        if win is not None:
            cv.fill(win, self.glass)
        self._lights(cv, cam, s0, d0, d1, 0.6)
        sign = self._on_front(cam, s0, [solids.rect(d0 + 0.5, h - 0.3, d1 - 0.5, h - 0.08)])
        if sign is not None and not self.rear:
            cv.fill(sign, (230, 150, 30))

    def _draw_train(self, cv, cam, label, s0, s1, d0, d1):
        h = self.height
        faces = self._faces(cv, cam, label, s0, s1, d0, d1, 0.2, h, self.paint, 0.3)
        for name, d in (("left", d0), ("right", d1)):
            if name in faces:
                band = solids.side_face(cam, s0 + 0.4, s1 - 0.4, d, 1.05, h - 0.55)
                cv.fill([band], self.glass)
                skirt = solids.side_face(cam, s0, s1, d, 0.2, 0.55)
                cv.fill([skirt], self.paint * 0.45)
                joints = [solids.side_face(cam, j - 0.15, j + 0.15, d, 0.2, h)
                          for j in np.arange(s0 + 8.0, s1 - 1.0, 8.0)]
                cv.fill(joints, self.paint * 0.55, disjoint=True)
        win = self._on_front(cam, s0, [solids.rect(d0 + 0.12, 1.2, d1 - 0.12, h - 0.45)])
        if win is not None:
            cv.fill(win, self.glass)
        # Pantograph: thin struts up to the wire.
        mid = s0 + self.length * 0.4
        if mid - cam.s >= NEAR:
            strut = solids.figure(cam, mid, self.d, [np.array([(-0.5, h), (0.5, h), (0.05, h + 0.9),
                                                                 (-0.05, h + 0.9)])])
            cv.lines(strut, (50, 50, 50), max(1.0, 0.06 * cam.pixels_per_metre(mid)), label,
                     closed=True)
        self._lights(cv, cam, s0, d0, d1, 0.7)


@dataclass
class Person:
    s: float
    d: float
    height: float
    build: float  # shoulder width relative to height
    skin: np.ndarray
    hair: np.ndarray
    top: np.ndarray
    legs: np.ndarray
    profile: bool  # walking across the view (side-on) or along it (front/back)
    speed: tuple  # (ds, dd) m/s
    phase: float
    layer = 1

    def at(self, t):
        moving = np.hypot(*self.speed) > 0.05
        return replace(self, s=self.s + self.speed[0] * t, d=self.d + self.speed[1] * t,
                       phase=self.phase + (2 * np.pi * 0.9 * t if moving else 0.0))

    def extent(self):
        r = 0.4 * self.height
        return self.s, self.s, self.d - r, self.d + r, 0.0, self.height

    def key(self, cam):
        return _key(cam, self.s, self.d - 0.25, self.d + 0.25)

    def draw(self, cv, cam):
        if self.s - cam.s < NEAR:
            return
        if cam.pixels_per_metre(self.s) * self.height < _DETAIL_PX:  # far away: a silhouette
            H, half = self.height, self.build * self.height / 2
            body = np.array([(-0.7 * half, 0), (0.7 * half, 0), (half, 0.82 * H),
                             (0.4 * half, 0.88 * H), (0, H), (-0.4 * half, 0.88 * H),
                             (-half, 0.82 * H)])
            cv.fill(solids.figure(cam, self.s, self.d, [body]), 0.5 * (self.top + self.legs),
                    ID["person"])
            return
        parts = person_shapes(self.height, self.build, self.profile, self.phase,
                              self.skin, self.hair, self.top, self.legs)
        proj = solids.figure(cam, self.s, self.d, [p for _, polys in parts for p in polys])
        i = 0
        for colour, polys in parts:
            cv.fill(proj[i:i + len(polys)], colour, ID["person"])
            i += len(polys)


def person_shapes(H, build, profile, phase, skin, hair, top, legs, seated=False):
    """[(colour, [polygons])] of a standing or walking person, feet at 0, in metres."""
    sw = build * H
    hip = 0.52 * H
    swing = 0.1 * H * np.sin(phase)
    out = []
    if not seated:
        if profile:
            leg_polys = [np.array([(-0.05 * H, hip), (0.05 * H, hip), (s + 0.04 * H, 0),
                                   (s - 0.03 * H, 0)]) for s in (swing, -swing)]
        else:
            leg_polys = [np.array([(x - 0.045 * H, hip), (x + 0.045 * H, hip),
                                   (x + 0.035 * H + dx, 0), (x - 0.035 * H + dx, 0)])
                         for x, dx in ((-0.05 * H, -0.01 * H), (0.05 * H, 0.01 * H))]
        out.append((legs, leg_polys))
    half = (0.45 if profile else 1.0) * sw / 2
    torso = np.array([(-half * 0.85, hip - 0.02 * H), (half * 0.85, hip - 0.02 * H),
                      (half, 0.82 * H), (-half, 0.82 * H)])
    if profile:
        arms = [np.array([(-0.03 * H, 0.8 * H), (0.03 * H, 0.8 * H), (0.02 * H - a, 0.47 * H),
                          (-0.03 * H - a, 0.47 * H)]) for a in (swing * 0.8, -swing * 0.8)]
    else:
        arms = [np.array([(x, 0.81 * H), (x + sgn * 0.06 * H, 0.81 * H),
                          (x + sgn * 0.07 * H, 0.47 * H), (x + sgn * 0.025 * H, 0.47 * H)])
                for x, sgn in ((-half, -1), (half, 1))]
    out.append((top * 0.85, arms))
    out.append((top, [torso]))
    out.append((skin, [solids.rect(-0.025 * H, 0.8 * H, 0.025 * H, 0.88 * H),
                       solids.ellipse(0, 0.93 * H, 0.058 * H, 0.07 * H, 16)]))
    out.append((hair, [solids.ellipse(0, 0.945 * H, 0.06 * H, 0.058 * H, 12, -0.2, np.pi + 0.2)]))
    return out


@dataclass
class TwoWheeler:
    """A bicycle or motorcycle, ridden or parked, seen from behind or from the side."""
    motor: bool
    s: float
    d: float
    side_on: bool  # seen from the side (crossing or parked across the view)
    heading: int  # +1/-1: which way it points when side-on
    frame: np.ndarray
    rider: Person | None
    speed: tuple
    layer = 1

    def at(self, t):
        rider = self.rider.at(t) if self.rider is not None else None
        return replace(self, s=self.s + self.speed[0] * t, d=self.d + self.speed[1] * t,
                       rider=rider)

    def extent(self):
        return self.s, self.s, self.d - 1.1, self.d + 1.1, 0.0, 2.1

    def key(self, cam):
        half = 0.9 if self.side_on else 0.35
        return _key(cam, self.s, self.d - half, self.d + half)

    def draw(self, cv, cam):
        if self.s - cam.s < NEAR:
            return
        label = ID["motorcycle" if self.motor else "bicycle"]
        ppm = cam.pixels_per_metre(self.s)
        if self.side_on:
            self._side(cv, cam, label, ppm)
        else:
            self._rear(cv, cam, label, ppm)

    def _rider(self, cv, cam, lean_forward, bar_y, bar_x, seat_y, knee_dx):
        r = self.rider
        if r is None:
            return
        H = r.height
        parts = person_shapes(H, r.build, self.side_on, 0.0, r.skin, r.hair, r.top, r.legs,
                              seated=True)
        lift = seat_y - 0.5 * H
        rider = ID["rider"]
        for colour, polys in parts:
            moved = []
            for p in polys:
                p = p.copy()
                p[:, 1] += lift
                if self.side_on:  # lean the upper body towards the handlebar
                    bend = np.clip((p[:, 1] - seat_y) / (0.5 * H), 0, 1)
                    p[:, 0] += self.heading * lean_forward * bend
                moved.append(p)
            cv.fill(solids.figure(cam, self.s, self.d, moved), colour, rider)
        # Legs down to the pedals and arms to the bar.
        pedal = np.sin(r.phase) * 0.15
        if self.side_on:
            k = self.heading
            knee = seat_y - 0.3
            legs = [np.array([(-0.05, seat_y), (0.08, seat_y), (knee_dx + 0.05, knee + p),
                              (0.05, 0.25 + p), (-0.04, 0.25 + p), (knee_dx - 0.06, knee + p)])
                    * (k, 1) for p in (pedal, -pedal)]
            lean = lean_forward
            arms = [np.array([(lean, seat_y + 0.28 * H), (lean + 0.03, seat_y + 0.33 * H),
                              (bar_x, bar_y + 0.03), (bar_x - 0.03, bar_y - 0.02)]) * (k, 1)]
        else:
            legs = [np.array([(x - 0.06, seat_y), (x + 0.06, seat_y), (x * 1.6 + 0.05, 0.28 + p),
                              (x * 1.6 - 0.05, 0.28 + p)])
                    for x, p in ((-0.1, pedal), (0.1, -pedal))]
            arms = [np.array([(0.17, seat_y + 0.3 * H), (0.24, seat_y + 0.3 * H),
                              (bar_x, bar_y), (bar_x - 0.05, bar_y)]) * (sgn, 1) for sgn in (-1, 1)]
        cv.fill(solids.figure(cam, self.s, self.d, legs), r.legs, rider)
        cv.fill(solids.figure(cam, self.s, self.d, arms), r.top * 0.85, rider)

    def _side(self, cv, cam, label, ppm):
        k = self.heading
        if self.motor:
            wr, base = 0.32, 0.72
            wheels = [solids.ellipse(x * k, wr, wr, wr, 18) for x in (-base, base)]
            cv.fill(solids.figure(cam, self.s, self.d, wheels), _TYRE, label)
            body = np.array([(-0.6, 0.45), (0.5, 0.45), (0.65, 0.8), (0.2, 0.95), (-0.35, 0.85),
                             (-0.8, 0.75)]) * (k, 1)
            cv.fill(solids.figure(cam, self.s, self.d, [body]), self.frame, label)
            hubs = [solids.ellipse(x * k, wr, 0.12, 0.12, 10) for x in (-base, base)]
            cv.fill(solids.figure(cam, self.s, self.d, hubs), (150, 150, 150))
            bar = np.array([(0.55 * k, 0.8), (0.5 * k, 1.05)])
            cv.lines(solids.figure(cam, self.s, self.d, [bar]), self.frame * 0.6, 0.05 * ppm, label)
            self._rider(cv, cam, 0.15, 1.0, 0.45, 0.95, 0.25)
            return
        wr, base = 0.34, 0.52
        t = max(1.0, 0.045 * ppm)
        rings = solids.figure(cam, self.s, self.d, [solids.ellipse(x, wr, wr, wr, 20)
                                                    for x in (-base, base)])
        # Many thin spokes read as a grey haze over what is behind the wheel; the wheel is
        # annotated whole, as Cityscapes annotators outline it.
        cv.tint(rings[:1], (70, 70, 72), 0.3)
        cv.tint(rings[1:], (70, 70, 72), 0.3)
        cv.label(rings, label)
        cv.lines(rings, _TYRE, t, label, closed=True)
        spokes = [np.array([(x - wr * np.cos(a), wr - wr * np.sin(a)),
                            (x + wr * np.cos(a), wr + wr * np.sin(a))])
                  for x in (-base, base) for a in (0.3, 1.35, 2.4)]
        cv.lines(solids.figure(cam, self.s, self.d, spokes), (120, 120, 120), 0.4 * t, label)
        seat, bb, head = (-0.14 * k, 0.86), (0.0, 0.3), (0.42 * k, 0.86)
        rear, front = (-base * k, wr), (base * k, wr)
        tubes = [np.array(p) for p in (
            (rear, seat), (seat, bb), (bb, rear), (seat, head), (bb, head), (head, front),
            (head, (0.38 * k, 1.02)), ((-0.22 * k, 0.9), (-0.02 * k, 0.9)))]
        cv.lines(solids.figure(cam, self.s, self.d, tubes), self.frame, 1.2 * t, label)
        self._rider(cv, cam, 0.22, 1.0, 0.38, 0.9, 0.2)

    def _rear(self, cv, cam, label, ppm):
        if self.motor:
            parts = [solids.rect(-0.08, 0.0, 0.08, 0.62), solids.rect(-0.25, 0.4, 0.25, 0.9),
                     solids.rect(-0.4, 0.98, 0.4, 1.04)]
            cv.fill(solids.figure(cam, self.s, self.d, parts), self.frame, label)
            cv.fill(solids.figure(cam, self.s, self.d, [solids.rect(-0.08, 0.75, 0.08, 0.82)]),
                    (180, 20, 20))
            cv.fill(solids.figure(cam, self.s, self.d, [solids.rect(-0.08, 0.0, 0.08, 0.4)]), _TYRE)
            self._rider(cv, cam, 0.0, 1.0, 0.4, 0.92, 0.0)
            return
        t = max(1.0, 0.04 * ppm)
        wheel = np.array([(0.0, 0.0), (0.0, 0.68)])
        bar = np.array([(-0.28, 1.0), (0.28, 1.0)])
        post = np.array([(0.0, 0.68), (0.0, 0.9)])
        cv.lines(solids.figure(cam, self.s, self.d, [wheel]), _TYRE, t, label)
        cv.lines(solids.figure(cam, self.s, self.d, [bar, post]), self.frame, t, label)
        self._rider(cv, cam, 0.0, 1.0, 0.28, 0.9, 0.0)
