"""Masked-CE PGD (Croce, Singh and Hein, "Towards Reliable Evaluation and Fast Training of
Robust Semantic Segmentation Models", ECCV 2024), L-inf, targeted or untargeted.

The loss is the cross-entropy over the pixels the attack has not yet won only: once a pixel
is fooled it leaves the loss, so the steps go to the pixels still to flip instead of
deepening those already flipped (the plain CE's failure on segmentation). Untargeted (the
paper's): CE against the label over the pixels still predicted as it, maximised. Targeted
(this project's attacks): CE toward the target over the pixels not yet on it, minimised.

What is reproduced of their optimiser, and what not:

- Signed (L-inf steepest) steps from the clean image (their APGD's default: no random
  start), the best iterate returned (theirs keeps the lowest-accuracy one), every iterate
  rounded to 8 bits inside the budget when ``quantize``.
- Step size: a cosine decay from ``step`` (default linf) at the first step to ~0 at the
  last, in place of APGD's schedule (first step 2 * linf, halved where progress stalls,
  momentum 0.75) and without SEA's progressive radius reduction (30% of the steps at
  2 * linf, 30% at 1.5 * linf, the rest at linf). Like APGD it begins with steps that cross
  the ball and ends with fine ones, and it needs no per-image state. (On the tiny test
  model, first steps of linf/4 to 2 * linf end within 1.5 points of success at 100 steps.)
- T = 100 steps by default, as SegPGD here (equal cost); their evaluation runs APGD longer.
- Sums over pixels, not their mean: the same signed steps on a plain attack, and each EOT
  view (adaptive attacks) weighs by its pixels, as in the DAG and Houdini losses.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable, Optional, Sequence, Union

import torch

from .pgd import DEFAULT_LINF, pgd, pixel_ce, resolve_linf
from .result import AttackResult
from .views import Views

DEFAULT_ITER = 100
STEP_FRACTION = 1.0  # first step = linf * STEP_FRACTION


def masked_ce_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                   targeted: bool = True) -> torch.Tensor:
    """(N,) loss to minimise: targeted, the sum of CE toward ``target`` over the valid pixels
    not on it (0 once all are); untargeted, minus the sum of CE against ``target`` over the
    valid pixels still predicted as it. ``target`` indexes classes everywhere."""
    hit = logits.detach().max(1).indices == target
    count = valid & (hit if not targeted else ~hit)
    loss = (pixel_ce(logits, target) * count).flatten(1).sum(1)
    return loss if targeted else -loss


def cosine_step(step: float, max_iter: int) -> Callable[[int], float]:
    """it -> step * (1 + cos(pi * it / max_iter)) / 2: ``step`` at it = 0, decaying toward 0."""
    return lambda it: step * 0.5 * (1.0 + math.cos(math.pi * it / max(1, max_iter)))


def masked_ce(model: Callable, images: torch.Tensor, target: torch.Tensor, *,
              mask: Optional[torch.Tensor] = None, linf: Union[float, str] = DEFAULT_LINF,
              step: Optional[float] = None, max_iter: int = DEFAULT_ITER, threshold: Optional[float] = None,
              l2: Optional[float] = None, quantize: bool = False, views: Optional[Views] = None,
              seed: Union[int, Sequence[int], None] = None, targeted: bool = True, random_start: bool = False,
              keep_best: Optional[bool] = None) -> AttackResult:
    """Masked-CE PGD. images (N, 3, H, W) in [0, 1]; target (N, H, W) class ids, 255 ignored
    (the target map, or with ``targeted=False`` the labels to move away from); linf: the
    budget on [0, 1] images or a preset name ('4/255', '8/255'); step: the first step size
    on [0, 1] images (default linf), cosine-decayed. See AttackResult."""
    linf = resolve_linf(linf)
    first = linf * STEP_FRACTION if step is None else step
    criterion = partial(masked_ce_loss, targeted=targeted)
    return pgd(model, images, target, criterion_at=lambda it: criterion, step=cosine_step(first, max_iter),
               linf=linf, mask=mask, max_iter=max_iter, threshold=threshold, l2=l2, quantize=quantize,
               views=views, seed=seed, random_start=random_start, keep_best=keep_best, targeted=targeted)
