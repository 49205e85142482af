"""The iterative loop shared by every attack (DAG, Houdini, SegPGD, masked-CE PGD): gradient
descent on a per-pixel criterion (normalised steps, signed steps or Adam), with per-image early
stopping, budgets, 8-bit output and EOT views; for the fixed-budget PGD attacks also a
criterion and a step size that change with the step, a random start and the best iterate.

Each step: the current iterate is projected onto the budgets (and, with ``quantize``,
rounded to the 8-bit image the camera pipeline would carry); the model sees that image, so
success and the stopping test are measured on exactly what is returned. The gradient taken
there updates a continuous iterate (straight-through), so steps smaller than 1/255 add up.
Finished images leave the batch; graphs are freed after every forward/backward.
"""

from __future__ import annotations

import numbers
import time
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from ..models.segmenter import labels_of
from .budget import check_budget, is_8bit, project, quantize as quantize_8bit
from .result import AttackResult, distances, miou, success_rate, valid_pixels
from .views import Views

# (logits (N,C,H,W), target (N,H,W) int64 in [0,C), valid (N,H,W) bool) -> (N,) loss to minimise
Criterion = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
NORMS = ("linf", "l2", "sign", "adam")
# Draws the random start apart from the views' draws of the same seed (SeedSequence entropy).
_START_STREAM = 0x57A27


def check_inputs(images: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor]) -> None:
    if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(f"images must be float (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    n, _, h, w = images.shape
    if tuple(target.shape) != (n, h, w):
        raise ValueError(f"target must be (N, H, W) = {(n, h, w)}, got {tuple(target.shape)}")
    if mask is not None and tuple(mask.shape) != (n, h, w):
        raise ValueError(f"mask must be (N, H, W) = {(n, h, w)}, got {tuple(mask.shape)}")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError("images must be in [0, 1]")


def clean_inputs(images: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor], quantize: bool):
    """(clean images detached, target as int64 on their device, valid pixels (N, H, W) bool);
    ValueError for a non-8-bit image under ``quantize`` or an image without a valid pixel."""
    clean = images.detach()
    if quantize and not is_8bit(clean):
        raise ValueError("quantize=True needs 8-bit clean images (multiples of 1/255)")
    target = target.to(clean.device).long()
    valid = valid_pixels(target, None if mask is None else mask.to(clean.device))
    if (valid.flatten(1).sum(1) == 0).any():
        raise ValueError("an image has no valid target pixel (all ignored or masked out)")
    return clean, target, valid


