"""What stands beside a street: lots with facades, walls, fences, hedges and trees, and the
rows of street furniture along each kerb (lights, signs, trees, parked bicycles, pedestrian
lights). Part of ``world``'s layout, in metres; each row draws from its own generator.
"""

import numpy as np

from . import appearance as look
from .agents import TwoWheeler
from .ground import Lot
from .street import StreetLight, Tree, TrafficLight, TrafficSign
from .structures import Facade, Fence, Hedge, Wall


def blocked(road, s0, s1, margin=0.0):
    return any(s0 < c1 + margin and s1 > c0 - margin for c0, c1 in road.crossings)


def sample_side(rng, road, side, sun_side, sunny, reach):
    """Lots beside one sidewalk and what stands on them."""
    objects = []
    outer = road.outer(side)
    lit = 1.08 if side == -sun_side else 0.78
    crossings = iter(road.crossings)
    nxt = next(crossings, None)
    s1 = -30.0
    while s1 < reach:
        s0 = s1
        if nxt is not None and s0 >= nxt[0]:  # jump over the cross street
            s0 = nxt[1]
            nxt = next(crossings, None)
        s1 = s0 + rng.uniform(8, 32)
        if nxt is not None and s1 > nxt[0] - 5:
            s1 = nxt[0]  # the last lot before a cross street ends at its kerb
        kind = rng.choice(["building", "fronted", "park", "plaza"], p=[0.55, 0.17, 0.2, 0.08])
        terrain = kind == "park" or (kind == "fronted" and rng.random() < 0.6)
        ground_colour = look.grass(rng) if terrain else look.pavement(rng)
        road.lots.append(Lot(s0, s1, side, bool(terrain), ground_colour))
        setback = 0.0 if kind == "building" and rng.random() < 0.7 else rng.uniform(1.0, 7.0)
        built = kind in ("building", "fronted") or kind == "plaza" and rng.random() < 0.5
        if built:
            gap = rng.uniform(0, 1.5) if rng.random() < 0.3 else 0.0
            objects.append(_facade(rng, s0 + gap, s1, side, outer + side * setback, lit))
            if sunny and side == sun_side:
                length = objects[-1].height * rng.uniform(0.3, 1.0)
                d_in = outer + side * setback - side * length
                road.shadows.append((s0 + gap, s1, outer + side * setback, d_in, 0.02))
        elif kind == "park" and rng.random() < 0.5:
            back = outer + side * rng.uniform(15, 45)
            objects.append(_facade(rng, s0, s1, side, back, lit))
        if kind == "park" or kind == "plaza":
            for _ in range(int(rng.integers(1, 5 if kind == "park" else 2))):
                ts = rng.uniform(s0 + 1, max(s0 + 1.5, s1 - 1))
                objects.append(_tree(rng, ts, outer + side * rng.uniform(2, 14), road.kerb))
        if kind in ("fronted", "park") and setback > 0.5 or kind == "park":
            front = outer + side * 0.2
            r = rng.random()
            if r < 0.35:
                objects += _wall(rng, s0, s1, front, side, road.kerb)
            elif r < 0.7:
                objects += _fence(rng, s0, s1, front, road.kerb)
            elif r < 0.9:
                h = rng.uniform(0.8, 1.8)
                colour = look.foliage(rng)
                for a in np.arange(s0, s1, 3.0):
                    d0, d1 = sorted((front, front + side * rng.uniform(0.6, 1.2)))
                    objects.append(Hedge(a, min(a + 3.0, s1), d0, d1, road.kerb, road.kerb + h,
                                         colour))
    return objects


def _facade(rng, s0, s1, side, d, lit):
    colour = look.facade(rng)
    bay = rng.uniform(2.2, 4.0)
    return Facade(
        s0=s0, s1=s1, side=side, d=d,
        height=rng.uniform(6, 30) if rng.random() < 0.85 else rng.uniform(30, 60),
        colour=look.shade(colour, lit * rng.uniform(0.95, 1.05)),
        end_colour=look.shade(colour, rng.uniform(0.6, 0.95)),
        glass=look.glass(rng), frame=look.shade(colour, rng.uniform(0.6, 1.25)),
        floor=rng.uniform(2.9, 3.7), bay=bay,
        window=(rng.uniform(0.35, 0.7), rng.uniform(0.4, 0.68)),
        shop=bool(rng.random() < 0.4), seed=int(rng.integers(2**31)),
    )


def _wall(rng, s0, s1, d, side, base):
    colour = look.concrete(rng)
    h = rng.uniform(0.8, 2.8)
    thick = rng.uniform(0.2, 0.4)
    d0, d1 = sorted((d, d + side * thick))
    out = []
    for a in np.arange(s0, s1, 4.0):  # short pieces keep painter's order right
        out.append(Wall(a, min(a + 4.0, s1), d0, d1, base, base + h, colour))
    return out


