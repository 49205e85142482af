"""Dense Adversary Generation (Xie et al., ICCV 2017), targeted.

Every step, on the active pixels (valid and not yet predicted as the target), the target
logit is raised and the currently predicted logit lowered: the gradient r of
sum_active (z_target - z_pred) is applied as gamma / ||r||_inf * r. The original gamma = 0.5
is in 0..255 intensity units, i.e. 0.5/255 on [0, 1] images. An image stops when the
fraction of its valid pixels on target reaches ``threshold`` (the original stops at an empty
active set; 0.99 tolerates the few boundary pixels that 8-bit rounding keeps flipping), or
after ``max_iter`` steps (200 in the paper).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch

from .engine import descend
from .result import AttackResult
from .views import Views


def dag_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(N,) sum over active pixels of z_pred - z_target (>= 0; 0 when all are on target).

    ``target`` must index classes everywhere (ignored pixels set to any class, masked out
    by ``valid``); gather keeps memory at (N, H, W), no one-hot is built.
    """
    z_target = logits.gather(1, target.unsqueeze(1)).squeeze(1)
    z_pred, pred = logits.max(1)
    active = valid & (pred != target)
    return ((z_pred - z_target) * active).flatten(1).sum(1)


def dag(model: Callable, images: torch.Tensor, target: torch.Tensor, *,
        mask: Optional[torch.Tensor] = None, gamma: float = 0.5 / 255, max_iter: int = 200,
        threshold: float = 0.99, l2: Optional[float] = None, linf: Optional[float] = None,
        quantize: bool = False, views: Optional[Views] = None,
        seed: Union[int, Sequence[int], None] = None) -> AttackResult:
    """Targeted DAG. images (N, 3, H, W) in [0, 1]; target (N, H, W) class ids, 255 ignored;
    mask (N, H, W) bool limits the pixels that count; l2 (RMS) / linf budgets; quantize
    returns 8-bit images; views adds EOT views (adaptive attacks). See AttackResult."""
    return descend(model, images, target, criterion=dag_loss, norm="linf", step=gamma, mask=mask,
                   max_iter=max_iter, threshold=threshold, l2=l2, linf=linf, quantize=quantize,
                   views=views, seed=seed)
