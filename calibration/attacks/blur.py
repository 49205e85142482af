"""Differentiable Gaussian blur: the scale detector's transform as a layer in front of a model."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kernel_radius(std: float) -> int:
    """The scale detector's kernel (scoring.blur_ksize, +-ceil(3*std)): the attack blurs as
    the detector will."""
    from ..scoring import blur_ksize

    return blur_ksize(std) // 2


def gaussian_kernel(std: float, radius: int, dtype=torch.float32, device=None) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / std) ** 2)
    return (k / k.sum()).to(dtype=dtype, device=device)


def gaussian_blur(images: torch.Tensor, std: float) -> torch.Tensor:
    """(N, C, H, W) -> blurred (N, C, H, W): separable depthwise convolution, reflect padding
    (OpenCV's default BORDER_REFLECT_101); the radius is capped so padding fits the image."""
    if not std > 0:
        raise ValueError(f"blur std must be > 0, got {std}")
    n, c, h, w = images.shape
    radius = min(kernel_radius(std), h - 1, w - 1)
    if radius < 1:
        return images
    k = gaussian_kernel(std, radius, images.dtype, images.device)
    x = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


class Blurred(torch.nn.Module):
    """``model`` behind a Gaussian blur of ``std``: what the scale detector segments."""

    def __init__(self, model: torch.nn.Module, std: float):
        super().__init__()
        self.model = model
        self.std = float(std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(gaussian_blur(images, self.std))
