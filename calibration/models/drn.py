"""DRN-D-22 for segmentation (Yu, Koltun, Funkhouser, CVPR 2017), in the layout of the
official fyu/drn ``DRNSeg`` so its released Cityscapes checkpoint loads unchanged.

state_dict: ``base.0`` .. ``base.8`` (the DRN's layer0..layer8; the classifier's avgpool
and fc are dropped, as DRNSeg does), ``seg`` (1x1 conv to classes, bias), ``up`` (fixed
bilinear depthwise ConvTranspose2d, x8). Forward returns logits, not DRNSeg's log-softmax.
"""

import torch
from torch import nn

from .init import he_fan_out_init
from .registry import register_model
from .upsampling import bilinear_up


def conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    """ResNet basic block with dilation; attribute names follow drn.py (conv1/bn1/conv2/bn2/downsample)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation=(1, 1)):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride, dilation[0])
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(cout, cout, 1, dilation[1])
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


def conv_layers(cin: int, cout: int, convs: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """DRN-D's plain conv-BN-ReLU levels (no residual: they remove gridding artefacts)."""
    mods = []
    for i in range(convs):
        mods += [conv3x3(cin if i == 0 else cout, cout, stride if i == 0 else 1, dilation),
                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*mods)


def residual_layer(cin: int, cout: int, blocks: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    # DRN levels 5 and 6 keep resolution and dilate every conv (new_level=False in drn.py).
    layers = [BasicBlock(cin, cout, stride, (dilation, dilation))]
    layers += [BasicBlock(cout, cout, 1, (dilation, dilation)) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def drn_d_base(layers=(1, 1, 2, 2, 2, 2, 1, 1),
               channels=(16, 32, 64, 128, 256, 512, 512, 512)) -> nn.Sequential:
    """DRN-D trunk, output stride 8, ``channels[-1]`` features: the ``base`` of DRNSeg."""
    c = channels
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, c[0], 7, padding=3, bias=False), nn.BatchNorm2d(c[0]),
                      nn.ReLU(inplace=True)),
        conv_layers(c[0], c[0], layers[0]),
        conv_layers(c[0], c[1], layers[1], stride=2),
        residual_layer(c[1], c[2], layers[2], stride=2),
        residual_layer(c[2], c[3], layers[3], stride=2),
        residual_layer(c[3], c[4], layers[4], dilation=2),
        residual_layer(c[4], c[5], layers[5], dilation=4),
        conv_layers(c[5], c[6], layers[6], dilation=2),
        conv_layers(c[6], c[7], layers[7]),
    )


class DRNSeg(nn.Module):
    """Normalised RGB (N, 3, H, W) -> logits (N, C, H, W)."""

    def __init__(self, num_classes: int = 19, layers=(1, 1, 2, 2, 2, 2, 1, 1)):
        super().__init__()
        self.base = drn_d_base(layers)
        self.seg = nn.Conv2d(512, num_classes, 1, bias=True)
        self.up = bilinear_up(num_classes, 8, trainable=False)
        self._init()

    def _init(self):
        # drn.py's initialisation: He-normal with fan-out, BN to identity.
        he_fan_out_init(list(self.base.modules()) + [self.seg])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        # Stride-2 convs round up, so sizes that are not multiples of 8 come back larger.
        return self.up(self.seg(self.base(x)))[..., :h, :w]


@register_model
def drn_d_22(num_classes: int = 19) -> DRNSeg:
    """DRN-D-22 segmentation network (fyu/drn DRNSeg('drn_d_22') layout)."""
    return DRNSeg(num_classes, layers=(1, 1, 2, 2, 2, 2, 1, 1))
