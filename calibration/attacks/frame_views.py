"""Adaptive views against the patch-vs-frame detector (``frame``).

That detector draws K single s x s patches uniformly in the frame (``sample_patches``),
segments each alone and compares its labels with the whole frame's own labels on the same
pixels. An attack tuned for the whole frame is caught because its crops fall back to benign
labels; an adaptive attacker, who knows s and K but not the positions, draws its own patches
afresh every step with the same sampler (expectation over positions):

- ``FrameViews`` (``frame``): K_attack patches per step, each segmented alone toward the
  matching crop of the target, beside the frame's own loss toward the target. It stops when
  the frame and every patch of the step reach the threshold on target.
- ``FrameAgreeViews`` (``frame-agree``): the frame alone goes toward the target; K_attack
  patches per step are pushed toward the frame's CURRENT labels on their pixels (weight
  ``weight``), which is the very comparison the detector makes. It stops when the frame is on
  target and every patch of the step agrees with the frame's labels, both at the threshold.
"""

from __future__ import annotations

import numpy as np
import torch

from edge_guard.patches import DEFAULT_SIZE, sample_patches

from .views import View, Views, _crop


def fit_patch(height: int, width: int, size: int) -> int:
    """The detector's patch side, shrunk to the frame's shorter side when the frame is smaller
    (small test images; ``fit_geometry`` with no displacement); unchanged for frames that fit."""
    return max(1, min(int(size), int(height), int(width)))


class _SinglePatches(Views):
    """K single patches per step, drawn with the frame detector's sampler."""

    def __init__(self, k: int, size: int = DEFAULT_SIZE):
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        if size < 1:
            raise ValueError(f"patch size must be >= 1, got {size}")
        self.k, self.size = int(k), int(size)

    def tops(self, n: int, h: int, w: int, rng) -> tuple:
        """((n, k, 2) int top-lefts [y, x] per image, side s); ``rng``: one Generator for all
        images, or a list of one per image (an image's draws then ignore its batch)."""
        s = fit_patch(h, w, self.size)
        rngs = list(rng) if isinstance(rng, (list, tuple)) else [rng] * n
        if len(rngs) != n:
            raise ValueError(f"need one generator per image ({n}), got {len(rngs)}")
        return np.stack([sample_patches(h, w, s, self.k, r) for r in rngs]), s

    def settings(self):
        return {"adaptive": self.name, "k_attack": self.k, "patch_size": self.size}


class FrameViews(_SinglePatches):
    """K patches per step, each toward the target's crop (the frame's loss is the engine's)."""

    name = "frame"

    def groups(self, images, target, valid, rng):
        if self.k == 0:
            return
        n, _, h, w = images.shape
        tops, s = self.tops(n, h, w, rng)
        for j in range(self.k):  # one patch per group: memory stays at one patch's graph
            t = tops[:, j]
            yield [View(_crop(images, t, s), _crop(target, t, s), _crop(valid, t, s), t)]


class FrameAgreeViews(_SinglePatches):
    """K patches per step, each toward the frame's current labels on its pixels.

    Toward the frame's detached LABELS with the attack's own criterion (DAG's margin or
    Houdini's loss), not a KL to the frame's softmax: the detector compares argmax labels, and
    the criterion is zero exactly where a patch's labels already agree, so the whole step goes
    to the pixels the detector would count as disagreeing; a KL would keep pulling agreeing
    pixels toward the frame's (mid-attack, soft) distribution, and would leave the step rules
    and Houdini's per-view normalisation with a loss of another scale. The frame's side is
    detached: the frame is driven by the target alone, the patches follow it.
    """

    name = "frame-agree"
    needs_frame = True

    def __init__(self, k: int, size: int = DEFAULT_SIZE, weight: float = 1.0):
        super().__init__(k, size)
        if not (weight >= 0 and np.isfinite(weight)):
            raise ValueError(f"agreement weight must be finite and >= 0, got {weight}")
        self.weight = float(weight)

    def groups(self, images, target, valid, rng, frame=None):
        """``frame``: (N, H, W) int64 the frame's labels at ``images`` (the engine's)."""
        if self.k == 0:
            return
        if frame is None or tuple(frame.shape) != tuple(target.shape):
            raise ValueError("frame-agree views need the frame's labels (N, H, W) as frame=")
        n, _, h, w = images.shape
        tops, s = self.tops(n, h, w, rng)
        labels = frame.detach().long()
        # Every pixel counts: the detector compares whole patches, ignored target pixels too.
        every = torch.ones(n, s, s, dtype=torch.bool, device=labels.device)
        for j in range(self.k):
            t = tops[:, j]
            yield [View(_crop(images, t, s), _crop(labels, t, s), every, t, self.weight)]

    def settings(self):
        return {**super().settings(), "agree_weight": self.weight}
