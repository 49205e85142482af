"""Offline detector scores, computed by the runtime's own code with a PyTorch model.

Spatial consistency (§3.2): frames go through :class:`edge_guard.guard.Guard` built with
``Guard.from_function``: the same resize, pair sampling, crop and mIoU code the vehicle runs,
with the PyTorch model in place of the inference backend. A threshold calibrated here
therefore means the same thing on the vehicle; only the model's arithmetic differs (PyTorch
vs the exported graph, checked at export to agree on >= 99.9% of labels).

Scale consistency (§4, §5.3, the paper's baseline): the mIoU between the prediction of a
frame and that of its Gaussian-blurred copy.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from edge_guard.consistency import miou
from edge_guard.errors import UserError
from edge_guard.guard import Guard, Verdict

from .models.fusion import fuse_segmenter
from .models.segmenter import labels_of

#: The paper's blur standard deviations for the scale detector (§5.3).
SCALE_STDS = (0.5, 3.0, 5.0)


def torch_segment(segmenter, device="cpu", max_batch: int = 16):
    """The callable the runtime expects: (B, h, w, 3) uint8 RGB -> (B, h, w) int32 labels.

    ``segmenter`` maps RGB float (N, 3, h, w) in [0, 1] to logits (N, C, h, w); the pixels are
    scaled by 1/255 exactly as the exported graph does before it normalises. Batches larger
    than ``max_batch`` run in chunks (memory), which does not change the labels. BNs are
    folded into the convolutions first, as the exported graph has them.
    """
    segmenter = fuse_segmenter(segmenter.eval().to(device))

    def segment(batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch)
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[3] != 3:
            raise UserError(f"patches must be uint8 (B, h, w, 3), got {batch.dtype} {batch.shape}")
        out = []
        with torch.no_grad():
            for start in range(0, len(batch), max_batch):
                x = torch.from_numpy(batch[start:start + max_batch]).to(device)
                x = x.permute(0, 3, 1, 2).float() / 255.0
                out.append(labels_of(segmenter(x)).to(torch.int32).cpu().numpy())
        return np.concatenate(out) if out else np.empty(batch.shape[:3], np.int32)

    return segment


def score_frames(guard: Guard, images, progress=None) -> list[Verdict]:
    """The runtime's verdict of every RGB uint8 frame of ``images`` (any iterable), in order.

    ``progress``: an optional tqdm bar, advanced once per frame.
    """
    verdicts = []
    for image in images:
        verdicts.append(guard.check(image, rgb=True))
        if progress is not None:
            progress.update(1)
    return verdicts


def blur_ksize(std: float) -> int:
    """Gaussian kernel side for ``std``: 2 * ceil(3 * std) + 1 (odd, covers +-3 std)."""
    if not (std > 0 and math.isfinite(std)):
        raise UserError(f"the blur std must be a positive number, got {std!r}")
    return 2 * math.ceil(3 * std) + 1


def gaussian_blur(image: np.ndarray, std: float) -> np.ndarray:
    """(H, W, 3) uint8 -> its Gaussian blur with ``std`` pixels (OpenCV, reflect-101 borders)."""
    k = blur_ksize(std)
    return cv2.GaussianBlur(np.ascontiguousarray(image), (k, k), sigmaX=std, sigmaY=std)


def scale_scores(segment_full, image: np.ndarray, stds=SCALE_STDS, num_classes: int = 19) -> dict:
    """{std: mIoU(prediction of ``image``, prediction of its blur with std)} (§5.3).

    ``segment_full``: (B, H, W, 3) uint8 RGB -> (B, H, W) integer labels (e.g.
    :func:`torch_segment`); the frame and its blurs go through it as one batch.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise UserError(f"a frame must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    stds = [float(s) for s in stds]
    batch = np.stack([image] + [gaussian_blur(image, s) for s in stds])
    labels = np.asarray(segment_full(batch))
    return {s: miou(labels[0], labels[i + 1], num_classes) for i, s in enumerate(stds)}


def scale_score(segment_full, image: np.ndarray, std: float, num_classes: int = 19) -> float:
    """mIoU between the prediction of ``image`` and of its Gaussian blur with ``std``."""
    return scale_scores(segment_full, image, (std,), num_classes)[float(std)]
