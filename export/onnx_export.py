"""PyTorch segmenter -> ONNX graph for batches of square patches.

The graph takes what the crop step produces, uint8 NHWC RGB patches, and normalises inside::

    image uint8 [batch, s, s, 3] -> Cast float -> NCHW -> /255 -> (x - mean) / std -> net
        [-> + logit_bias, when the checkpoint has one]
        -> labels int32 [batch, s, s]     (ArgMax over classes, cast in the graph)
        or logits float32 [batch, C, s, s]

so the GPU crop kernel and the CPU path only gather bytes and agree exactly, and the
runtime moves s*s int32 labels per patch instead of C*s*s floats. Normalising after the
transpose broadcasts mean/std over whole channel planes, which ONNX Runtime runs faster
than per-pixel triplets in NHWC (same values, element for element). The batch is dynamic
(named ``batch``), the patch size fixed.

The same net over a whole frame (``size=(H, W)``) is the bundle's ``segment.onnx``: plain
segmentation, the baseline that ``edge-guard bench`` measures the guard's overhead against.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_guard.errors import UserError

INPUT_NAME = "image"
OUTPUTS = ("labels", "logits")
BATCH_DIM = "batch"
OPSETS = range(17, 21)  # TensorRT 10 parses opsets 9..20; the exporter writes >= 17 cleanly


class PatchNet(nn.Module):
    """uint8 NHWC RGB patches -> int32 labels (N, s, s) or float32 logits (N, C, s, s)."""

    def __init__(self, segmenter, output: str = "labels"):
        super().__init__()
        if output not in OUTPUTS:
            raise UserError(f"unknown output {output!r}: choose {' or '.join(OUTPUTS)}")
        # The segmenter's own forward: its normalisation and logit bias, no copy to drift.
        self.segmenter = segmenter
        self.output = output

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.segmenter(image.to(torch.float32).permute(0, 3, 1, 2) / 255.0)
        if self.output == "logits":
            return logits
        return logits.argmax(dim=1).to(torch.int32)


def _hw(size) -> tuple[int, int]:
    """int s or (H, W) -> (H, W)."""
    if isinstance(size, (tuple, list)):
        return int(size[0]), int(size[1])
    return int(size), int(size)


def check_patch_size(segmenter, patch) -> None:
    """Raise UserError unless the net maps an input of ``patch`` (s or (H, W)) to logits of that size."""
    h, w = _hw(patch)
    what = "patches" if h == w else "frames"
    if min(h, w) < 16:
        raise UserError(f"{what} of {h}x{w} are too small: at least 16")
    try:
        with torch.no_grad():
            out = segmenter(torch.zeros(1, 3, h, w))
    except RuntimeError as exc:
        raise UserError(f"model {segmenter.name} cannot segment {h}x{w} {what} "
                        f"({str(exc).splitlines()[0]}); try multiples of 32") from exc
    if tuple(out.shape) != (1, segmenter.num_classes, h, w):
        raise UserError(f"model {segmenter.name} maps {h}x{w} {what} to {tuple(out.shape[2:])}: "
                        "try sides that are multiples of 32")


def export_onnx(segmenter, path, patch, output: str = "labels", opset: int = 17) -> Path:
    """Write the graph of ``segmenter`` for inputs of ``patch`` (s, or (H, W) for a full
    frame) to ``path`` (one self-contained .onnx file)."""
    if opset not in OPSETS:
        raise UserError(f"opset {opset} is not supported: choose {OPSETS.start}..{OPSETS.stop - 1}")
    path = Path(path)
    segmenter = segmenter.eval().cpu()
    check_patch_size(segmenter, patch)
    h, w = _hw(patch)
    model = PatchNet(segmenter, output).eval()
    example = torch.zeros(2, h, w, 3, dtype=torch.uint8)
    batch = torch.export.Dim(BATCH_DIM, min=1, max=4096)
    out_name = output
    # The exporter narrates every step and warns about things that do not concern us
    # (missing torchvision ops, opset conversion); keep the CLI's output to our own lines.
    quiet = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model, (example,), input_names=[INPUT_NAME], output_names=[out_name],
                dynamic_shapes={"image": {0: batch}}, opset_version=opset, dynamo=True,
                external_data=False, verbose=False, optimize=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"ONNX export of {segmenter.name} failed: {first}") from exc
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    proto = program.model_proto
    _name_batch_dims(proto)
    path.parent.mkdir(parents=True, exist_ok=True)
    import onnx

    onnx.save_model(proto, str(path))
    return path


def _name_batch_dims(proto) -> None:
    """Name dim 0 of the graph input and output ``batch`` (the exporter may call it s0)."""
    graph = proto.graph
    for vi in list(graph.input) + list(graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = BATCH_DIM


def torch_predictor(segmenter):
    """PyTorch reference: the segmenter's own forward (normalisation included) + argmax."""
    segmenter = segmenter.eval().cpu()

    def predict(patches: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(patches)).permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad():
            return segmenter(x).argmax(dim=1).to(torch.int32).numpy()

    return predict
