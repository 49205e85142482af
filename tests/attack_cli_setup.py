"""The tiny folder and checkpoints the `edge-guard attack` tests run on."""

import torch

from edge_guard.cli import main


def make_setup(root):
    """(root, checkpoint, 5-class checkpoint): 3 generated 48x96 frames and tiny edge_small nets."""
    from edge_guard.calibration.data.layout import write_split
    from edge_guard.calibration.models import build_segmenter
    from edge_guard.calibration.models.checkpoint import save_checkpoint

    write_split(root / "data", split="val", frames=3, size=(48, 96), seed=5, progress=False)
    torch.manual_seed(0)
    ckpt = save_checkpoint(root / "tiny.pt", build_segmenter("edge_small", width=16, dilations=(1,)))
    wrong = save_checkpoint(root / "five.pt", build_segmenter("edge_small", num_classes=5, width=16, dilations=(1,)))
    return root, ckpt, wrong


def attack(root, ckpt, *extra, out="out"):
    return main(["attack", "--model", str(ckpt), "--data", str(root / "data"), "--split", "val",
                 "--max-iter", "3", "--device", "cpu", "--out", str(root / out), *extra])
