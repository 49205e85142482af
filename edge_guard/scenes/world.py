"""A random street, described in metres and independent of any image size.

``sample_scene(seed_seq)`` lays out a road, what stands beside it and who uses it, plus the
camera, sky, sun and ego vehicle. Each family of things draws from its own generator, so a
scene is a pure function of its seed and adding far-away things never changes near ones.
"""

from dataclasses import dataclass, field

import numpy as np

from . import appearance as look
from .ground import AHEAD, Z_FAR, Road
from .roadside import sample_furniture, sample_side
from .structures import Skyline
from .users import lane_kind, sample_crossing, sample_people, sample_traffic

FPS = 15.0  # frame rate of clips


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
    forward = [d for i, (d, _) in enumerate(road.lanes) if lane_kind(road, i) == "forward"]
    camera["d"] = forward[rng_cam.integers(len(forward))] + rng_cam.uniform(-0.3, 0.3)

    objects = [_sample_skyline(rng_sky, sky)]
    road.crossings = _sample_crossings(stream(3), reach)
    for side in (-1, 1):
        objects += sample_side(stream(4, side + 1), road, side, sun_side, sunny, reach)
        for kind in range(5):
            objects += sample_furniture(stream(5, side + 1, kind), road, side, kind, reach)
        objects += sample_people(stream(7, side + 1), road, side, reach)
    for i, crossing in enumerate(road.crossings):
        objects += sample_crossing(stream(6, i), road, crossing)
    objects += sample_traffic(stream, road, camera["d"], speed, sky[1], reach)
    road.patches = _sample_patches(stream(10), road, reach)

    rng_hood = stream(11)
    hood = None
    if rng_hood.random() < 0.35:
        hood = dict(top=rng_hood.uniform(0.05, 0.12), bulge=rng_hood.uniform(0.02, 0.05),
                    paint=look.car_paint(rng_hood) * 0.6)
    return Scene(camera=camera, speed=speed, road=road, sky=sky, hood=hood, objects=objects)


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
