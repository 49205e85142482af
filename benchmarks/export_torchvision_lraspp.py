"""Export torchvision's LR-ASPP MobileNetV3-Large as its users do: NCHW RGB in [0, 1] with
ImageNet's mean/std, logits ``out`` at the input's size, dynamic batch, height and width.

Needs torchvision, which PyPI only ships beside a CUDA torch build: on this project's
machines run it in its own venv (``pip install torch==2.14.1 torchvision==0.29.1 onnx``).
The weights are random (no downloads here): the graph is what matters to `calibrate --onnx`.

    python benchmarks/export_torchvision_lraspp.py lraspp.onnx
    edge-guard calibrate --onnx lraspp.onnx --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 ...
"""

import argparse
import warnings

import torch
import torchvision


class Out(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="the .onnx file to write")
    p.add_argument("--classes", type=int, default=19)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    net = torchvision.models.segmentation.lraspp_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=args.classes)
    model = Out(net).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.rand(1, 3, 512, 1024),), args.out, input_names=["input"],
                          output_names=["out"], opset_version=17, dynamo=False,
                          dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}, "out": {0: "batch"}})
    print(f"wrote {args.out}: torchvision {torchvision.__version__}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