def _normalise(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """Per image: grad / max|grad| ('linf') or grad / RMS(grad) ('l2'); per value: sign."""
    if norm == "sign":
        return grad.sign()
    flat = grad.flatten(1)
    scale = flat.abs().amax(1) if norm == "linf" else flat.pow(2).mean(1).sqrt()
    return grad / scale.clamp_min(1e-30).view(-1, 1, 1, 1)


def descend(model: Callable, images: torch.Tensor, target: torch.Tensor, *,
            criterion: Optional[Criterion] = None, norm: str, step: Union[float, Callable[[int], float]],
            mask: Optional[torch.Tensor] = None, max_iter: int = 200,
            threshold: Optional[float] = 0.99, l2: Optional[float] = None, linf: Optional[float] = None,
            quantize: bool = False, views: Optional[Views] = None,
            seed: Union[int, Sequence[int], None] = None,
            criterion_at: Optional[Callable[[int], Criterion]] = None, start_radius: Optional[float] = None,
            keep_best: bool = False, targeted: bool = True) -> AttackResult:
    """Minimise ``criterion`` toward ``target`` by steps of size ``step`` along the gradient
    normalised per image (``norm``: 'linf', 'l2' = RMS, 'sign' per value, or 'adam'); an
    image stops when the fraction of its valid pixels on target reaches ``threshold`` on the
    (quantised) image and on every view of that step, or after ``max_iter`` steps
    (``threshold=None``: never before, a fixed budget of steps).

    ``seed`` draws the random views (adaptive attacks) and the random start: an int seeds one
    generator for the batch; one int per image gives each image its own, so an image's views,
    and its result, do not depend on which images it was batched with (a resumed run's
    batches differ).

    Fixed-budget attacks: ``criterion_at(it)`` gives step it's criterion (it = 0 .. max_iter-1;
    replaces ``criterion``); ``step`` may be a schedule ``it -> size``; ``start_radius`` begins
    at a uniform random point of the L-inf ball of that radius; ``keep_best`` returns, for an
    image that used all its steps, its iterate of highest success (on the frame: views are
    drawn afresh every step, so theirs do not compare across steps). ``targeted=False``:
    ``target`` holds the labels to move away from (clean prediction or ground truth), success
    is the fraction of valid pixels NOT predicted as their label, mIoU is against the labels."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if (criterion is None) == (criterion_at is None):
        raise ValueError("give exactly one of criterion and criterion_at")
    check_inputs(images, target, mask)
    check_budget(l2, linf)
    if threshold is not None and not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1] or None, got {threshold}")
    if max_iter < 0 or not (callable(step) or step > 0):
        raise ValueError(f"need max_iter >= 0 and step > 0, got {max_iter}, {step}")
    if start_radius is not None and not start_radius > 0:
        raise ValueError(f"start_radius must be > 0 or None, got {start_radius}")
    rate = success_rate if targeted else _fooled_rate
    clean, target, valid = clean_inputs(images, target, mask, quantize)
    if bool((target[valid] < 0).any()):
        raise ValueError("target holds negative class ids: mark ignored pixels 255")
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    rng_of = _view_generators(seed, len(clean))

    def evaluate(x, idx):
        return quantize_8bit(clean[idx], x, l2, linf) if quantize else project(clean[idx], x, l2, linf)

    n = len(clean)
    x = clean.clone()
    if start_radius is not None:
        x = project(clean, clean + _start_noise(seed, clean, start_radius), l2, linf)
    out = clean.clone()
    pred_out = torch.zeros_like(target)
    if keep_best:
        best, best_x, best_pred = torch.full((n,), -1.0, dtype=torch.float64), clean.clone(), pred_out.clone()
    iterations = torch.zeros(n, dtype=torch.int64)
    seconds = torch.zeros(n, dtype=torch.float64)
    num_classes = None
    adam = _Adam(clean) if norm == "adam" else None
    active = torch.arange(n, device=clean.device)
    start = time.perf_counter()
    for it in range(max_iter + 1):
        xq = evaluate(x[active], active).requires_grad_(True)
        t, v = safe_target[active], valid[active]
        with torch.enable_grad():
            logits = model(xq)
            if num_classes is None:
                num_classes = logits.shape[1]
                if int(target[valid].max()) >= num_classes:
                    raise ValueError(f"target holds class {int(target[valid].max())} but the model "
                                     f"predicts {num_classes} classes")
            pred = labels_of(logits)
            score = rate(pred, t, v)
            done = score >= threshold if threshold is not None else torch.zeros_like(score, dtype=torch.bool)
            if keep_best:  # on the frame alone (see docstring); ties keep the earlier iterate
                better = (score > best[active.cpu()].to(score.device)).nonzero().flatten()
                ids = active[better]
                best[ids.cpu()] = score[better].cpu()
                best_x[ids], best_pred[ids] = xq.detach()[better], pred[better]
            if it < max_iter and not (views is None and bool(done.all())):
                crit = criterion if criterion_at is None else criterion_at(it)
                grad = torch.autograd.grad(crit(logits, t, v).sum(), xq)[0]
                del logits
                if views is not None:
                    view_grad, views_done = _view_grads(model, views, xq, t, v, rng_of(active),
                                                           crit, threshold, frame=pred, rate=rate)
                    grad = grad + view_grad
                    done = done & views_done
            else:
                del logits
                done = torch.ones_like(done) if it == max_iter else done
        finished = done.nonzero().flatten()
        if len(finished):
            ids = active[finished]
            if keep_best and it == max_iter:  # the budget is spent: the best iterate it reached
                out[ids], pred_out[ids] = best_x[ids], best_pred[ids]
            else:
                out[ids] = xq.detach()[finished]
                pred_out[ids] = pred[finished]
            iterations[ids.cpu()] = it
            seconds[ids.cpu()] = time.perf_counter() - start
        keep = (~done).nonzero().flatten()
        if not len(keep):
            break
        ids = active[keep]
        if norm == "adam":
            direction = adam.step(ids, grad[keep], it + 1)
        else:
            direction = _normalise(grad[keep], norm)
        size = step(it) if callable(step) else step
        x[ids] = project(clean[ids], x[ids] - size * direction, l2, linf)
        active = ids
    l2_d, linf_d = distances(clean, out)
    return AttackResult(
        images=out.cpu(), prediction=pred_out.cpu(),
        success=rate(pred_out, target, valid).cpu(),
        miou=miou(pred_out, target, valid, num_classes).cpu(),
        l2=l2_d.cpu(), linf=linf_d.cpu(), iterations=iterations, seconds=seconds)


def _view_generators(seed, n: int):
    """active indices -> what Views.groups takes: one shared Generator, or one per image."""
    if seed is None or isinstance(seed, numbers.Integral):
        shared = np.random.default_rng(seed)
        return lambda active: shared
    rngs = [np.random.default_rng(int(v)) for v in seed]
    if len(rngs) != n:
        raise ValueError(f"seed needs one value per image ({n}), got {len(rngs)}")
    return lambda active: [rngs[i] for i in active.tolist()]


def _fooled_rate(pred: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(N,) float64 fraction of valid pixels NOT predicted as their label (untargeted success)."""
    return 1.0 - success_rate(pred, labels, valid)


def _start_noise(seed, clean: torch.Tensor, radius: float) -> torch.Tensor:
    """Uniform noise in [-radius, radius], shaped as ``clean``: one generator for the batch
    (``seed`` None or an int) or one per image (a sequence), as the views draw theirs."""
    shape = tuple(clean.shape[1:])
    if seed is None or isinstance(seed, numbers.Integral):
        rng = np.random.default_rng(None if seed is None else [int(seed), _START_STREAM])
        noise = rng.uniform(-radius, radius, (len(clean),) + shape)
    else:
        if len(seed) != len(clean):
            raise ValueError(f"seed needs one value per image ({len(clean)}), got {len(seed)}")
        noise = np.stack([np.random.default_rng([int(v), _START_STREAM]).uniform(-radius, radius, shape)
                          for v in seed])
    return torch.from_numpy(noise).to(clean.device, clean.dtype)


class _Adam:
    """Adam's direction m_hat / (sqrt(v_hat) + eps) per value; images keep their own moments
    (every image still active has taken the same number of steps)."""

    def __init__(self, like: torch.Tensor, betas=(0.9, 0.999), eps=1e-12):
        self.m = torch.zeros_like(like)
        self.v = torch.zeros_like(like)
        self.b1, self.b2, self.eps = betas[0], betas[1], eps

    def step(self, ids, grad, t: int) -> torch.Tensor:
        m = self.m[ids].mul_(self.b1).add_(grad, alpha=1 - self.b1)
        v = self.v[ids].mul_(self.b2).addcmul_(grad, grad, value=1 - self.b2)
        self.m[ids], self.v[ids] = m, v
        m_hat = m / (1 - self.b1 ** t)
        v_hat = v / (1 - self.b2 ** t)
        return m_hat / (v_hat.sqrt() + self.eps)


def _view_grads(model, views: Views, xq, target, valid, rng, criterion, threshold, frame=None,
                rate=success_rate):
    """Gradient of the views' losses w.r.t. ``xq``, one group at a time, and (N,) whether
    every view reached ``threshold`` (never, when it is None). ``frame``: (N, H, W) the frame's
    labels at ``xq``, handed to views that ask for it (``needs_frame``)."""
    grad = torch.zeros_like(xq)
    ok = torch.ones(len(xq), dtype=torch.bool, device=xq.device)
    extra_args = {"frame": frame} if views.needs_frame else {}
    for group in views.groups(xq, target, valid, rng, **extra_args):
        logits = [model(view.images) for view in group]
        loss = sum(_weighted(criterion(lg, view.target, view.valid), view.weight)
                   for lg, view in zip(logits, group))
        extra = views.coupling(logits, group)
        if extra is not None:
            loss = loss + extra
        for lg, view in zip(logits, group):
            empty = view.valid.flatten(1).sum(1) == 0  # a crop of ignored pixels asks nothing
            if threshold is not None:
                ok &= (rate(labels_of(lg.detach()), view.target, view.valid) >= threshold) | empty
        grad += torch.autograd.grad(loss.sum(), xq)[0]
        del logits, loss, extra
    return grad, ok


def _weighted(loss: torch.Tensor, weight: float) -> torch.Tensor:
    # weight 1 leaves the loss tensor itself: the views made before weights give the same sums
    return loss if weight == 1 else weight * loss
