"""The ground: road with lane paint, kerbs, sidewalks, the lots beside them, cross streets.

Everything here lies flat, so it is drawn first; strips are sampled densely in depth so the
projected edges follow the road's curve.
"""

from dataclasses import dataclass, field

import numpy as np

from edge_guard.classes import ID

from .camera import NEAR
from .solids import depth_samples

Z_FAR = 260.0  # metres: the ground ends here, behind the skyline
AHEAD = 30.0  # metres of street laid out beyond the far plane


@dataclass
class Lot:
    """A stretch of land beside the sidewalk: what stands there is drawn elsewhere."""
    s0: float
    s1: float
    side: int  # +1 right of the road, -1 left
    terrain: bool  # grass/soil (terrain) or paving (sidewalk)
    colour: np.ndarray


@dataclass
class Road:
    half_width: float
    lanes: list  # (centre d, width) of every lane, left to right
    two_way: bool
    centre: float | None  # lateral position of the centre line of a two-way road
    parking: tuple  # parking lane on the left, right
    sidewalk: tuple  # width left, right (0 = none: the lot starts at the kerb)
    verge: tuple  # width of the grass strip between kerb and sidewalk, left, right
    verge_colour: np.ndarray
    kerb: float  # kerb height, m
    asphalt: np.ndarray
    pavement: tuple  # colour left, right
    kerb_colour: np.ndarray
    paint: np.ndarray
    centre_paint: np.ndarray
    dash: tuple  # (length, period, phase) of dashed lane lines, m
    lots: list = field(default_factory=list)
    crossings: list = field(default_factory=list)  # (s0, s1) of cross streets
    patches: list = field(default_factory=list)  # (s0, s1, d0, d1, colour, alpha) repairs
    shadows: list = field(default_factory=list)  # (s0, s1, d0, d1) shade on the ground
    shadow_alpha: float = 0.0
    paving: float = 0.0  # slab length along the sidewalk, m (0 = smooth)
    tram: float | None = None  # lateral position of a tram track

    def outer(self, side: int) -> float:
        """Lateral position of the sidewalk's outer edge on one side."""
        i = (side + 1) // 2
        return side * (self.half_width + self.verge[i] + self.sidewalk[i])

    def walk(self, side: int) -> tuple:
        """(inner, outer) lateral distances of the sidewalk on one side, unsigned."""
        i = (side + 1) // 2
        inner = self.half_width + self.verge[i]
        return inner, inner + self.sidewalk[i]


def ground_depths(cam):
    """Depth range (near, far) of visible ground."""
    z0 = max(NEAR, cam.focal * cam.height / (1.2 - cam.horizon))
    return z0, Z_FAR


def _samples(cam, s0, s1):
    z0, z1 = ground_depths(cam)
    return depth_samples(cam, max(s0, cam.s + z0), min(s1, cam.s + z1), z0)


def strip(cam, s0, s1, d0, d1, y):
    """Pixel polygon of a flat strip s0..s1 x d0..d1 at height y; d may be 'far' (+/-)."""
    s = _samples(cam, s0, s1)
    if s is None:
        return None
    z = s - cam.s

    def lateral(d):
        if isinstance(d, str):  # a lot running out to the sides of the frame
            return (1 if d == "+far" else -1) * np.maximum(60.0, 3.0 * z + abs(cam.d))
        return np.full_like(s, d)

    a = np.stack([s, lateral(d0), np.full_like(s, y)], -1)
    b = np.stack([s, lateral(d1), np.full_like(s, y)], -1)[::-1]
    return cam.project(np.concatenate([a, b]))


def quads(cam, q):
    """(n, 4, 3) world quads -> list of pixel quads, dropping those not fully visible."""
    q = np.asarray(q, np.float64).reshape(-1, 4, 3)
    if not len(q):
        return []
    z0, z1 = ground_depths(cam)
    keep = (q[:, :, 0].min(1) >= cam.s + z0 * 0.8) & (q[:, :, 0].min(1) <= cam.s + z1)
    return list(cam.project(q[keep]))


def _flat_quads(s0, s1, d0, d1, y):
    s0, s1, d0, d1 = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in (s0, s1, d0, d1)))
    yy = np.full_like(s0, y)
    return np.stack([np.stack([s0, d0, yy], -1), np.stack([s1, d0, yy], -1),
                     np.stack([s1, d1, yy], -1), np.stack([s0, d1, yy], -1)], 1)


def _open_spans(road, s0, s1):
    """Sub-ranges of s0..s1 not cut by a cross street."""
    spans = [(s0, s1)]
    for c0, c1 in road.crossings:
        nxt = []
        for a, b in spans:
            if c1 <= a or c0 >= b:
                nxt.append((a, b))
                continue
            if c0 > a:
                nxt.append((a, c0))
            if c1 < b:
                nxt.append((c1, b))
        spans = nxt
    return spans


