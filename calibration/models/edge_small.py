"""edge_small: a dilated residual network for CPUs and Jetson-Nano-class devices.

Layout (output stride 8, as DRN): three strided 3x3 convolutions take the image to 1/8
resolution, with one cheap residual block at 1/4; then a stack of depthwise-separable
residual blocks at 1/8 with growing dilations (DRN-style context without losing
resolution) and a degridding tail of small dilations; a 1x1 classifier; and bilinear
upsampling to the input size. An optional 1x1 skip classifier at 1/4 sharpens thin
classes (poles, signs) for a few MFLOPs. Plain Conv/BN/ReLU/Resize: exports to ONNX
opset 17 and TensorRT without custom ops.
"""

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def separable(channels: int, dilation: int) -> nn.Sequential:
    """Depthwise 3x3 (dilated) then pointwise 1x1, each followed by BN; no final ReLU."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation,
                  groups=channels, bias=False),
        nn.BatchNorm2d(channels),
        nn.Conv2d(channels, channels, 1, bias=False),
        nn.BatchNorm2d(channels))


class SeparableBlock(nn.Module):
    """x + sep(relu(sep(x))), then ReLU: a ResNet basic block with separable convs."""

    def __init__(self, channels: int, dilation: int = 1):
        super().__init__()
        self.conv1 = separable(channels, dilation)
        self.conv2 = separable(channels, dilation)

    def forward(self, x):
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class EdgeSmall(nn.Module):
    """Normalised RGB (N, 3, H, W) -> logits (N, num_classes, H, W).

    ``width`` is the channel count at 1/8 resolution (stem widths scale with it),
    ``dilations`` one entry per residual block at 1/8, ``skip`` adds the 1/4 skip classifier.
    """

    def __init__(self, num_classes: int = 19, width: int = 128,
                 dilations: Sequence[int] = (1, 2, 4, 8, 4, 2, 1), skip: bool = True):
        super().__init__()
        c2, c4 = max(8, width // 8), max(16, width // 4)
        self.stem = nn.Sequential(conv_bn_relu(3, c2, 2), conv_bn_relu(c2, c4, 2))
        self.block4 = SeparableBlock(c4)
        self.down8 = conv_bn_relu(c4, width, 2)
        self.context = nn.Sequential(*[SeparableBlock(width, int(d)) for d in dilations])
        self.classifier = nn.Conv2d(width, num_classes, 1)
        self.skip = nn.Conv2d(c4, num_classes, 1) if skip else None
        self._init()

    def _init(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Residual branches start near identity so the deep dilated stack trains from step 0.
        for m in self.modules():
            if isinstance(m, SeparableBlock):
                nn.init.zeros_(m.conv2[3].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        f4 = self.block4(self.stem(x))
        logits = self.classifier(self.context(self.down8(f4)))
        if self.skip is not None:
            logits = F.interpolate(logits, size=f4.shape[-2:], mode="bilinear", align_corners=False)
            logits = logits + self.skip(f4)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


@register_model
def edge_small(num_classes: int = 19, width: int = 128,
               dilations: Sequence[int] = (1, 2, 4, 8, 4, 2, 1), skip: bool = True) -> EdgeSmall:
    """The project's own small model (see module docstring)."""
    return EdgeSmall(num_classes, width, tuple(dilations), skip)
