"""Parameter and multiply-accumulate counts of a network, for reports and benchmarks."""

from typing import Tuple

import torch
from torch import nn


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (fixed up-sampling weights count unless ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, size: Tuple[int, int] = (512, 512)) -> int:
    """Multiply-accumulates of convolutions and linear layers for one (1, 3, H, W) input.

    Element-wise ops, BN and resizing are left out (they are memory-bound, not MAC-bound);
    GFLOPs in the usual sense are ``2 * macs / 1e9``.
    """
    total = 0

    def conv_hook(m, inp, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1]
        if isinstance(m, nn.ConvTranspose2d):
            # Every input pixel scatters a k*k kernel to out/groups channels.
            total += inp[0].numel() * (m.out_channels // m.groups) * k
        else:
            total += out.numel() * (m.in_channels // m.groups) * k

    def linear_hook(m, inp, out):
        nonlocal total
        total += out.numel() * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        p = next(model.parameters(), None)
        x = torch.zeros(1, 3, *size, device=p.device if p is not None else "cpu")
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total
