"""Camera frames into the shape the detector works on: uint8 (H, W, 3), then the bundle's size.

Accepted: uint8 (H, W, 3) in the caller's channel order, grey (H, W) or (H, W, 1) and
four-channel (H, W, 4, BGRA or RGBA: alpha dropped). Refused with one line: any other dtype
(a float frame's range is ambiguous, and NaN has no colour), other ranks or channel counts,
empty frames.
"""

from __future__ import annotations

import cv2
import numpy as np

from .errors import UserError


def as_colour(frame) -> np.ndarray:
    """(H, W, 3) uint8 view or copy of ``frame`` in the same channel order; UserError otherwise."""
    if not isinstance(frame, np.ndarray):
        raise UserError(f"a frame is a NumPy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        hint = ""
        if frame.dtype.kind == "f":
            hint = (" (it holds NaN)" if np.isnan(frame).any() else "") + \
                "; convert it, e.g. np.clip(frame * 255, 0, 255).astype(np.uint8) for [0, 1] floats"
        raise UserError(f"a frame must be uint8, got {frame.dtype}{hint}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
        raise UserError(f"a frame is (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise UserError(f"the frame is empty (shape {frame.shape})")
    if frame.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        # Drops alpha; the same conversion turns RGBA into RGB.
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_BGRA2BGR)
    return frame


def resize(frame: np.ndarray, size, out: np.ndarray | None = None) -> np.ndarray:
    """Resize (H, W, 3) to ``size`` = (height, width): INTER_AREA when shrinking, else bilinear.

    Returns ``frame`` itself when it already has that size. Calibration resizes through this
    function too, so frames are scored at the resolution the threshold was chosen on.
    """
    height, width = (int(v) for v in size)
    h, w = frame.shape[:2]
    if (h, w) == (height, width):
        return frame
    frame = np.ascontiguousarray(frame)  # OpenCV refuses negative strides (e.g. [:, :, ::-1])
    shrink = height <= h and width <= w
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    if out is not None and out.shape == (height, width, 3) and out.dtype == np.uint8:
        return cv2.resize(frame, (width, height), dst=out, interpolation=interp)
    return cv2.resize(frame, (width, height), interpolation=interp)


def swap_rb(frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """BGR <-> RGB of a whole (H, W, 3) frame, into ``out`` when it fits.

    One SIMD pass over the frame, then plain row copies when cropping: ~20x faster than
    reversing the channels patch by patch (2K patches cover the frame several times over).
    """
    frame = np.ascontiguousarray(frame)
    if out is not None and out.shape == frame.shape and out.dtype == np.uint8:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=out)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
