"""Segmentation graphs in other stacks' conventions, exported the way those stacks export them
(shared by the bring-your-own-ONNX tests).

- :class:`TinyLRASPP`: torchvision's LR-ASPP head (``torchvision.models.segmentation.lraspp``:
  a 1x1 conv-BN-ReLU branch gated by a pooled sigmoid branch, a low-level classifier added to
  the high-level one, then ``F.interpolate(..., mode="bilinear", align_corners=False)`` to the
  input's size, output ``{"out": logits}``) on a tiny backbone, NCHW RGB in [0, 1] normalised
  with ImageNet's mean/std. torchvision itself cannot be imported beside this project's CPU
  torch build, so its head is rebuilt here layer for layer.
- :func:`mmdeploy_argmax`: a net fed NCHW RGB normalised in 0-255 units, labels out as int64
  (N, 1, H, W) from an in-graph ArgMax, as mmdeploy's ``with_argmax`` writes them.
- :class:`BgrQuarter`: the shipped edge_small fed BGR 0-255, logits at 1/4 of the input (its
  last upsampling left to the wrapper).
"""

import warnings

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
MMSEG_MEAN, MMSEG_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


def export(module, path, example, input_name="input", output_name="output", dynamic=True, opset=17):
    """torch.onnx.export (TorchScript exporter, as most stacks still use) with a dynamic
    batch, height and width unless ``dynamic`` is False (then the example's shape is fixed)."""
    axes = None
    if dynamic:
        nchw = example.shape[1] == 3
        spatial = {2: "height", 3: "width"} if nchw else {1: "height", 2: "width"}
        axes = {input_name: {0: "batch", **spatial}, output_name: {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (example,), str(path), input_names=[input_name],
                          output_names=[output_name], opset_version=opset, dynamic_axes=axes, dynamo=False)
    return path


def _cbr(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class TinyLRASPP(nn.Module):
    """torchvision's LRASPP on a 3-stage backbone (low features at 1/4, high at 1/8)."""

    def __init__(self, num_classes=19, low=8, high=16, inter=16):
        super().__init__()
        self.low_path = nn.Sequential(_cbr(3, low, 2), _cbr(low, low, 2))
        self.high_path = _cbr(low, high, 2)
        self.cbr = nn.Sequential(nn.Conv2d(high, inter, 1, bias=False), nn.BatchNorm2d(inter), nn.ReLU())
        self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(high, inter, 1, bias=False), nn.Sigmoid())
        self.low_classifier = nn.Conv2d(low, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter, num_classes, 1)
        for m in self.modules():  # BN statistics away from identity, so folding them is exercised
            if isinstance(m, nn.BatchNorm2d):
                nn.init.uniform_(m.weight, 0.5, 1.5)
                nn.init.uniform_(m.bias, -0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)

    def forward(self, x):
        low = self.low_path(x)
        high = self.high_path(low)
        y = self.cbr(high) * self.scale(high)
        y = F.interpolate(y, size=low.shape[-2:], mode="bilinear", align_corners=False)
        out = self.low_classifier(low) + self.high_classifier(y)
        return {"out": F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)}


class _Out(nn.Module):
    """{"out": logits} -> logits, as torchvision users export it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


def torchvision_style(path, num_classes=19, dynamic=True, size=(64, 128)):
    torch.manual_seed(0)
    model = _Out(TinyLRASPP(num_classes))
    return export(model, path, torch.rand(1, 3, *size), output_name="out", dynamic=dynamic)


class _Argmax(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x).argmax(dim=1, keepdim=True)


def mmdeploy_argmax(path, net, size=(64, 128)):
    """``net`` (normalised NCHW in, logits out) with mmdeploy's in-graph ArgMax: int64 (N, 1, H, W)."""
    return export(_Argmax(net), path, torch.rand(1, 3, *size))


class BgrQuarter(nn.Module):
    """edge_small (with its 1/4 skip classifier) fed BGR, its logits before the last upsampling."""

    def __init__(self, segmenter):
        super().__init__()
        self.net = segmenter.net
        bias = segmenter.bias_t if segmenter.bias_t is not None else torch.zeros(1, segmenter.num_classes, 1, 1)
        self.register_buffer("bias", bias.clone())

    def forward(self, x):
        net = self.net
        f4 = net.block4(net.stem(x.flip(1)))  # BGR in, the net's RGB weights
        logits = net.classifier(net.context(net.down8(f4)))
        logits = F.interpolate(logits, size=f4.shape[-2:], mode="bilinear", align_corners=False) + net.skip(f4)
        return logits + self.bias


def bgr_quarter(path, segmenter, size=(64, 128)):
    """Returns the (mean, std) in BGR 0-255 units that feed it like the segmenter's own."""
    model = BgrQuarter(segmenter)
    for p in model.parameters():
        p.requires_grad_(False)
    export(model, path, torch.rand(1, 3, *size) * 255, output_name="seg_logits")
    mean = tuple(v * 255 for v in segmenter.mean[::-1])
    std = tuple(v * 255 for v in segmenter.std[::-1])
    return mean, std


class Classifier(nn.Module):
    """An image classifier: (N, 3, H, W) -> (N, 10) scores."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 2, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.conv(x), 1).flatten(1))


class FixedReshape(nn.Module):
    """A segmenter whose graph bakes its input size into a Reshape (cannot take another size)."""

    def __init__(self, size=(64, 128), num_classes=4):
        super().__init__()
        self.size, self.num_classes = size, num_classes
        self.conv = nn.Conv2d(3, num_classes, 3, 1, 1)

    def forward(self, x):
        y = self.conv(x).flatten(2)
        return y.reshape(1, self.num_classes, *self.size)


class TwoInputs(nn.Module):
    """Two images in (a stereo pair), one segmentation out."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(6, 4, 3, 1, 1)

    def forward(self, left, right):
        return self.conv(torch.cat([left, right], 1))


def export_two_inputs(path, size=(64, 128)):
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(TwoInputs().eval(), (torch.rand(1, 3, *size), torch.rand(1, 3, *size)), str(path),
                          input_names=["left", "right"], output_names=["out"], opset_version=17, dynamo=False)
    return path
