"""What things look like: plausible colours of real materials, surface texture, light and sensor.

Colours are drawn per object from the scene's generator (so they are part of the scene and
do not depend on the frame size). Texture, light and sensor noise are applied to the finished
frame from the frame's own generator: texture is smooth noise made on fixed grids and resized,
so it looks the same at every size; only the per-pixel sensor noise depends on the size.
The label palette is never used for painting: classes must be told apart by shape, position,
texture and context, as in real footage.
"""

import bisect
import itertools

import cv2
import numpy as np

from edge_guard.classes import ID


def _pick(rng, choices, weights=None):
    """One of the choices (by weight) as a float colour."""
    if weights is None:
        i = int(rng.random() * len(choices))
    else:
        i = bisect.bisect(tuple(itertools.accumulate(weights)), rng.random() * sum(weights))
    return np.array(choices[min(i, len(choices) - 1)], np.float64)


def jitter(rng, colour, spread=8.0, gain=(0.9, 1.1)):
    """A colour with a random brightness and a small random tint."""
    c = np.array(colour, np.float64) * rng.uniform(*gain)
    c += rng.normal(0, spread, 3)
    return c.clip(0, 255)


def asphalt(rng):
    g = rng.uniform(62, 125)
    return jitter(rng, (g, g * rng.uniform(0.98, 1.03), g * rng.uniform(1.0, 1.08)), 3, (1, 1))


def pavement(rng):
    base = _pick(rng, [(165, 163, 158), (180, 172, 155), (140, 138, 136), (160, 128, 112),
                       (150, 150, 140)], [4, 3, 3, 1, 2])
    return jitter(rng, base, 5, (0.8, 1.12))


def curb(rng):
    return jitter(rng, (175, 173, 168), 5, (0.75, 1.1))


def lane_paint(rng, yellow=False):
    base = (215, 180, 60) if yellow else (225, 225, 220)
    return jitter(rng, base, 6, (0.85, 1.05))


def facade(rng):
    base = _pick(rng, [
        (205, 190, 160), (215, 208, 195), (150, 146, 140), (155, 82, 60), (125, 95, 75),
        (212, 196, 130), (200, 160, 150), (160, 170, 175), (85, 88, 92), (185, 175, 165),
        (110, 105, 100),
    ], [4, 3, 3, 3, 2, 1, 1, 1, 2, 3, 2])
    return jitter(rng, base, 6, (0.75, 1.1))


def glass(rng):
    base = _pick(rng, [(45, 55, 65), (70, 85, 100), (95, 110, 125), (35, 38, 42), (120, 135, 150)])
    return jitter(rng, base, 5, (0.8, 1.2))


def concrete(rng):
    base = _pick(rng, [(160, 158, 150), (175, 165, 145), (130, 128, 125), (150, 110, 90)],
                 [3, 2, 2, 1])
    return jitter(rng, base, 6, (0.8, 1.1))


def fence_material(rng):
    base = _pick(rng, [(120, 90, 60), (95, 100, 95), (60, 75, 60), (140, 140, 135), (50, 50, 52)])
    return jitter(rng, base, 6, (0.8, 1.15))


def foliage(rng):
    base = _pick(rng, [(55, 85, 35), (40, 70, 35), (75, 100, 45), (60, 80, 50), (90, 105, 50)])
    return jitter(rng, base, 5, (0.75, 1.2))


def grass(rng):
    base = _pick(rng, [(110, 140, 65), (130, 150, 75), (150, 145, 95), (120, 100, 75),
                       (95, 125, 60)], [4, 3, 2, 1, 3])
    return jitter(rng, base, 5, (0.8, 1.15))


def bark(rng):
    return jitter(rng, (80, 65, 50), 6, (0.7, 1.2))


def pole_metal(rng):
    base = _pick(rng, [(130, 132, 130), (95, 98, 100), (45, 60, 50), (40, 40, 42), (160, 160, 155)])
    return jitter(rng, base, 4, (0.85, 1.15))


