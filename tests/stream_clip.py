"""The clip the stream tests run on: solid colours (consistent) with noise frames (flagged)."""

import cv2
import numpy as np

FRAMES, H, W = 30, 128, 256
NOISE = {10, 11, 12, 13, 20}  # 3 of 5 flagged from frame 12: one alarm episode


def clip_frame(i: int) -> np.ndarray:
    """Frame ``i`` (BGR uint8): noise at NOISE, else one colour."""
    if i in NOISE:
        return np.random.default_rng(i).integers(0, 256, (H, W, 3), dtype=np.uint8)
    return np.full((H, W, 3), (8 * i, 255 - 8 * i, 100), np.uint8)


def write_clip(path):
    """The FRAMES frames as an FFV1 video (lossless, so noise stays noise)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 30.0, (W, H))
    assert writer.isOpened()
    for i in range(FRAMES):
        writer.write(clip_frame(i))
    writer.release()
    return path
