"""Camera conditions a benign frame meets in service: dusk, glare, sensor noise, compression, blur.

Two uses, one set of operations so they cannot drift apart:

- ``CONDITIONS``: the fixed conditions the evaluation measures false alarms under (issue 22):
  JPEG quality 30, Gaussian noise sigma 8, brightness 0.4x / 0.25x / 1.5x, a 7-pixel
  horizontal motion blur. ``apply_condition(name, image, rng)``.
- ``photometric(image, rng, p)``: the training augmentation that makes the model hold up under
  them (random gain 0.2x..1.6x, noise sigma 0..12, JPEG 20..95, motion blur 3..9 px).

Images are uint8 (H, W, 3) in either channel order (every operation treats channels alike,
and OpenCV's JPEG round trip is symmetric in them); the result is uint8 of the same shape.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def gain(image: np.ndarray, factor: float) -> np.ndarray:
    """Brightness times ``factor`` (exposure), clipped and rounded to 8 bits."""
    return np.clip(image.astype(np.float32) * np.float32(factor) + 0.5, 0, 255).astype(np.uint8)


def noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian sensor noise of std ``sigma`` (8-bit levels), independent per value."""
    out = image.astype(np.float32) + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """An encode/decode round trip at JPEG ``quality`` (1..100)."""
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def motion_blur(image: np.ndarray, length: int) -> np.ndarray:
    """Horizontal motion blur over ``length`` pixels (a box along the row; camera panning)."""
    length = max(1, int(length))
    kernel = np.full((1, length), 1.0 / length, np.float32)
    return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT)


#: name -> (description, function(image, rng) -> image)
CONDITIONS = {
    "jpeg30": ("JPEG quality 30", lambda x, rng: jpeg(x, 30)),
    "noise8": ("Gaussian noise sigma 8", lambda x, rng: noise(x, 8.0, rng)),
    "dark0.4": ("brightness 0.4x (dusk)", lambda x, rng: gain(x, 0.4)),
    "dark0.25": ("brightness 0.25x (night)", lambda x, rng: gain(x, 0.25)),
    "bright1.5": ("brightness 1.5x (glare)", lambda x, rng: gain(x, 1.5)),
    "blur7": ("7-pixel motion blur", lambda x, rng: motion_blur(x, 7)),
}


def apply_condition(name: str, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """``image`` under the condition ``name`` ('clean' returns it unchanged)."""
    if name == "clean":
        return image
    if name not in CONDITIONS:
        raise ValueError(f"unknown condition {name!r}: choose clean, {', '.join(CONDITIONS)}")
    return CONDITIONS[name][1](image, rng if rng is not None else np.random.default_rng(0))


def photometric(image: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """Training augmentation: each of gain, noise, JPEG and motion blur applied with
    probability ``p`` (independently, in camera order: exposure, sensor, blur, compression).

    Gain is log-uniform in [0.2, 1.6] (dusk to glare), noise sigma uniform in [0, 12], blur
    3..9 px, JPEG quality 20..95. ``p`` = 0 returns the image unchanged (no draw is made).
    """
    if p <= 0:
        return image
    do = rng.random(4) < p
    factors = (math.exp(rng.uniform(math.log(0.2), math.log(1.6))), rng.uniform(0.0, 12.0),
               int(rng.integers(3, 10)), int(rng.integers(20, 96)))
    if do[0]:
        image = gain(image, factors[0])
    if do[1]:
        image = noise(image, factors[1], rng)
    if do[2]:
        image = motion_blur(image, factors[2])
    if do[3]:
        image = jpeg(image, factors[3])
    return image