def car_paint(rng):
    base = _pick(rng, [
        (225, 225, 222), (30, 30, 32), (170, 172, 175), (105, 108, 112), (150, 25, 25),
        (35, 55, 120), (25, 35, 60), (45, 80, 55), (190, 180, 150), (220, 180, 30),
        (120, 30, 40), (90, 120, 160),
    ], [5, 5, 5, 4, 2, 2, 2, 1, 1, 0.5, 1, 1])
    return jitter(rng, base, 4, (0.85, 1.12))


def cloth(rng):
    base = _pick(rng, [
        (30, 30, 35), (60, 60, 65), (35, 45, 80), (120, 120, 125), (200, 200, 195),
        (140, 40, 40), (60, 90, 60), (150, 120, 90), (90, 60, 40), (200, 170, 60),
        (70, 100, 150),
    ], [5, 3, 3, 2, 2, 1, 1, 1, 1, 0.5, 1])
    return jitter(rng, base, 8, (0.8, 1.2))


def skin(rng):
    base = _pick(rng, [(230, 190, 160), (200, 150, 115), (150, 105, 75), (95, 65, 45)])
    return jitter(rng, base, 5, (0.85, 1.1))


def hair(rng):
    base = _pick(rng, [(30, 25, 20), (80, 55, 35), (150, 120, 80), (120, 120, 120)], [4, 3, 1, 1])
    return jitter(rng, base, 5, (0.8, 1.2))


def sky_colours(rng):
    """(zenith, horizon) colours of a clear, hazy or overcast sky."""
    kind = rng.choice(3, p=[0.5, 0.25, 0.25])
    if kind == 0:
        top = jitter(rng, (70, 120, 195), 8, (0.85, 1.1))
        low = jitter(rng, (175, 200, 225), 6, (0.9, 1.08))
    elif kind == 1:
        top = jitter(rng, (140, 165, 195), 6, (0.9, 1.1))
        low = jitter(rng, (205, 210, 212), 5, (0.9, 1.05))
    else:
        g = rng.uniform(150, 215)
        top = jitter(rng, (g * 0.93, g * 0.96, g), 3, (1, 1))
        low = jitter(rng, (g + 15, g + 15, g + 18), 3, (1, 1))
    return top, low


def shade(colour, factor):
    return np.clip(np.asarray(colour, np.float64) * factor, 0, 255)


# Surface texture per class: amplitude of coarse, medium and fine smooth noise, multiplying
# the brightness (foliage and grass are leafy, sky is smooth, paint on vehicles is glossy).
_TEXTURE = np.zeros((256, 3), np.float32)
_TEXTURE[:, :] = (0.03, 0.02, 0.02)
for _name, _amp in {
    "road": (0.07, 0.05, 0.07), "sidewalk": (0.05, 0.05, 0.06), "building": (0.05, 0.04, 0.04),
    "wall": (0.07, 0.06, 0.07), "fence": (0.04, 0.04, 0.05), "pole": (0.03, 0.02, 0.03),
    "traffic light": (0.02, 0.02, 0.02), "traffic sign": (0.02, 0.02, 0.02),
    "vegetation": (0.14, 0.22, 0.22), "terrain": (0.10, 0.12, 0.14), "sky": (0.02, 0.01, 0.0),
    "person": (0.03, 0.04, 0.04), "rider": (0.03, 0.04, 0.04), "car": (0.02, 0.02, 0.02),
    "truck": (0.03, 0.02, 0.02), "bus": (0.02, 0.02, 0.02), "train": (0.03, 0.02, 0.02),
    "motorcycle": (0.02, 0.03, 0.03), "bicycle": (0.02, 0.03, 0.03),
}.items():
    _TEXTURE[ID[_name]] = _amp
# Leafy surfaces also vary in hue (yellow-green to blue-green).
_CHROMA = np.zeros(256, np.float32)
_CHROMA[ID["vegetation"]] = 0.12
_CHROMA[ID["terrain"]] = 0.08

