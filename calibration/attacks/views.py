"""Expectation-over-transformation views for adaptive attacks (paper §5.4).

A ``Views`` object gives, every attack step, extra (image view, target view) pairs whose
losses are added to the full image's loss. Each view is a differentiable function of the
attacked images, so the gradient flows back through the blur or the crop. Views come in
groups: a group is forwarded and back-propagated together and then freed (memory stays at
one group), and ``coupling`` may add a loss tying the members of a group together.

- ``BlurViews``: the scale detector's Gaussian blurs (std 0.5, 3, 5): the image must reach
  the target both as is and blurred (the paper's extra convolution layer, one per std).
- ``PatchViews``: the paper's strongest adaptive adversary against the spatial detector:
  K patches of the detector's size, drawn afresh every step with the detector's sampler,
  each segmented on its own toward the matching crop of the target.
- ``PairViews`` (ours, stronger): K overlapping patch PAIRS drawn exactly as the detector
  draws them; both patches go toward the target, and a symmetric KL between the two
  patches' softmaxes on their overlap pushes them to agree where the detector compares them,
  even on pixels not yet on target.
- ``FrameViews`` and ``FrameAgreeViews`` (frame_views.py): against the patch-vs-frame detector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from edge_guard.patches import DEFAULT_HIGH, DEFAULT_LOW, DEFAULT_SIZE, sample_pairs

from .blur import gaussian_blur


@dataclass
class View:
    images: torch.Tensor  # (N, 3, h, w), a differentiable function of the attacked images
    target: torch.Tensor  # (N, h, w) int64
    valid: torch.Tensor  # (N, h, w) bool
    boxes: Optional[np.ndarray] = None  # (N, 2) top-left of a crop, per image
    weight: float = 1.0  # multiplies this view's criterion (not its stop test)


class Views:
    """Base: no extra views (a plain attack).

    Views whose ``needs_frame`` is true get one more argument, ``frame``: the frame's labels
    (N, H, W) int64 at the current (quantised) iterate, detached; the others never see it."""

    name = "none"
    needs_frame = False

    def groups(self, images: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
               rng: np.random.Generator) -> Iterator[list]:
        return iter(())

    def coupling(self, logits: Sequence[torch.Tensor], group: Sequence[View]) -> Optional[torch.Tensor]:
        """(N,) extra loss on a group's logits, or None."""
        return None

    def settings(self) -> dict:
        return {"adaptive": self.name}


class BlurViews(Views):
    """The image blurred with each std must also reach the target."""

    name = "scale"

    def __init__(self, stds: Sequence[float] = (0.5, 3.0, 5.0)):
        if not stds or min(stds) <= 0:
            raise ValueError(f"blur stds must be positive, got {stds}")
        self.stds = tuple(float(s) for s in stds)

    def groups(self, images, target, valid, rng):
        for std in self.stds:
            yield [View(gaussian_blur(images, std), target, valid)]

    def settings(self):
        return {"adaptive": self.name, "stds": list(self.stds)}


def fit_geometry(height: int, width: int, size: int, low: int, high: int) -> tuple:
    """(size, low, high) of the detector, shrunk proportionally when the frame is smaller
    than size + low (small test images); unchanged for frames that fit."""
    f = min(1.0, min(height, width) / float(size + low))
    if f >= 1.0:
        return size, low, high
    s = max(2, int(size * f))
    lo = min(int(low * f), s - 1)
    hi = min(max(lo + 1, int(high * f)), s)
    lo = min(lo, hi - 1)
    if min(height, width) < s + lo:
        s = min(height, width) - lo
    return s, lo, hi


def _crop(x: torch.Tensor, tops: np.ndarray, size: int) -> torch.Tensor:
    """(N, ...) x, (N, 2) top-lefts -> (N, ..., size, size) one crop per image."""
    return torch.stack([x[i, ..., y:y + size, c:c + size] for i, (y, c) in enumerate(tops.tolist())])


class _PatchSampling(Views):
    def __init__(self, k: int, size: int = DEFAULT_SIZE, low: int = DEFAULT_LOW, high: int = DEFAULT_HIGH):
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        self.k, self.size, self.low, self.high = int(k), int(size), int(low), int(high)

    def _pairs(self, n: int, h: int, w: int, count: int, rng) -> tuple:
        """(n, count, 4) pairs per image, drawn with the detector's sampler, and the size;
        ``rng``: one Generator for all images, or a list of one per image."""
        s, lo, hi = fit_geometry(h, w, self.size, self.low, self.high)
        rngs = list(rng) if isinstance(rng, (list, tuple)) else [rng] * n
        if len(rngs) != n:
            raise ValueError(f"need one generator per image ({n}), got {len(rngs)}")
        pairs = np.stack([sample_pairs(h, w, s, lo, hi, count, r) for r in rngs])
        return pairs, s

    def settings(self):
        return {"adaptive": self.name, "k_attack": self.k, "patch_size": self.size,
                "b_low": self.low, "b_high": self.high}


