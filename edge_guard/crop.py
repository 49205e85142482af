"""Cropping patches into the model's input batch: the NumPy reference of patch_crop.cu.

Patches are given by their top-lefts: (n, 2) rows [y, x] (:func:`crop_tops`; the frame
detector's patches), or as pairs (k, 4) rows [y1, x1, y2, x2] (:func:`crop_patches`), where
pair i gives batch entries 2i (its first patch) and 2i+1 (its second). Two layouts:

- uint8 NHWC (preferred: the ONNX graph normalises, so the crop is a plain copy);
- normalised NCHW float32/float16 for graphs that expect normalised input:
  ``out[n, c] = float32(float32(pixel * scale[c]) + bias[c])`` with the float32 coefficients
  of :func:`normalisation_coefficients`. The kernel rounds the same two steps (no fused
  multiply-add), so both paths agree bit for bit.

``swap_rb`` reverses the channel order (BGR camera frames -> RGB model input, or back).
"""

from __future__ import annotations

import numpy as np

from .errors import UserError


def _check(frame: np.ndarray, pairs: np.ndarray, size: int, width: int = 4) -> np.ndarray:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise UserError(f"frame must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
    pairs = np.asarray(pairs).reshape(-1, width)
    h, w = frame.shape[:2]
    ys, xs = pairs[:, 0::2], pairs[:, 1::2]
    if pairs.size and (ys.min() < 0 or xs.min() < 0 or ys.max() + size > h or xs.max() + size > w):
        raise UserError(f"a {size}x{size} patch falls outside the {h}x{w} frame")
    return pairs


def _tops(pairs: np.ndarray):
    """Top-lefts in batch order: pair i -> entries 2i, 2i+1."""
    return pairs.reshape(-1, 2)


def crop_patches(frame: np.ndarray, pairs: np.ndarray, size: int, out: np.ndarray | None = None,
                 swap_rb: bool = False) -> np.ndarray:
    """(H, W, 3) uint8 frame, (k, 4) pairs -> (2k, size, size, 3) uint8 batch."""
    return crop_tops(frame, _tops(_check(frame, pairs, size)), size, out, swap_rb)


def crop_tops(frame: np.ndarray, tops: np.ndarray, size: int, out: np.ndarray | None = None,
              swap_rb: bool = False) -> np.ndarray:
    """(H, W, 3) uint8 frame, (n, 2) top-lefts -> (n, size, size, 3) uint8 batch."""
    tops = _check(frame, tops, size, width=2)
    n = len(tops)
    if out is None:
        out = np.empty((n, size, size, 3), np.uint8)
    elif out.shape != (n, size, size, 3) or out.dtype != np.uint8:
        raise UserError(f"out must be uint8 {(n, size, size, 3)}, got {out.dtype} {out.shape}")
    src = frame[:, :, ::-1] if swap_rb else frame
    for i, (y, x) in enumerate(tops):
        out[i] = src[y:y + size, x:x + size]
    return out


def normalisation_coefficients(mean, std) -> tuple[np.ndarray, np.ndarray]:
    """float32 (scale, bias) per output channel for ``(pixel / 255 - mean) / std``.

    mean and std are in [0, 1] units (torchvision convention), in the model's channel order.
    """
    mean = np.asarray(mean, np.float64).reshape(-1)
    std = np.asarray(std, np.float64).reshape(-1)
    if mean.shape != (3,) or std.shape != (3,):
        raise UserError("mean and std need 3 values each")
    if np.any(std <= 0):
        raise UserError(f"std must be positive, got {std.tolist()}")
    return (1.0 / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32)


def crop_patches_nchw(frame: np.ndarray, pairs: np.ndarray, size: int, mean, std,
                      swap_rb: bool = False, dtype=np.float32,
                      out: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8 frame -> (2k, 3, size, size) normalised float32 or float16 batch."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float16):
        raise UserError(f"normalised patches are float32 or float16, not {dtype}")
    pairs = _check(frame, pairs, size)
    scale, bias = normalisation_coefficients(mean, std)
    n = 2 * len(pairs)
    if out is None:
        out = np.empty((n, 3, size, size), dtype)
    elif out.shape != (n, 3, size, size) or out.dtype != dtype:
        raise UserError(f"out must be {dtype} {(n, 3, size, size)}, got {out.dtype} {out.shape}")
    src = frame[:, :, ::-1] if swap_rb else frame
    for i, (y, x) in enumerate(_tops(pairs)):
        patch = src[y:y + size, x:x + size].transpose(2, 0, 1).astype(np.float32)
        patch *= scale[:, None, None]
        patch += bias[:, None, None]
        out[i] = patch  # float32 -> float16 rounds to nearest even, as the kernel's cvt.rn
    return out
