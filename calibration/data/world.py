"""A random street, described in metres and independent of any image size.

``sample_scene(seed_seq)`` lays out a road, what stands beside it and who uses it, plus the
camera, sky, sun and ego vehicle. Each family of things draws from its own generator, so a
scene is a pure function of its seed and adding far-away things never changes near ones.
"""

from dataclasses import dataclass, field

import numpy as np

from . import appearance as look
from .agents import Person, TwoWheeler, Vehicle
from .ground import Z_FAR, Lot, Road
from .street import StreetLight, Tree, TrafficLight, TrafficSign
from .structures import Facade, Fence, Hedge, Skyline, Wall

FPS = 15.0  # frame rate of clips
AHEAD = 30.0  # metres of street laid out beyond the far plane


@dataclass
class Scene:
    camera: dict  # Camera fields except s and size
    speed: float  # ego speed, m/s
    road: Road
    sky: tuple  # (zenith, horizon) colours
    hood: dict | None  # the ego vehicle's bonnet at the bottom of the frame (void)
    objects: list = field(default_factory=list)


def sample_scene(seq: np.random.SeedSequence, duration: float = 0.0) -> Scene:
    """The street of a seed, laid out far enough for a drive of ``duration`` seconds.

    Every row of things along the street (one side's lots, one lane's traffic, ...) draws
    from its own generator, in order along the street, so a longer drive only adds things
    at the far end: frame 0 of a clip is the still of the same seed.
    """
    def stream(*key):
        return np.random.default_rng(
            np.random.SeedSequence(seq.entropy, spawn_key=tuple(seq.spawn_key) + key))

    rng_cam = stream(0)
    camera = dict(
        height=rng_cam.uniform(1.25, 1.7), focal=rng_cam.uniform(1.0, 1.35),
        horizon=rng_cam.uniform(0.36, 0.5),
        curvature=0.0 if rng_cam.random() < 0.5 else rng_cam.uniform(-1, 1) * 0.0022,
    )
    speed = rng_cam.uniform(3.0, 14.0)
    tilt = rng_cam.normal(0, 0.02)
    camera["roll"] = 0.0 if rng_cam.random() < 0.5 else float(np.clip(tilt, -0.045, 0.045))
    reach = Z_FAR + AHEAD + speed * max(0.0, duration)

    rng_sky = stream(1)
    sky = look.sky_colours(rng_sky)
    sunny = sky[0][2] - sky[0][0] > 60  # a clear blue sky casts shadows
    sun_side = 1 if rng_sky.random() < 0.5 else -1

    road = _sample_road(stream(2), sunny)
    forward = [d for i, (d, _) in enumerate(road.lanes) if _lane_kind(road, i) == "forward"]
    camera["d"] = forward[rng_cam.integers(len(forward))] + rng_cam.uniform(-0.3, 0.3)

    objects = [_sample_skyline(rng_sky, sky)]
    road.crossings = _sample_crossings(stream(3), reach)
    for side in (-1, 1):
        objects += _sample_side(stream(4, side + 1), road, side, sun_side, sunny, reach)
        for kind in range(5):
            objects += _sample_furniture(stream(5, side + 1, kind), road, side, kind, reach)
        objects += _sample_people(stream(7, side + 1), road, side, reach)
    for i, crossing in enumerate(road.crossings):
        objects += _sample_crossing(stream(6, i), road, crossing)
    objects += _sample_traffic(stream, road, camera["d"], speed, sky[1], reach)
    road.patches = _sample_patches(stream(10), road, reach)

    rng_hood = stream(11)
    hood = None
    if rng_hood.random() < 0.35:
        hood = dict(top=rng_hood.uniform(0.05, 0.12), bulge=rng_hood.uniform(0.02, 0.05),
                    paint=look.car_paint(rng_hood) * 0.6)
    return Scene(camera=camera, speed=speed, road=road, sky=sky, hood=hood, objects=objects)


def _lane_kind(road, i):
    d, w = road.lanes[i]
    if road.parking[0] and i == 0 or road.parking[1] and i == len(road.lanes) - 1:
        return "parking"
    if road.two_way and d < road.centre:
        return "oncoming"
    return "forward"


