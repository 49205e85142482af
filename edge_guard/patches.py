"""Random patches: overlapping pairs (the paper's getOverlapPatches, §3.2) and single patches
(the patch-vs-frame detector).

A pair is two s x s patches fully inside the frame whose top-lefts differ by (d_y, d_x),
with |d_y| and |d_x| each drawn uniformly from the integers in [low, high) and an
independent random sign per axis. The paper only states that the displacement lies in
(b_low, b_upper); the random sign is our choice so the second patch is not always below and
right of the first (an attacker learns nothing from the order). Every pair overlaps by
(s - |d_y|) x (s - |d_x|) pixels, which ``high <= size`` keeps at least 1 x 1.

Frames: a side of length ``dim`` must be at least ``size + low`` long, or no allowed
displacement fits and a UserError says so. A side of at least ``size + high - 1`` admits
every displacement and gets exactly the distribution above; a side in between admits only
magnitudes up to ``dim - size``, and the magnitude is then drawn uniformly from
[low, dim - size] (the part of the range that fits) instead of failing.

Draw order, for reproducibility with a seeded generator: magnitudes (y then x), signs
(y then x), then the position of the pair's bounding box (y then x), each as one vectorised
draw of k values.

Single patches (:func:`sample_patches`): k top-lefts, each uniform over the positions where an
s x s patch fits inside the frame, drawn as one (k, 2) draw (y then x per row).
"""

from __future__ import annotations

import numbers

import numpy as np

from .errors import UserError

#: Paper defaults (§5.2): patch size s, displacement bounds b_low, b_upper.
DEFAULT_SIZE = 512
DEFAULT_LOW = 32
DEFAULT_HIGH = 64


def scaled_bounds(patch: int) -> tuple[int, int]:
    """The paper's (b_low, b_high) = (32, 64) at s = 512, scaled to the patch size s (pixels)."""
    low = max(1, round(DEFAULT_LOW * patch / DEFAULT_SIZE))
    high = max(low + 1, round(DEFAULT_HIGH * patch / DEFAULT_SIZE))
    return low, high


def _int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UserError(f"{name} must be an integer, got {value!r}")
    return int(value)


def check_geometry(height: int, width: int, size: int, low: int, high: int) -> None:
    """Raise UserError unless s x s pairs displaced by [low, high) fit a height x width frame."""
    height, width = _int("height", height), _int("width", width)
    size, low, high = _int("patch size", size), _int("b_low", low), _int("b_high", high)
    if size < 1:
        raise UserError(f"patch size must be at least 1, got {size}")
    if low < 0:
        raise UserError(f"b_low must be >= 0, got {low}")
    if high <= low:
        raise UserError(f"b_high must be greater than b_low, got b_low={low}, b_high={high}")
    if high > size:
        raise UserError(
            f"b_high={high} exceeds the patch size {size}: patches displaced that far would not "
            f"overlap; use b_high <= {size}")
    if height < size + low or width < size + low:
        need = size + low
        raise UserError(
            f"frame {height}x{width} is too small for {size}x{size} patch pairs displaced by at "
            f"least {low} pixels: each side needs at least {need} (patch size + b_low); "
            f"resize the frame or use a smaller patch size")


def check_full_range(height: int, width: int, size: int, low: int, high: int) -> None:
    """check_geometry, and room for every displacement up to high - 1 (offline tools draw
    many pairs per frame and must never hit the edge-clamped case)."""
    check_geometry(height, width, size, low, high)
    need = size + high - 1
    if height < need or width < need:
        raise UserError(f"frame {height}x{width} is too small for {size}px patch pairs displaced by "
                        f"up to {high - 1}px: each side needs at least {need} (patch + b_high - 1); "
                        "use a larger --frame or smaller --patch/--b-high")


def sample_pairs(height: int, width: int, size: int = DEFAULT_SIZE, low: int = DEFAULT_LOW,
                 high: int = DEFAULT_HIGH, k: int = 1,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Draw k overlapping patch pairs in a height x width frame.

    Returns (k, 4) int32 rows [y1, x1, y2, x2]: the top-lefts of the first and second patch.
    ``rng`` defaults to ``np.random.default_rng()``, seeded from the OS so nobody can predict
    the patches; pass a seeded Generator only for tests and reproducible experiments.
    """
    check_geometry(height, width, size, low, high)
    k = _int("k", k)
    if k < 1:
        raise UserError(f"the number of patch pairs k must be at least 1, got {k}")
    if rng is None:
        rng = np.random.default_rng()
    dims = (int(height), int(width))
    top = np.array([min(high - 1, d - size) for d in dims], dtype=np.int64)
    mag = rng.integers(low, top + 1, size=(k, 2), dtype=np.int64)
    neg = rng.integers(0, 2, size=(k, 2), dtype=np.int64).astype(bool)
    # The pair's bounding box is (size + |d|) long on each axis; place it uniformly.
    room = np.array(dims, dtype=np.int64) - size - mag
    origin = rng.integers(0, room + 1, size=(k, 2), dtype=np.int64)
    first = np.where(neg, origin + mag, origin)
    second = np.where(neg, origin, origin + mag)
    return np.concatenate([first, second], axis=1).astype(np.int32)


def overlap_boxes(pairs: np.ndarray, size: int) -> np.ndarray:
    """Where each pair's overlap lies inside its two patches.

    ``pairs``: (k, 4) [y1, x1, y2, x2]. Returns (k, 6) int32 rows [ay, ax, by, bx, h, w]: the
    overlap is ``first[ay:ay+h, ax:ax+w]`` in the first patch's local coordinates and
    ``second[by:by+h, bx:bx+w]`` in the second's, with h = size - |d_y|, w = size - |d_x|.
    (Algorithm 1 lines 5-6 write strict inequalities; the overlap itself is meant.)
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 4)
    d = pairs[:, 2:4] - pairs[:, 0:2]
    if np.any(np.abs(d) >= size):
        raise UserError(f"a patch pair does not overlap: displacement must be below the patch size {size}")
    a = np.maximum(d, 0)
    b = np.maximum(-d, 0)
    hw = size - np.abs(d)
    return np.concatenate([a, b, hw], axis=1).astype(np.int32)


def check_patch_geometry(height: int, width: int, size: int) -> None:
    """Raise UserError unless an s x s patch fits a height x width frame."""
    height, width, size = _int("height", height), _int("width", width), _int("patch size", size)
    if size < 1:
        raise UserError(f"patch size must be at least 1, got {size}")
    if height < size or width < size:
        raise UserError(f"frame {height}x{width} is too small for {size}x{size} patches: resize the "
                        "frame or use a smaller patch size")


def sample_patches(height: int, width: int, size: int, k: int = 1,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """Draw k patches of size x size uniformly inside a height x width frame.

    Returns (k, 2) int32 rows [y, x]: top-lefts. ``rng`` defaults to an OS-seeded generator
    (the patches must stay unpredictable); seed it only for tests and experiments.
    """
    check_patch_geometry(height, width, size)
    k = _int("k", k)
    if k < 1:
        raise UserError(f"the number of patches k must be at least 1, got {k}")
    if rng is None:
        rng = np.random.default_rng()
    room = np.array([int(height) - size, int(width) - size], dtype=np.int64)
    return rng.integers(0, room + 1, size=(k, 2), dtype=np.int64).astype(np.int32)