def draw_ground(cv, cam, road: Road):
    R, k = road.half_width, road.kerb
    z0, z1 = ground_depths(cam)
    s_near, s_far = cam.s + z0, cam.s + z1

    # Lots beside the sidewalks, out to the sides of the frame.
    for lot in road.lots:
        for a, b in _open_spans(road, lot.s0, lot.s1):
            d_in = road.outer(lot.side)
            far = "+far" if lot.side > 0 else "-far"
            label = ID["terrain"] if lot.terrain else ID["sidewalk"]
            cv.fill([strip(cam, a, b, d_in, far, k)], lot.colour, label)

    # Grass verges, sidewalks and the kerb faces that look at the road.
    for side in (-1, 1):
        i = (side + 1) // 2
        inner, outer = road.walk(side)
        for a, b in _open_spans(road, s_near - 5, s_far):
            if road.verge[i] > 0:
                cv.fill([strip(cam, a, b, side * R, side * inner, k)], road.verge_colour,
                        ID["terrain"])
            if outer > inner:
                cv.fill([strip(cam, a, b, side * inner, side * outer, k)], road.pavement[i],
                        ID["sidewalk"])
                _draw_paving(cv, cam, road, side, a, b)
            face = _kerb_face(cam, a, b, side * R, k)
            cv.fill([face], road.kerb_colour * (0.8 if side < 0 else 0.95), ID["sidewalk"])

    # Road, cross streets and the far kerbs of the crossings.
    cv.fill([strip(cam, s_near - 5, s_far, -R, R, 0.0)], road.asphalt, ID["road"])
    for c0, c1 in road.crossings:
        for side in (-1, 1):
            far = "+far" if side > 0 else "-far"
            cv.fill([strip(cam, c0, c1, side * R, far, 0.0)], road.asphalt, ID["road"])
            outer = road.walk(side)[1]
            if c1 - cam.s > z0:
                face = np.array([(c1, side * R, 0), (c1, side * outer, 0),
                                 (c1, side * outer, k), (c1, side * R, k)])
                cv.fill([cam.polygon(face)], road.kerb_colour, ID["sidewalk"])

    _draw_paint(cv, cam, road, s_near, s_far)


def _draw_paving(cv, cam, road, side, a, b):
    """Joints between paving slabs across the sidewalk (image only), up to 60 m ahead."""
    inner, outer = road.walk(side)
    z0, _ = ground_depths(cam)
    step = road.paving
    if step <= 0 or cam.pixels_per_metre(cam.s + 20) * step < 3:
        return
    first = np.ceil(max(a, cam.s + z0) / step) * step
    s = np.arange(first, min(b, cam.s + 60.0), step)
    q = _flat_quads(s, s + 0.04, side * inner, side * outer, road.kerb)
    colour = road.pavement[(side + 1) // 2] * 0.8
    cv.fill(quads(cam, q), colour, disjoint=True)


def _parking(road, i):
    return road.parking[0] and i == 0 or road.parking[1] and i == len(road.lanes) - 1


def _kerb_face(cam, a, b, d, k):
    s = _samples(cam, a, b)
    if s is None:
        return None
    lo = np.stack([s, np.full_like(s, d), np.zeros_like(s)], -1)
    hi = np.stack([s, np.full_like(s, d), np.full_like(s, k)], -1)[::-1]
    return cam.project(np.concatenate([lo, hi]))


def _draw_paint(cv, cam, road, s_near, s_far):
    """Image-only detail on the asphalt: wear, repairs, tram rails, lines, crossings, shade."""
    # Darker tracks polished by tyres in every driving lane.
    worn = road.asphalt * 0.9
    tracks = [strip(cam, s_near - 5, min(s_far, cam.s + 120.0), d + o - 0.3, d + o + 0.3, 0.0)
              for i, (d, w) in enumerate(road.lanes) if not _parking(road, i) for o in (-0.8, 0.8)]
    cv.fill(tracks, worn, disjoint=True)
    for s0, s1, d0, d1, colour, alpha in road.patches:
        if s1 > s_near and s0 < s_far:
            cv.tint([strip(cam, s0, s1, d0, d1, 0.0)], colour, alpha)
    if road.tram is not None:
        for off in (-0.72, 0.72):
            for edge, colour in ((-0.04, (175, 175, 170)), (0.04, (40, 40, 40))):
                d = road.tram + off + edge
                cv.fill([strip(cam, s_near - 5, s_far, d - 0.03, d + 0.03, 0.0)], colour)

    length, period, phase = road.dash
    first = np.floor((s_near - phase) / period) * period + phase
    starts = np.arange(first, min(s_far, cam.s + 140.0), period)
    w = 0.13
    bounds = [d + wl / 2 for d, wl in road.lanes[:-1]]
    centre = road.centre
    polys = []
    for d in bounds:
        if centre is not None and abs(d - centre) < 0.3:
            continue
        q = _flat_quads(starts, starts + length, d - w / 2, d + w / 2, 0.0)
        polys += quads(cam, q)
    spans = _open_spans(road, s_near - 5, s_far)
    solid = []
    for a, b in spans:
        for d in (-road.half_width + 0.35, road.half_width - 0.35):
            solid.append(strip(cam, a, b, d - w / 2, d + w / 2, 0.0))
    cv.fill(polys + solid, road.paint, disjoint=True)
    if centre is not None:
        cl = [strip(cam, a, b, centre + dd - 0.06, centre + dd + 0.06, 0.0) for a, b in spans
              for dd in (-0.1, 0.1)]
        cv.fill(cl, road.centre_paint, disjoint=True)

    zebra = []
    for c0, c1 in road.crossings:
        for s0 in (c0 - 4.5, c1 + 0.5):
            d = np.arange(-road.half_width + 0.6, road.half_width - 0.6, 1.0)
            zebra += quads(cam, _flat_quads(s0, s0 + 4.0, d, d + 0.5, 0.0))
        zebra += quads(cam, _flat_quads(c0 - 5.5, c0 - 5.1, 0.1, road.half_width - 0.3, 0.0))
    cv.fill(zebra, road.paint, disjoint=True)

    shade = [strip(cam, s0, s1, d0, d1, y) for s0, s1, d0, d1, y in road.shadows]
    cv.tint(shade, (10, 12, 20), road.shadow_alpha)
