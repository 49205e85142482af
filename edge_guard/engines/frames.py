"""Frames for the parity checks and int8 calibration: a folder of images, or generated scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_guard.errors import DataError, UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp"}


def default_frame_size(patch: int, high: int) -> tuple:
    """Room for every displacement of a pair on both axes, about 2:1 like a road camera."""
    return patch + 2 * high, max(2 * patch, patch + 2 * high)


def generated_frames(count: int, size: tuple, seed: int = 0) -> list:
    """``count`` procedural street scenes (RGB uint8) of ``size`` (h, w), seeds seed, seed+1..."""
    from edge_guard.scenes import render_frame

    return [np.ascontiguousarray(render_frame(seed + i, size=tuple(size))[0]) for i in range(count)]


def folder_frames(folder, size: tuple | None = None, limit: int | None = None) -> list:
    """Images under ``folder`` (recursively, sorted) as RGB uint8, resized to ``size`` (h, w)."""
    import cv2

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder of images")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if limit:
        files = files[:limit]
    if not files:
        raise DataError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    frames = []
    for path in files:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DataError(f"{path} is not a readable image")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if size is not None and rgb.shape[:2] != tuple(size):
            rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        frames.append(np.ascontiguousarray(rgb))
    return frames


def check_frames_fit(frames: list, patch: int, low: int) -> None:
    for frame in frames:
        if min(frame.shape[:2]) < patch + low:
            raise UserError(f"a {frame.shape[0]}x{frame.shape[1]} frame is too small for {patch}px "
                            f"patch pairs (each side needs {patch + low}): resize the frames")
