"""SegPGD (Gu, Zhao, Tresp and Torr, ECCV 2022), L-inf, targeted or untargeted.

PGD with signed steps whose per-pixel cross-entropy is split between the pixels the attack
has not yet won and those it has, with a weight that moves over the T steps from the first
to the second: at step t = 1 .. T, lambda_t = (t - 1) / (2T) and

    L_t = (1 - lambda_t) * sum_{not yet won} CE + lambda_t * sum_{won} CE.

Untargeted (the paper's): "not yet won" = still predicted as the label (clean prediction or
ground truth), CE against the label, L maximised. Targeted (this project's attacks): "not
yet won" = not yet on target, CE toward the target, L minimised. So at t = 1 both focus on
the pixels still to flip, exactly as masked-CE PGD does (maskedce.py), and the weight of the
pixels already flipped grows to just under 1/2 at t = T to keep them flipped.

Choices, and why:

- Sums, not the paper's means 1/N: a per-image positive constant, which signed steps ignore
  on a plain attack; with EOT views (adaptive attacks) each view then weighs by its pixels,
  as in the DAG and Houdini losses the same views are used with.
- Random start, uniform in the L-inf ball, as in the paper; step alpha = linf / 4 (2/255 at
  8/255, the common PGD choice; 1/255 at 4/255); T = 100 steps: the largest count of the
  paper's evaluations (20 to 100), which also costs half of DAG's 200-step cap.
- No early stop (a fixed budget): ``threshold`` brings back the engine's stop. The image
  returned is the iterate of highest success (plain attacks), as fixed-budget evaluations
  report the worst case over steps; with views the last one (``keep_best``).
- Every iterate is rounded to 8 bits inside the budget when ``quantize`` (engine.py).
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Optional, Sequence, Union

import torch

from .pgd import DEFAULT_LINF, pgd, pixel_ce, resolve_linf
from .result import AttackResult
from .views import Views

DEFAULT_ITER = 100
STEP_FRACTION = 0.25  # alpha = linf * STEP_FRACTION


def segpgd_lambda(it: int, max_iter: int) -> float:
    """lambda_t = (t - 1) / (2T) at step t = it + 1 of T = max_iter (it counts from 0)."""
    return it / (2.0 * max_iter)


def segpgd_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, lam: float = 0.0,
                targeted: bool = True) -> torch.Tensor:
    """(N,) SegPGD loss to minimise: targeted, (1-lam) * sum of CE toward ``target`` over the
    valid pixels not on it + lam * sum over those on it; untargeted, minus
    ((1-lam) * sum of CE over the pixels still predicted as ``target`` + lam * sum over the
    others). ``target`` indexes classes everywhere (ignored pixels masked by ``valid``)."""
    ce = pixel_ce(logits, target)
    won = logits.detach().max(1).indices == target
    if not targeted:
        won = ~won
    weight = torch.where(won, torch.full_like(ce, lam), torch.full_like(ce, 1.0 - lam))
    loss = (weight * ce * valid).flatten(1).sum(1)
    return loss if targeted else -loss


def segpgd(model: Callable, images: torch.Tensor, target: torch.Tensor, *,
           mask: Optional[torch.Tensor] = None, linf: Union[float, str] = DEFAULT_LINF,
           step: Optional[float] = None, max_iter: int = DEFAULT_ITER, threshold: Optional[float] = None,
           l2: Optional[float] = None, quantize: bool = False, views: Optional[Views] = None,
           seed: Union[int, Sequence[int], None] = None, targeted: bool = True, random_start: bool = True,
           keep_best: Optional[bool] = None) -> AttackResult:
    """SegPGD. images (N, 3, H, W) in [0, 1]; target (N, H, W) class ids, 255 ignored (the
    target map, or with ``targeted=False`` the labels to move away from); linf: the budget
    on [0, 1] images or a preset name ('4/255', '8/255'); step: alpha on [0, 1] images
    (default linf / 4); seed draws the random start and the views. See AttackResult."""
    linf = resolve_linf(linf)
    alpha = linf * STEP_FRACTION if step is None else step
    return pgd(model, images, target,
               criterion_at=lambda it: partial(segpgd_loss, lam=segpgd_lambda(it, max_iter), targeted=targeted),
               step=alpha, linf=linf, mask=mask, max_iter=max_iter, threshold=threshold, l2=l2,
               quantize=quantize, views=views, seed=seed, random_start=random_start, keep_best=keep_best,
               targeted=targeted)
