"""Perturbation budgets: projection in [0, 1] space and 8-bit quantisation that keeps them.

Budgets are per image: ``l2`` is the RMS of the perturbation over all its values,
``||delta||_2 / sqrt(3*H*W)`` on [0, 1] images (the paper's 0.06 bound for adaptive attacks),
``linf`` the largest absolute change. ``None`` means unbounded.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

LEVELS = 255.0


def check_budget(l2: Optional[float], linf: Optional[float]) -> None:
    for name, value in (("l2", l2), ("linf", linf)):
        if value is not None and not value > 0:
            raise ValueError(f"{name} budget must be > 0 or None, got {value}")


def rms(delta: torch.Tensor) -> torch.Tensor:
    """(N, ...) -> (N,) float64 root mean square per image."""
    flat = delta.detach().flatten(1).double()
    return flat.pow(2).mean(dim=1).sqrt()


def project(clean: torch.Tensor, adv: torch.Tensor, l2: Optional[float] = None,
            linf: Optional[float] = None) -> torch.Tensor:
    """A point of the box [0, 1] within both budgets of ``clean``, close to ``adv``.

    L-inf clamp, then box, then L2 rescaling toward ``clean``: rescaling never leaves the box
    (clean is in it) nor grows an entry, so all three constraints hold at the end.
    """
    delta = adv - clean
    if linf is not None:
        delta = delta.clamp(-linf, linf)
    delta = (clean + delta).clamp(0.0, 1.0) - clean
    if l2 is not None:
        norm = rms(delta).to(delta.dtype)
        factor = (l2 / norm.clamp_min(1e-12)).clamp(max=1.0)
        delta = delta * factor.view(-1, *([1] * (delta.dim() - 1)))
    return clean + delta


def is_8bit(images: torch.Tensor, tol: float = 1e-6) -> bool:
    """True when every value is a multiple of 1/255 (up to float error: float32 k/255 is off
    by < 1e-7). Any larger offset would pass through quantize onto the budgets it reports."""
    scaled = images.detach() * LEVELS
    return bool((scaled - scaled.round()).abs().max() <= tol * LEVELS) if images.numel() else True


def quantize(clean: torch.Tensor, adv: torch.Tensor, l2: Optional[float] = None,
             linf: Optional[float] = None) -> torch.Tensor:
    """The 8-bit image (multiples of 1/255) nearest ``adv`` that still respects the budgets.

    ``clean`` must itself be 8-bit (as every camera frame is). The perturbation is rounded
    in units of 1/255; L-inf is kept by clamping the integer steps to floor(255*linf); where
    rounding pushes an image over the L2 budget, the continuous perturbation is shrunk by
    the largest factor (bisection) whose rounding fits: a factor exists because shrinking
    it to ``budget - 0.5/255`` RMS always fits (rounding moves each value by <= 0.5/255),
    and truncation toward the clean image fits when the budget is smaller than that.
    """
    c = torch.round(clean.detach() * LEVELS)
    d = (project(clean, adv, l2, linf).detach() - clean) * LEVELS
    lo_step = -c
    hi_step = LEVELS - c
    if linf is not None:
        m = math.floor(linf * LEVELS + 1e-6)
        lo_step = lo_step.clamp(min=-m)
        hi_step = hi_step.clamp(max=m)

    def steps(scaled: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(torch.round(scaled), hi_step), lo_step)

    k = steps(d)
    if l2 is not None:
        n = k[0].numel()
        bound = l2 * LEVELS * math.sqrt(n)  # the budget as an L2 norm in 1/255 units
        norms = k.flatten(1).double().norm(dim=1)
        for i in torch.nonzero(norms > bound).flatten().tolist():
            k[i] = _shrink_to_fit(d[i], lo_step[i], hi_step[i], bound, n)
    return (c + k) / LEVELS


def _shrink_to_fit(d, lo_step, hi_step, bound: float, n: int) -> torch.Tensor:
    def steps(scaled):
        return torch.maximum(torch.minimum(torch.round(scaled), hi_step), lo_step)

    def fits(k):
        return float(k.double().norm()) <= bound

    norm = float(d.double().norm())
    safe = bound - 0.5 * math.sqrt(n)
    if safe <= 0:
        return torch.maximum(torch.minimum(torch.trunc(d), hi_step), lo_step)
    lo, hi = min(1.0, safe / max(norm, 1e-12)), 1.0
    best = steps(d * lo)
    if not fits(best):  # cannot happen by the bound above; truncation is the safe fallback
        return torch.maximum(torch.minimum(torch.trunc(d), hi_step), lo_step)
    for _ in range(12):
        mid = 0.5 * (lo + hi)
        k = steps(d * mid)
        if fits(k):
            lo, best = mid, k
        else:
            hi = mid
    return best
