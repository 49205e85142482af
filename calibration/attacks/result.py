"""What an attack returns, and the per-image metrics it reports."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .budget import rms


@dataclass
class AttackResult:
    """Adversarial images and per-image metrics (every tensor on the CPU).

    images: (N, 3, H, W) float in [0, 1], 8-bit values when the attack quantised;
    prediction: (N, H, W) int64, the model's labels on ``images``;
    success: (N,) fraction of valid pixels (target != 255, inside the mask) predicted as
    the target; miou: (N,) mIoU of the prediction against the target on valid pixels, over the classes
    present in either (as the paper's getmIOU);
    l2: (N,) RMS of the perturbation; linf: (N,) largest absolute change;
    iterations: (N,) gradient steps taken; seconds: (N,) wall time until the image was done
    (images of one batch share the clock).
    """

    images: torch.Tensor
    prediction: torch.Tensor
    success: torch.Tensor
    miou: torch.Tensor
    l2: torch.Tensor
    linf: torch.Tensor
    iterations: torch.Tensor
    seconds: torch.Tensor

    def records(self) -> list:
        """One dict of plain floats / ints per image (JSON-ready)."""
        return [{
            "success": float(self.success[i]), "miou": float(self.miou[i]),
            "l2": float(self.l2[i]), "linf": float(self.linf[i]),
            "iterations": int(self.iterations[i]), "seconds": float(self.seconds[i]),
        } for i in range(len(self.images))]


def valid_pixels(target: torch.Tensor, mask: torch.Tensor | None, ignore: int = 255) -> torch.Tensor:
    """(N, H, W) bool: pixels that count (target not ignored, inside the mask)."""
    valid = target != ignore
    return valid if mask is None else valid & mask.to(torch.bool)


def success_rate(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(N,) float64 fraction of valid pixels where pred == target."""
    hits = ((pred == target) & valid).flatten(1).sum(1).double()
    return hits / valid.flatten(1).sum(1).clamp_min(1).double()


def miou(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N,) float64 mean IoU over the classes present in the target or the prediction."""
    out = torch.empty(len(pred), dtype=torch.float64)
    for i in range(len(pred)):
        t = target[i][valid[i]]
        p = pred[i][valid[i]]
        conf = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
        conf = conf.view(num_classes, num_classes).double()
        inter = conf.diag()
        union = conf.sum(0) + conf.sum(1) - inter
        present = union > 0
        out[i] = (inter[present] / union[present]).mean() if present.any() else float("nan")
    return out


def distances(clean: torch.Tensor, adv: torch.Tensor):
    """(N,) float64 RMS and L-inf of adv - clean."""
    delta = (adv.detach() - clean.detach())
    return rms(delta), delta.flatten(1).abs().amax(1).double()
