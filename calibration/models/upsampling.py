"""Learnable-shape, bilinear-initialised transposed convolutions (FCN style), as DRN and DLA use."""

import math

import torch
from torch import nn


def bilinear_kernel(size: int) -> torch.Tensor:
    """(size, size) kernel whose transposed convolution with stride ceil(size/2) is bilinear."""
    f = math.ceil(size / 2)
    centre = (2 * f - 1 - f % 2) / (2.0 * f)
    ramp = 1 - (torch.arange(size, dtype=torch.float64) / f - centre).abs()
    return (ramp[:, None] * ramp[None, :]).float()


def bilinear_up(channels: int, factor: int, trainable: bool = True) -> nn.ConvTranspose2d:
    """Depthwise ConvTranspose2d that upsamples by ``factor`` (kernel 2f, stride f, pad f//2)."""
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=factor // 2,
                            groups=channels, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(2 * factor).expand_as(up.weight))
    up.weight.requires_grad_(trainable)
    return up
