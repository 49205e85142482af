"""DLA-34 with the iterative deep-aggregation up-sampling head (Yu et al., CVPR 2018), in
the layout of the official ucbdrive/dla ``DLASeg('dla34', classes, down_ratio=2)`` so its
checkpoints load unchanged.

state_dict: ``base`` (the DLA-34 trunk, including its unused 1000-way ``fc`` so official
checkpoints load strictly), ``dla_up`` (IDA up-sampling over levels 1..5), ``fc`` (1x1
conv to classes at 1/2 resolution) and ``up`` (fixed bilinear x2). Forward returns logits.
"""

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .init import he_fan_out_init
from .registry import register_model
from .upsampling import bilinear_up

DLA34_LEVELS = (1, 1, 1, 2, 2, 1)
DLA34_CHANNELS = (16, 32, 64, 128, 256, 512)


def conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1) -> List[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class BasicBlock(nn.Module):
    """Residual block whose shortcut is passed in (a Tree projects it once for its subtree)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x, residual=None):
        residual = x if residual is None else residual
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + residual)


class Root(nn.Module):
    """Aggregation node: 1x1 conv over the concatenated children."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, *children):
        return self.relu(self.bn(self.conv(torch.cat(children, 1))))


class Tree(nn.Module):
    """Hierarchical deep aggregation of ``levels`` levels (official Tree, residual_root=False)."""

    def __init__(self, levels: int, cin: int, cout: int, stride: int = 1,
                 level_root: bool = False, root_dim: int = 0):
        super().__init__()
        root_dim = root_dim or 2 * cout
        if level_root:
            root_dim += cin
        if levels == 1:
            self.tree1 = BasicBlock(cin, cout, stride)
            self.tree2 = BasicBlock(cout, cout, 1)
            self.root = Root(root_dim, cout)
        else:
            self.tree1 = Tree(levels - 1, cin, cout, stride)
            self.tree2 = Tree(levels - 1, cout, cout, root_dim=root_dim + cout)
        self.levels = levels
        self.level_root = level_root
        self.downsample = nn.MaxPool2d(stride, stride=stride) if stride > 1 else None
        self.project = None
        if cin != cout:
            self.project = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x, residual=None, children=None):
        # ``residual`` is accepted (the parent passes it) but, as in the official code, a
        # Tree recomputes its own shortcut from its input.
        children = [] if children is None else children
        bottom = self.downsample(x) if self.downsample is not None else x
        residual = self.project(bottom) if self.project is not None else bottom
        if self.level_root:
            children.append(bottom)
        x1 = self.tree1(x, residual)
        if self.levels == 1:
            return self.root(self.tree2(x1), x1, *children)
        children.append(x1)
        return self.tree2(x1, children=children)


class DLA(nn.Module):
    """DLA trunk returning the six level outputs (strides 1, 2, 4, 8, 16, 32)."""

    def __init__(self, levels: Sequence[int] = DLA34_LEVELS, channels: Sequence[int] = DLA34_CHANNELS,
                 num_classes: int = 1000):
        super().__init__()
        c = self.channels = tuple(channels)
        self.base_layer = nn.Sequential(*conv_bn_relu(3, c[0], 7))
        self.level0 = self._conv_level(c[0], c[0], levels[0])
        self.level1 = self._conv_level(c[0], c[1], levels[1], stride=2)
        self.level2 = Tree(levels[2], c[1], c[2], 2, level_root=False)
        self.level3 = Tree(levels[3], c[2], c[3], 2, level_root=True)
        self.level4 = Tree(levels[4], c[3], c[4], 2, level_root=True)
        self.level5 = Tree(levels[5], c[4], c[5], 2, level_root=True)
        # The ImageNet classifier is unused for segmentation but part of official checkpoints.
        self.fc = nn.Conv2d(c[-1], num_classes, 1, bias=True)

    @staticmethod
    def _conv_level(cin, cout, convs, stride=1):
        mods = []
        for i in range(convs):
            mods += conv_bn_relu(cin if i == 0 else cout, cout, 3, stride if i == 0 else 1)
        return nn.Sequential(*mods)

    def forward(self, x) -> List[torch.Tensor]:
        levels = []
        x = self.base_layer(x)
        for i in range(6):
            x = getattr(self, f"level{i}")(x)
            levels.append(x)
        return levels


