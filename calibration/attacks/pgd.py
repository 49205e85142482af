"""What the fixed-budget L-inf PGD attacks (SegPGD, masked-CE PGD) share: the budget presets,
the per-pixel cross-entropy, and the call into the engine's loop with signed steps.

A fixed-budget attack spends a fixed number of signed gradient steps inside an L-inf ball of
radius ``linf`` (on [0, 1] images) and returns its best iterate (its last with EOT views);
unlike DAG and Houdini it has no early stop unless ``threshold`` is given. The field reports
segmentation robustness at L-inf 4/255 and 8/255 (SegPGD, Croce et al. 2024), hence the two
presets.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .engine import Criterion, descend
from .result import AttackResult
from .views import Views

#: The budgets of the literature, by name; ``linf`` takes a number or one of these names.
LINF_PRESETS = {"4/255": 4 / 255, "8/255": 8 / 255}
DEFAULT_LINF = LINF_PRESETS["8/255"]


def resolve_linf(linf: Union[float, str]) -> float:
    """A preset name ('4/255', '8/255') or a number in (0, 1] -> the budget on [0, 1] images."""
    if isinstance(linf, str):
        if linf not in LINF_PRESETS:
            raise ValueError(f"unknown L-inf preset {linf!r}: choose one of {', '.join(LINF_PRESETS)} or a number")
        return LINF_PRESETS[linf]
    if linf is None or not 0 < float(linf) <= 1:
        raise ValueError(f"a fixed-budget attack needs an L-inf budget in (0, 1], got {linf}")
    return float(linf)


def pixel_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) logits, (N, H, W) class ids (every pixel a class) -> (N, H, W) cross-entropy."""
    return F.cross_entropy(logits, target, reduction="none")


def pgd(model: Callable, images: torch.Tensor, target: torch.Tensor, *,
        criterion_at: Callable[[int], Criterion], step: Union[float, Callable[[int], float]],
        linf: float, mask: Optional[torch.Tensor], max_iter: int, threshold: Optional[float],
        l2: Optional[float], quantize: bool, views: Optional[Views], seed: Union[int, Sequence[int], None],
        random_start: bool, keep_best: Optional[bool], targeted: bool) -> AttackResult:
    """L-inf PGD with signed steps through the engine (budgets, 8-bit rounding, views, early
    stop). ``keep_best`` None: the best iterate for a plain attack, the last one with views
    (their draws change every step, so earlier iterates cannot be ranked on them)."""
    return descend(model, images, target, criterion_at=criterion_at, norm="sign", step=step, mask=mask,
                   max_iter=max_iter, threshold=threshold, l2=l2, linf=linf, quantize=quantize, views=views,
                   seed=seed, start_radius=linf if random_start else None,
                   keep_best=views is None if keep_best is None else keep_best, targeted=targeted)