class PatchViews(_PatchSampling):
    """K single patches per step: both patches of ceil(K/2) detector pairs, first K kept."""

    name = "spatial"

    def groups(self, images, target, valid, rng):
        if self.k == 0:
            return
        n, _, h, w = images.shape
        pairs, s = self._pairs(n, h, w, (self.k + 1) // 2, rng)
        tops = pairs.reshape(n, -1, 2)[:, :self.k]  # [y1, x1, y2, x2] -> two top-lefts per pair
        for j in range(self.k):
            t = tops[:, j]
            yield [View(_crop(images, t, s), _crop(target, t, s), _crop(valid, t, s), t)]


class PairViews(_PatchSampling):
    """K overlapping pairs per step, toward the target and consistent on their overlap."""

    name = "spatial-pairs"

    def __init__(self, k: int, size: int = DEFAULT_SIZE, low: int = DEFAULT_LOW,
                 high: int = DEFAULT_HIGH, weight: float = 1.0):
        super().__init__(k, size, low, high)
        self.weight = float(weight)

    def groups(self, images, target, valid, rng):
        if self.k == 0:
            return
        n, _, h, w = images.shape
        pairs, s = self._pairs(n, h, w, self.k, rng)
        for j in range(self.k):
            group = []
            for t in (pairs[:, j, 0:2], pairs[:, j, 2:4]):
                group.append(View(_crop(images, t, s), _crop(target, t, s), _crop(valid, t, s), t))
            yield group

    def coupling(self, logits, group):
        if self.weight == 0:
            return None
        a, b = logits
        size = a.shape[-1]
        out = []
        for i in range(a.shape[0]):
            (ay, ax), (by, bx) = group[0].boxes[i], group[1].boxes[i]
            dy, dx = int(by - ay), int(bx - ax)
            oh, ow = size - abs(dy), size - abs(dx)
            la = a[i, :, max(dy, 0):max(dy, 0) + oh, max(dx, 0):max(dx, 0) + ow]
            lb = b[i, :, max(-dy, 0):max(-dy, 0) + oh, max(-dx, 0):max(-dx, 0) + ow]
            pa, pb = F.log_softmax(la, 0), F.log_softmax(lb, 0)
            kl = ((pa.exp() - pb.exp()) * (pa - pb)).sum()  # KL(a||b) + KL(b||a), summed over pixels
            out.append(kl)
        return self.weight * torch.stack(out)

    def settings(self):
        return {**super().settings(), "pair_weight": self.weight}


ADAPTIVE = ("scale", "spatial", "spatial-pairs", "frame", "frame-agree")
#: Adaptive attacks that draw K_attack patches (they read k_attack and the patch size) ...
PATCH_ADAPTIVE = ("spatial", "spatial-pairs", "frame", "frame-agree")
#: ... and those that draw them with the pair sampler (they also read b_low, b_high).
PAIR_ADAPTIVE = ("spatial", "spatial-pairs")


def make_views(adaptive: Optional[str], k_attack: int = 0, patch_size: int = DEFAULT_SIZE,
               low: int = DEFAULT_LOW, high: int = DEFAULT_HIGH,
               stds: Sequence[float] = (0.5, 3.0, 5.0), pair_weight: float = 1.0,
               agree_weight: float = 1.0) -> Optional[Views]:
    """The views of an adaptive attack by name (None or 'none': a plain attack)."""
    from edge_guard.errors import UserError

    from .frame_views import FrameAgreeViews, FrameViews  # it imports this module

    if adaptive in (None, "none"):
        return None
    if adaptive == "scale":
        return BlurViews(stds)
    if adaptive == "spatial":
        return PatchViews(k_attack, patch_size, low, high)
    if adaptive == "spatial-pairs":
        return PairViews(k_attack, patch_size, low, high, pair_weight)
    if adaptive == "frame":
        return FrameViews(k_attack, patch_size)
    if adaptive == "frame-agree":
        return FrameAgreeViews(k_attack, patch_size, agree_weight)
    raise UserError(f"unknown adaptive attack {adaptive!r}: choose one of {', '.join(ADAPTIVE)}")