class IDAUp(nn.Module):
    """Iterative deep aggregation: project every input to ``out_dim``, upsample it to the
    first input's resolution, then merge left to right with 3x3 nodes."""

    def __init__(self, out_dim: int, channels: Sequence[int], up_factors: Sequence[int], node_kernel: int = 3):
        super().__init__()
        self.n = len(channels)
        for i, (c, f) in enumerate(zip(channels, up_factors)):
            proj = nn.Identity() if c == out_dim else nn.Sequential(*conv_bn_relu(c, out_dim, 1))
            up = nn.Identity() if int(f) == 1 else bilinear_up(out_dim, int(f), trainable=True)
            setattr(self, f"proj_{i}", proj)
            setattr(self, f"up_{i}", up)
        for i in range(1, self.n):
            setattr(self, f"node_{i}", nn.Sequential(*conv_bn_relu(2 * out_dim, out_dim, node_kernel)))

    def forward(self, layers):
        layers = [getattr(self, f"up_{i}")(getattr(self, f"proj_{i}")(t)) for i, t in enumerate(layers)]
        x, outs = layers[0], []
        for i in range(1, self.n):
            x = getattr(self, f"node_{i}")(torch.cat([x, layers[i]], 1))
            outs.append(x)
        return x, outs


class DLAUp(nn.Module):
    """Aggregates levels from the deepest pair upwards; ``ida_i`` handles the last i+2 inputs."""

    def __init__(self, channels: Sequence[int], scales: Sequence[int]):
        super().__init__()
        in_channels, scales = list(channels), list(scales)
        for i in range(len(channels) - 1):
            j = len(channels) - i - 2
            setattr(self, f"ida_{i}", IDAUp(channels[j], in_channels[j:],
                                            [s // scales[j] for s in scales[j:]]))
            # After this step every input from j on lives at level j's scale and width.
            scales[j + 1:] = [scales[j]] * (len(scales) - j - 1)
            in_channels[j + 1:] = [channels[j]] * (len(in_channels) - j - 1)
        self.n = len(channels)

    def forward(self, layers):
        layers = list(layers)
        for i in range(self.n - 1):
            x, outs = getattr(self, f"ida_{i}")(layers[-i - 2:])
            layers[-i - 1:] = outs
        return x


class DLASeg(nn.Module):
    """Normalised RGB (N, 3, H, W) -> logits (N, C, H, W); output stride 2 before ``up``."""

    first_level = 1  # down_ratio=2, the official default

    def __init__(self, num_classes: int = 19):
        super().__init__()
        self.base = DLA()
        channels = self.base.channels[self.first_level:]
        self.dla_up = DLAUp(channels, [2 ** i for i in range(len(channels))])
        self.fc = nn.Sequential(nn.Conv2d(channels[0], num_classes, 1, bias=True))
        self.up = bilinear_up(num_classes, 2 ** self.first_level, trainable=False)
        self._init()

    def _init(self):
        # The official initialisation: He-normal (fan-out) convs, identity BN; the
        # transposed convolutions keep their bilinear weights.
        he_fan_out_init(self.modules())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        # Five stride-2 levels mix max-pooling (rounds down) with strided convs (rounds up):
        # only multiples of 32 line up, so pad (with 0 = the mean colour) and crop back.
        ph, pw = -h % 32, -w % 32
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        levels = self.base(x)
        y = self.up(self.fc(self.dla_up(levels[self.first_level:])))
        return y[..., :h, :w]


@register_model
def dla34(num_classes: int = 19) -> DLASeg:
    """DLA-34 + IDA-up segmentation network (ucbdrive/dla DLASeg('dla34') layout)."""
    return DLASeg(num_classes)