def _fence(rng, s0, s1, d, base):
    colour = look.fence_material(rng)
    h = rng.uniform(0.9, 2.2)
    mesh = bool(rng.random() < 0.5)
    return [Fence(a, min(a + 5.0, s1), d, base, base + h, colour, mesh)
            for a in np.arange(s0, s1, 5.0)]


def _tree(rng, s, d, base):
    trunk = rng.uniform(1.8, 4.0) if rng.random() < 0.85 else 0.0
    width = rng.uniform(1.5, 3.5)
    crown = []
    for _ in range(int(rng.integers(3, 8))):
        crown.append((rng.uniform(-0.6, 0.6) * width, rng.uniform(0.3, 1.6) * width,
                      rng.uniform(0.45, 0.8) * width, rng.uniform(0.45, 0.8) * width,
                      rng.uniform(0.8, 1.2)))
    return Tree(s, d, trunk, rng.uniform(0.1, 0.25), crown, look.bark(rng), look.foliage(rng))


def sample_furniture(rng, road, side, kind, reach):
    """One row of street furniture along one kerb: 0 street lights, 1 signs, 2 trees,
    3 parked bicycles, 4 pedestrian traffic lights."""
    objects = []
    R = road.half_width
    inner, outer = road.walk(side)
    w, verge = outer - inner, inner - R
    d_pole = side * (R + (verge / 2 if verge > 0 else 0.45 if w > 0 else 0.8))
    metal = look.pole_metal(rng)
    if kind == 0:
        s = rng.uniform(-10, 20)
        while s < reach:
            if not blocked(road, s - 1, s + 1):
                arm = -side * rng.uniform(1.2, 3.0) if rng.random() < 0.75 else 0.0
                objects.append(StreetLight(s, d_pole, rng.uniform(6, 9.5), rng.uniform(0.07, 0.13),
                                           arm, metal, look.jitter(rng, (235, 230, 205), 8)))
            s += rng.uniform(16, 38)
    elif kind == 1:
        s = rng.uniform(-5, 25)
        while s < reach:
            if not blocked(road, s - 1, s + 1):
                objects.append(_sign(rng, s, d_pole + side * rng.uniform(0, 0.3), metal))
            s += rng.uniform(8, 40)
    elif kind == 2 and (w > 2.4 or verge > 1.0) and rng.random() < 0.55:
        s = rng.uniform(-10, 10)
        while s < reach:
            if not blocked(road, s - 3, s + 3):
                if verge > 1.0:  # trees in the grass strip, else in pits in the pavement
                    d = side * (R + verge / 2)
                else:
                    d = side * (inner + rng.uniform(0.6, min(1.6, w - 0.8)))
                objects.append(_tree(rng, s, d, road.kerb))
            s += rng.uniform(7, 16)
    elif kind == 3 and w > 1.8 and rng.random() < 0.55:
        s = rng.uniform(3, 50)
        while s < reach:
            a = s
            for _ in range(int(rng.integers(1, 6))):
                if not blocked(road, a - 1, a + 1):
                    motor = bool(rng.random() < 0.25)
                    objects.append(TwoWheeler(motor, a, side * (outer - 0.9), True,
                                              int(rng.choice([-1, 1])), look.car_paint(rng), None,
                                              (0.0, 0.0)))
                a += rng.uniform(0.6, 1.3)
            s += rng.uniform(30, 120)
    elif kind == 4 and rng.random() < 0.35:
        s = rng.uniform(8, 70)
        while s < reach:
            if not blocked(road, s - 1, s + 1):
                objects.append(TrafficLight(s, d_pole, rng.uniform(3.0, 3.6), 0.07, 0.0,
                                            look.jitter(rng, (40, 40, 40), 4), metal,
                                            int(rng.integers(3)), bool(rng.random() < 0.8)))
            s += rng.uniform(60, 150)
    return objects


def _sign(rng, s, d, metal):
    shape = rng.choice(["circle", "triangle", "diamond", "square", "octagon", "rect"],
                       p=[0.35, 0.2, 0.1, 0.15, 0.05, 0.15])
    rim, face = {
        "circle": [((200, 30, 30), (235, 235, 230)), ((25, 70, 170), (30, 80, 185))],
        "triangle": [((200, 30, 30), (240, 240, 235))],
        "diamond": [((235, 235, 230), (235, 190, 30))],
        "square": [((235, 235, 230), (30, 80, 170)), ((235, 235, 230), (30, 120, 60))],
        "octagon": [((235, 235, 230), (200, 25, 25))],
        "rect": [((235, 235, 230), (30, 80, 170)), ((30, 30, 30), (235, 235, 230)),
                 ((235, 235, 230), (30, 110, 60))],
    }[shape][0 if rng.random() < 0.6 else -1]
    return TrafficSign(s, d, rng.uniform(2.2, 3.2), str(shape), rng.uniform(0.55, 0.9),
                       look.jitter(rng, face, 6), look.jitter(rng, rim, 6),
                       metal, bool(rng.random() < 0.85))