_GRIDS = ((6, 12), (24, 48), (96, 192), (200, 400))


def _noise(rng, grid, size):
    h, w = size
    field = rng.standard_normal(grid).astype(np.float32)
    interp = cv2.INTER_CUBIC if grid[0] < h else cv2.INTER_AREA
    return cv2.resize(field, (w, h), interpolation=interp)


def finish(image: np.ndarray, labels: np.ndarray, rng, noise_rng) -> np.ndarray:
    """Texture, clouds, lighting, optics and sensor noise on a drawn (H, W, 3) uint8 frame.

    ``rng`` sets the look (the same for every frame of a clip); ``noise_rng`` the sensor noise.
    """
    h, w = labels.shape
    coarse, medium, fine, grain, hue = (_noise(rng, g, (h, w)) for g in _GRIDS + _GRIDS[2:3])
    # Draws are Python floats so that float32 arrays stay float32.
    amp = _TEXTURE * np.float32(rng.uniform(0.6, 1.4))
    tex = (1.0 + cv2.LUT(labels, amp[:, 0]) * coarse + cv2.LUT(labels, amp[:, 1]) * medium
           + cv2.LUT(labels, amp[:, 2]) * (0.6 * fine + 0.4 * grain))
    vignette = float(rng.uniform(0.0, 0.35))
    if vignette > 0.02:
        yy = (np.arange(h, dtype=np.float32) / h - 0.5)[:, None] * 2
        xx = (np.arange(w, dtype=np.float32) / w - 0.5)[None, :] * 2
        tex *= 1.0 - vignette * 0.5 * (xx * xx + yy * yy)
    chroma = cv2.LUT(labels, _CHROMA) * hue
    img = cv2.multiply(image.astype(np.float32),
                       cv2.merge([tex * (1.0 + chroma), tex, tex * (1.0 - chroma)]))

    # Clouds: soft white blobs where the sky shows (only rows that hold sky).
    cloud_amount, cloud_cut = float(rng.uniform(0.0, 0.8)), float(rng.uniform(-0.2, 0.8))
    white = float(rng.uniform(215, 250))
    sky = labels == ID["sky"]
    rows = np.flatnonzero(sky.any(1))
    if cloud_amount > 0.05 and len(rows):
        r = rows[-1] + 1
        cloud = np.clip(coarse[:r] * 0.7 + medium[:r] * 0.5 - cloud_cut, 0, 1)
        cloud *= sky[:r] * np.float32(cloud_amount)
        img[:r] += cloud[..., None] * (white - img[:r])

    # Exposure and white balance, then haze towards a bright veil.
    gain = (rng.uniform(0.75, 1.2) * rng.uniform(0.94, 1.06, 3)).astype(np.float32)
    haze, veil = float(rng.uniform(0.0, 0.18)), float(rng.uniform(170, 225))
    gain *= np.float32(1 - haze)
    img *= gain
    img += np.float32(haze * veil)

    # Optics blur, tone curve, sensor noise (the only size-dependent randomness).
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    sigma = float(rng.uniform(0.25, 0.9)) * w / 1024
    if sigma > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    gamma = rng.uniform(0.85, 1.15)
    curve = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma + 0.5, 0, 255).astype(np.uint8)
    out = cv2.LUT(out, curve)
    noise_sigma = rng.uniform(0.8, 4.5)
    # Sum of two uniform bytes: a cheap bell-shaped noise (std 104 before scaling), in
    # integers scaled by k/256, added with saturation.
    raw = np.frombuffer(noise_rng.bytes(2 * h * w * 3), np.uint8).reshape(2, h, w, 3)
    k = int(round(noise_sigma / 104.0 * 256))
    noise = (raw[0].astype(np.int16) + raw[1] - 255) * k >> 8
    return cv2.add(out, noise, dtype=cv2.CV_8U)
