"""Houdini (Cisse et al., NeurIPS 2017) for segmentation, targeted.

Variant implemented, and why:

- Loss, per pixel p, toward the target y*:
  ``l_H = P_{g~N(0,1)}[ z_{y*} - z_{pred} < g ] * l(pred, y*) = Phi(m_p) * 1[pred != y*]``
  with margin m_p = z_pred - z_{y*} >= 0 on logits z. The task loss is the per-pixel 0-1
  loss: the segmentation metric (mIoU) does not decompose over pixels, and on the pixels
  still off target the 0-1 loss is what the attacker pays. It is minimised, summed over
  valid pixels.
- Gradient of the probit term: analytic, as in the paper: dPhi(m)/dm = phi(m), with pred
  and the task loss held fixed (they are piecewise constant). In float32, phi underflows
  to 0 for margins above ~14 logits, which would silence exactly the pixels furthest from
  the target; so the per-pixel weights phi(m_p) are divided by the image's largest one
  (computed in the log domain). That is a positive per-image constant: the signed,
  L2 and L-inf step rules ignore it; Adam (the default) keeps Houdini's gradient signs,
  with momentum over steps whose constants differ. The returned loss VALUE is the true
  Houdini loss.
- Optimiser: Adam on the image (learning rate ``step`` in [0, 1] units per value, betas
  0.9 / 0.999), projected onto the budgets after every step. The Houdini gradient is
  concentrated on the pixels nearest their margin: a step normalised over the whole image
  (L2 or L-inf, as DAG's) would move only those, while Adam, like a signed step, moves every
  value whose gradient is not zero and ignores the loss scale; unlike a fixed signed step,
  its momentum damps the pixels that flip on and off the target, which stalled signed steps
  once EOT views pull against the full image (on the tiny test model with blur views, signed
  1/255 steps left 2 of 6 images below 90% success, Adam none). ``norm='sign'``, ``'l2'``
  and ``'linf'`` select the other step rules. Pixels whose weight underflows float32
  (m^2 more than ~200 above the smallest m^2) wait until the nearer ones flip. With EOT
  views the weights are normalised per view, so every view counts, not only the one
  closest to its margin.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch

from .engine import descend
from .result import AttackResult
from .views import Views


def houdini_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(N,) Houdini loss sum_p Phi(m_p) 1[pred != y*] (value), with the rescaled Houdini
    gradient (see module doc). ``target`` indexes classes everywhere; ``valid`` masks."""
    z_target = logits.gather(1, target.unsqueeze(1)).squeeze(1)
    z_pred, pred = logits.max(1)
    margin = z_pred - z_target
    task = valid & (pred != target)
    value = (torch.special.ndtr(margin.detach()) * task).flatten(1).sum(1)
    with torch.no_grad():
        sq = torch.where(task, margin.double() ** 2, torch.full_like(margin, float("inf"), dtype=torch.float64))
        smallest = sq.flatten(1).amin(1).clamp(max=1e300)  # inf when no pixel is off target
        weight = (torch.exp(-0.5 * (sq - smallest.view(-1, 1, 1))) * task).to(margin.dtype)
    surrogate = (weight * margin).flatten(1).sum(1)
    return value + surrogate - surrogate.detach()


def houdini(model: Callable, images: torch.Tensor, target: torch.Tensor, *,
            mask: Optional[torch.Tensor] = None, step: float = 1.0 / 255, max_iter: int = 200,
            threshold: float = 0.99, l2: Optional[float] = None, linf: Optional[float] = None,
            quantize: bool = False, views: Optional[Views] = None,
            seed: Union[int, Sequence[int], None] = None, norm: str = "adam") -> AttackResult:
    """Targeted Houdini. images (N, 3, H, W) in [0, 1]; target (N, H, W) class ids, 255
    ignored; step: Adam's learning rate on [0, 1] images (the size of each update with
    ``norm='sign'``); other arguments as ``dag``."""
    return descend(model, images, target, criterion=houdini_loss, norm=norm, step=step, mask=mask,
                   max_iter=max_iter, threshold=threshold, l2=l2, linf=linf, quantize=quantize,
                   views=views, seed=seed)