def _sample_road(rng, sunny) -> Road:
    n = int(rng.choice([2, 3, 4], p=[0.45, 0.3, 0.25]))
    lane_w = rng.uniform(2.9, 3.6)
    two_way = rng.random() < 0.75
    parking = (rng.random() < 0.3, rng.random() < 0.4)
    widths = [2.3] * parking[0] + [lane_w] * n + [2.3] * parking[1]
    total = sum(widths)
    lanes, x = [], -total / 2
    for w in widths:
        lanes.append((x + w / 2, w))
        x += w
    # Two-way roads: the centre line separates the oncoming lanes from ours.
    centre = -total / 2 + 2.3 * parking[0] + lane_w * (n // 2) if two_way else None
    side_w = tuple(rng.uniform(1.8, 5.0) if rng.random() < 0.9 else 0.0 for _ in range(2))
    verge = tuple(rng.uniform(0.8, 3.0) if rng.random() < 0.3 else 0.0 for _ in range(2))
    pave_l = look.pavement(rng)
    pave_r = pave_l if rng.random() < 0.7 else look.pavement(rng)
    road = Road(
        half_width=total / 2, lanes=lanes, two_way=two_way, centre=centre, parking=parking,
        sidewalk=side_w, verge=verge, verge_colour=look.grass(rng),
        paving=rng.uniform(0.5, 1.5) if rng.random() < 0.6 else 0.0,
        kerb=rng.uniform(0.1, 0.16), asphalt=look.asphalt(rng), pavement=(pave_l, pave_r),
        kerb_colour=look.curb(rng), paint=look.lane_paint(rng),
        centre_paint=look.lane_paint(rng, yellow=rng.random() < 0.2),
        dash=(rng.uniform(2.0, 4.0), rng.uniform(6.0, 12.0), rng.uniform(0, 10)),
        shadow_alpha=rng.uniform(0.25, 0.5) if sunny else 0.0,
    )
    return road


def _sample_crossings(rng, reach):
    """Cross streets (s0, s1): about every other street has one in the first 90 m."""
    out = []
    c0 = rng.uniform(15, 90) if rng.random() < 0.6 else rng.uniform(90, 250)
    while c0 < reach + 100:  # beyond the last lot, so a longer drive changes no lot
        width = rng.uniform(9, 16)
        out.append((c0, c0 + width))
        c0 += width + rng.uniform(60, 200)
    return out


def _blocked(road, s0, s1, margin=0.0):
    return any(s0 < c1 + margin and s1 > c0 - margin for c0, c1 in road.crossings)


def _sample_side(rng, road, side, sun_side, sunny, reach):
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


def _sample_furniture(rng, road, side, kind, reach):
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
            if not _blocked(road, s - 1, s + 1):
                arm = -side * rng.uniform(1.2, 3.0) if rng.random() < 0.75 else 0.0
                objects.append(StreetLight(s, d_pole, rng.uniform(6, 9.5), rng.uniform(0.07, 0.13),
                                           arm, metal, look.jitter(rng, (235, 230, 205), 8)))
            s += rng.uniform(16, 38)
    elif kind == 1:
        s = rng.uniform(-5, 25)
        while s < reach:
            if not _blocked(road, s - 1, s + 1):
                objects.append(_sign(rng, s, d_pole + side * rng.uniform(0, 0.3), metal))
            s += rng.uniform(8, 40)
    elif kind == 2 and (w > 2.4 or verge > 1.0) and rng.random() < 0.55:
        s = rng.uniform(-10, 10)
        while s < reach:
            if not _blocked(road, s - 3, s + 3):
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
                if not _blocked(road, a - 1, a + 1):
                    motor = bool(rng.random() < 0.25)
                    objects.append(TwoWheeler(motor, a, side * (outer - 0.9), True,
                                              int(rng.choice([-1, 1])), look.car_paint(rng), None,
                                              (0.0, 0.0)))
                a += rng.uniform(0.6, 1.3)
            s += rng.uniform(30, 120)
    elif kind == 4 and rng.random() < 0.35:
        s = rng.uniform(8, 70)
        while s < reach:
            if not _blocked(road, s - 1, s + 1):
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


def _sample_crossing(rng, road, crossing):
    """Traffic lights on the four corners of a cross street, people and bikes crossing."""
    objects = []
    R = road.half_width
    c0, c1 = crossing
    for side in (-1, 1):
        for s in (c0 - 1.0, c1 + 1.0):
            arm = -side * rng.uniform(3.0, 7.0) if rng.random() < 0.5 else 0.0
            height = rng.uniform(5.0, 6.5) if arm else rng.uniform(3.0, 3.8)
            objects.append(TrafficLight(s, side * (R + 0.6), height, 0.09, arm,
                                        look.jitter(rng, (35, 35, 35), 4), look.pole_metal(rng),
                                        int(rng.integers(3)), s < c1))
    for _ in range(int(rng.poisson(2.0))):
        p = _person(rng, rng.uniform(c0 - 4.2, c0 - 0.8), rng.uniform(-R, R))
        p.profile = True
        p.speed = (0.0, float(rng.choice([-1, 1]) * rng.uniform(0.9, 1.6)))
        objects.append(p)
    for _ in range(int(rng.poisson(0.6))):
        objects.append(_cyclist(rng, rng.uniform(c0 - 4.2, c0 - 0.8), rng.uniform(-R, R), True,
                                motor=bool(rng.random() < 0.3)))
    return objects


def _person(rng, s, d):
    return Person(
        s=s, d=d, height=rng.uniform(1.5, 1.95) if rng.random() < 0.9 else rng.uniform(1.0, 1.4),
        build=rng.uniform(0.2, 0.28), skin=look.skin(rng), hair=look.hair(rng), top=look.cloth(rng),
        legs=look.cloth(rng) * 0.8, profile=False, speed=(0.0, 0.0),
        phase=rng.uniform(0, 2 * np.pi),
    )


def _cyclist(rng, s, d, side_on, motor):
    rider = _person(rng, s, d)
    rider.height = rng.uniform(1.6, 1.9)
    rider.speed = (1.0, 0.0)
    if motor:
        helmet = [(30, 30, 30), (200, 200, 200), (180, 30, 30)][int(rng.integers(3))]
        rider.hair = look.jitter(rng, helmet, 8)
    heading = int(rng.choice([-1, 1]))
    v = rng.uniform(2.5, 6.0) * (2.5 if motor else 1.0)
    speed = (0.0, heading * v) if side_on else (v, 0.0)
    return TwoWheeler(motor, s, d, side_on, heading, look.car_paint(rng), rider, speed)


def _sample_people(rng, road, side, reach):
    """Pedestrians on one sidewalk: alone or in small groups, standing or walking."""
    objects = []
    inner, outer = road.walk(side)
    if outer - inner < 1.0:
        return objects
    density = rng.uniform(1.0, 14.0) / 100.0
    s = rng.uniform(1.0, 10.0)
    while s < reach - AHEAD:
        if not _blocked(road, s, s + 1):
            for _ in range(int(rng.choice([1, 1, 1, 2, 3]))):
                d = side * rng.uniform(inner + 0.4, outer - 0.3)
                p = _person(rng, s + rng.uniform(0, 1.5), d)
                if rng.random() < 0.7:
                    p.speed = (float(rng.choice([-1, 1]) * rng.uniform(0.8, 1.7)), 0.0)
                objects.append(p)
        s += rng.exponential(1.0 / density)
    return objects


def _sample_traffic(stream, road, ego_d, ego_speed, haze, reach):
    """Parked cars, traffic in every lane (one generator per lane), a tram, cyclists."""
    objects = []
    R = road.half_width
    duration = (reach - Z_FAR - AHEAD) / ego_speed
    rng = stream(8)
    tram_lane = None
    if rng.random() < 0.22:
        # Trams run in the lane next to the centre line.
        centre = road.centre if road.centre is not None else 0.0
        inner = min(range(len(road.lanes)), key=lambda i: abs(road.lanes[i][0] - centre))
        if _lane_kind(road, inner) != "parking":
            tram_lane = inner
            road.tram = road.lanes[inner][0]
    for i, (d, w) in enumerate(road.lanes):
        rng = stream(9, i)
        kind = _lane_kind(road, i)
        if kind == "parking":
            s = rng.uniform(-6, 6)
            while s < reach - AHEAD - 60:
                if not _blocked(road, s - 1, s + 6, 3.0) and rng.random() < 0.85:
                    v = _vehicle(rng, "car" if rng.random() < 0.92 else "truck", s, d, 0.0,
                                 bool(rng.random() < (0.7 if d > 0 else 0.3)), haze)
                    objects.append(v)
                    s += v.length
                else:
                    s += rng.uniform(3, 8)
                s += rng.uniform(0.6, 4.0)
            continue
        if kind == "forward":
            lane_speed = ego_speed * rng.uniform(0.5, 1.25)
        else:
            lane_speed = -rng.uniform(5, 14)
        ego_here = abs(d - ego_d) < w / 2
        s = rng.uniform(8, 20) if ego_here else rng.uniform(-8, 25)
        if i == tram_lane:
            objects.append(_vehicle(rng, "train", rng.uniform(8, 60), d, lane_speed,
                                    kind == "forward", haze))
            continue
        limit = reach - AHEAD - 40 + max(0.0, -lane_speed) * duration
        while s < limit:
            r = rng.random()
            if r < 0.1:
                tw = _cyclist(rng, s, d + rng.uniform(-0.5, 0.5), False, motor=True)
                tw.speed = (lane_speed, 0.0)
                objects.append(tw)
                s += 2.5
            else:
                vkind = "car" if r < 0.86 else ("truck" if r < 0.93 else "bus")
                v = _vehicle(rng, vkind, s, d + rng.uniform(-0.3, 0.3), lane_speed,
                             kind == "forward", haze)
                objects.append(v)
                s += v.length
            s += rng.uniform(4, 40)
    # Cyclists along the right edge when there is no parking lane there.
    rng = stream(8, 1)
    if not road.parking[1] and rng.random() < 0.6:
        for _ in range(int(rng.integers(1, 5))):
            objects.append(_cyclist(rng, rng.uniform(6, 70), R - rng.uniform(0.5, 0.9), False,
                                    motor=False))
    return objects


def _vehicle(rng, kind, s, d, speed, rear, haze):
    if kind == "car":
        length, width = rng.uniform(3.8, 4.9), rng.uniform(1.65, 1.9)
        height = rng.uniform(1.35, 1.6)
        if rng.random() < 0.15:  # vans and SUVs
            length, height = rng.uniform(4.6, 5.3), rng.uniform(1.8, 2.1)
        paint = look.car_paint(rng)
    elif kind == "truck":
        length, width, height = rng.uniform(6, 11), rng.uniform(2.3, 2.5), rng.uniform(2.9, 3.8)
        paint = look.car_paint(rng)
    elif kind == "bus":
        length, width, height = rng.uniform(10.5, 13.5), 2.55, rng.uniform(2.9, 3.3)
        liveries = [(230, 200, 40), (200, 40, 40), (225, 225, 225), (40, 90, 160)]
        paint = look.jitter(rng, liveries[int(rng.integers(4))], 6)
    else:
        length, width, height = rng.uniform(24, 36), rng.uniform(2.3, 2.65), rng.uniform(3.2, 3.6)
        liveries = [(225, 225, 220), (200, 40, 40), (235, 200, 40), (60, 110, 170)]
        paint = look.jitter(rng, liveries[int(rng.integers(4))], 6)
    trim = look.jitter(rng, (205, 205, 200), 6) if rng.random() < 0.6 else look.car_paint(rng)
    return Vehicle(kind, s, d, length, width, height, speed, rear, paint, look.glass(rng) * 0.7,
                   np.asarray(haze, float), trim)


def _sample_patches(rng, road, reach):
    """Repaired or worn patches of asphalt (drawn, not labelled: they are road)."""
    patches = []
    R = road.half_width
    s = rng.exponential(25.0)
    while s < reach - AHEAD:
        d0 = rng.uniform(-R, R - 1)
        colour = look.shade(road.asphalt, rng.uniform(0.6, 1.3))
        patches.append((s, s + rng.uniform(2, 15), d0, min(R, d0 + rng.uniform(0.5, 4)), colour,
                        rng.uniform(0.4, 0.9)))
        s += rng.exponential(25.0)
    return patches


def _sample_skyline(rng, sky):
    pieces = []
    d = -600.0
    while d < 600.0:
        w = rng.uniform(15, 80)
        r = rng.random()
        if r < 0.55:
            colour = 0.55 * look.facade(rng) + 0.45 * sky[1]
            pieces.append((d, d + w, np.full(2, rng.uniform(8, 45)), False, colour))
        elif r < 0.9:
            colour = 0.6 * look.foliage(rng) + 0.4 * sky[1]
            pieces.append((d, d + w, rng.uniform(6, 18, 10), True, colour))
        d += w
    return Skyline(Z_FAR, pieces)
