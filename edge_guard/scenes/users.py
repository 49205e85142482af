"""Who uses a street: people on the sidewalks and at crossings, parked cars, traffic in every
lane, trams and cyclists. Part of ``world``'s layout, in metres; each row draws from its own
generator.
"""

import numpy as np

from . import appearance as look
from .agents import Person, TwoWheeler, Vehicle
from .ground import AHEAD, Z_FAR
from .roadside import blocked
from .street import TrafficLight


def lane_kind(road, i):
    d, w = road.lanes[i]
    if road.parking[0] and i == 0 or road.parking[1] and i == len(road.lanes) - 1:
        return "parking"
    if road.two_way and d < road.centre:
        return "oncoming"
    return "forward"


def sample_crossing(rng, road, crossing):
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


def sample_people(rng, road, side, reach):
    """Pedestrians on one sidewalk: alone or in small groups, standing or walking."""
    objects = []
    inner, outer = road.walk(side)
    if outer - inner < 1.0:
        return objects
    density = rng.uniform(1.0, 14.0) / 100.0
    s = rng.uniform(1.0, 10.0)
    while s < reach - AHEAD:
        if not blocked(road, s, s + 1):
            for _ in range(int(rng.choice([1, 1, 1, 2, 3]))):
                d = side * rng.uniform(inner + 0.4, outer - 0.3)
                p = _person(rng, s + rng.uniform(0, 1.5), d)
                if rng.random() < 0.7:
                    p.speed = (float(rng.choice([-1, 1]) * rng.uniform(0.8, 1.7)), 0.0)
                objects.append(p)
        s += rng.exponential(1.0 / density)
    return objects


def sample_traffic(stream, road, ego_d, ego_speed, haze, reach):
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
        if lane_kind(road, inner) != "parking":
            tram_lane = inner
            road.tram = road.lanes[inner][0]
    for i, (d, w) in enumerate(road.lanes):
        rng = stream(9, i)
        kind = lane_kind(road, i)
        if kind == "parking":
            s = rng.uniform(-6, 6)
            while s < reach - AHEAD - 60:
                if not blocked(road, s - 1, s + 6, 3.0) and rng.random() < 0.85:
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
