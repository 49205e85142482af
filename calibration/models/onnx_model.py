"""A user's segmentation ONNX as a differentiable :class:`Segmenter` (white-box attacks, evaluate).

The graph is converted to PyTorch by onnx2torch (extra ``onnx-eval``). Its input conventions
(export/onnx_conventions.py) say the graph reads

    (pixel / scale - mean) / std,   pixel = 255 x,   in the graph's channel order and layout

for the Segmenter's RGB x in [0, 1]. That is x normalised with mean * scale / 255 and
std * scale / 255, so those (reordered to RGB for a BGR graph) are the Segmenter's own mean and
std, and the inner :class:`OnnxNet` only flips BGR and permutes to NHWC: every attack and
detector sees an ordinary Segmenter. Logits below the input's resolution are upsampled with
the conventions' ``upsample``. A graph whose output is labels (an ArgMax at its end) is cut
before the ArgMax (onnx_cut.py); its logits are upsampled by nearest neighbour, as the
runtime upsamples labels, so the Segmenter's argmax is the graph's labels.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edge_guard.errors import UserError, require
from edge_guard.export.onnx_conventions import from_metadata
from edge_guard.export.onnx_graph import class_names, load_model, read_graph

from .onnx_cut import LABEL_TAIL, RE_EXPORT, argmax_axis, find_argmax, fold_constants, keep_output
from .onnx_import import import_onnx2torch
from .segmenter import Segmenter

#: Side of the dry run that reads the class count, where the graph's input size is free.
PROBE = 128


class OnnxNet(nn.Module):
    """Segmenter-normalised RGB (N, 3, H, W) -> logits (N, C, H, W) of the converted graph:
    channels flipped for a BGR graph, NHWC in and out for an NHWC one, logits upsampled to
    (H, W). ``info`` describes the graph (input, output, where it was cut)."""

    def __init__(self, graph: nn.Module, conventions, class_axis: int, upsample: str,
                 input_dtype: torch.dtype, one_by_one: bool, info: dict):
        super().__init__()
        self.graph = graph
        self.conventions = conventions
        self.class_axis = int(class_axis)
        self.upsample = upsample
        self.input_dtype = input_dtype
        self.one_by_one = bool(one_by_one)  # the graph's batch is fixed at 1: run frame by frame
        self.info = dict(info)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        size = tuple(z.shape[-2:])
        if self.conventions.channels == "BGR":
            z = z.flip(1)
        if self.conventions.layout == "NHWC":
            z = z.permute(0, 2, 3, 1)
        z = z.to(self.input_dtype)
        if self.one_by_one and z.shape[0] != 1:
            out = torch.cat([self._run(z[i:i + 1]) for i in range(z.shape[0])])
        else:
            out = self._run(z)
        logits = out.float().movedim(self.class_axis, 1)
        if tuple(logits.shape[-2:]) != size:
            logits = upsample(logits, size, self.upsample)
        return logits

    def _run(self, z: torch.Tensor) -> torch.Tensor:
        try:
            out = self.graph(z)
        except (UserError, torch.OutOfMemoryError):
            raise
        except Exception as exc:  # onnx2torch's modules raise anything on a shape they cannot take
            fixed = self.info.get("input_shape")
            hint = (f"; the graph's input is fixed at {fixed}: re-export it with dynamic height and width"
                    if fixed and any(isinstance(d, int) for d in fixed[1:]) else "")
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"{self.info['file']} fails on an input of shape {tuple(z.shape)} "
                            f"({type(exc).__name__}: {first}){hint}") from exc
        if isinstance(out, (tuple, list)):
            out = out[0]
        if out.dim() != 4 or not out.is_floating_point():
            raise UserError(f"{self.info['file']}: output {self.info['logits']!r} has shape "
                            f"{tuple(out.shape)} ({out.dtype}), not 4-D float logits")
        return out


def upsample(logits: torch.Tensor, size: tuple, mode: str) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, H, W) by the conventions' ``upsample`` mode."""
    if mode == "nearest":
        return F.interpolate(logits, size=size, mode="nearest")
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=mode == "bilinear-align-corners")


def rgb_normalisation(conventions) -> tuple:
    """The Segmenter's (mean, std), RGB in 0-1 units, that feed the graph its conventions' input."""
    k = conventions.scale / 255.0
    mean = [m * k for m in conventions.mean]
    std = [s * k for s in conventions.std]
    if conventions.channels == "BGR":  # given in the graph's channel order
        mean, std = mean[::-1], std[::-1]
    return tuple(mean), tuple(std)


def load_onnx_segmenter(path, conventions, classes=None, log=print, model=None, info=None) -> Segmenter:
    """The ONNX graph at ``path`` fed per ``conventions`` -> Segmenter (eval mode, weights frozen)
    named ``onnx:<file name>``. ``classes``: class names (a list), a count, a file of names (one
    a line), or None (Cityscapes names for 19 classes, else class0, ...). ``model``: the graph's
    ModelProto when already read (it is edited); ``info``: its GraphInfo when already read
    (export/onnx_graph.read_graph, which refuses what no wrap or conversion can take)."""
    require("onnx", "onnx-eval", "evaluating an ONNX model")
    onnx2torch = import_onnx2torch()
    path = Path(path).expanduser()
    model = load_model(path) if model is None else model
    if info is None:
        options = {k: v for k, v in conventions.as_dict().items() if k != "sources"}
        model, info = read_graph(path, options, model=model)
    conventions = info.conventions
    graph = model.graph
    meta_names = from_metadata(info.metadata).get("class_names")
    in_shape = [d if isinstance(d, int) else None for d in info.input_dims]
    in_dtype = _input_dtype(info)
    logits_name, class_axis, mode, cut = _logits(graph, info, log)
    keep_output(model, logits_name)
    fold_constants(model.graph)
    try:
        converted = onnx2torch.convert(model)
    except UserError:
        raise
    except Exception as exc:  # NotImplementedError for an op without a converter, KeyError, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"onnx2torch cannot convert {path.name} ({type(exc).__name__}: {first})") from exc
    described = {"file": path.name, "input": info.input_name, "input_shape": in_shape, "output": info.output_name,
                 "logits": logits_name, "cut_before_argmax": cut, "class_axis": class_axis, "upsample": mode}
    net = OnnxNet(converted.eval(), conventions, class_axis, mode, in_dtype,
                  one_by_one=in_shape[0] == 1, info=described)
    for p in net.parameters():
        p.requires_grad_(False)
    mean, std = rgb_normalisation(conventions)
    count = _class_count(net, in_shape, conventions)
    names = class_names(classes, count, meta_names)
    return Segmenter(net, f"onnx:{path.name}", count, mean, std, {}, names).eval()


def _logits(graph, info, log) -> tuple:
    """(logits tensor name, its class axis, upsample mode, the ArgMax cut or None) of the
    segmentation output: itself for logits; the ArgMax's input for labels."""
    conventions, name, out = info.conventions, info.path.name, info.output_name
    if info.output_kind == "logits":
        return out, (-1 if conventions.layout == "NHWC" else 1), conventions.upsample, None
    node = find_argmax(graph, out)
    if node is None:
        raise UserError(f"{name}: output {out!r} is labels, but no ArgMax (followed only "
                        f"by {'/'.join(LABEL_TAIL)}) makes them; " + RE_EXPORT)
    axis = argmax_axis(node)
    log(f"{name}: output {out!r} is labels; white-box attacks use the logits before its "
        f"ArgMax ({node.input[0]!r}, class axis {axis}), upsampled by nearest neighbour as labels are")
    # Nearest, whatever --upsample says: argmax and nearest upsampling commute, so the cut
    # net's labels are the graph's labels brought to the input's size as the runtime does.
    return node.input[0], axis, "nearest", node.name or node.input[0]


def _input_dtype(info) -> torch.dtype:
    """The torch dtype of the graph's float input; UserError for pixels it takes as integers."""
    dtypes = {"float32": torch.float32, "float16": torch.float16}
    if info.input_type not in dtypes:
        raise UserError(f"{info.path.name}'s input {info.input_name!r} is not float ({info.input_type}): "
                        "white-box attacks need gradients through it; re-export the graph taking float pixels")
    return dtypes[info.input_type]


def _class_count(net: OnnxNet, in_shape: list, conventions) -> int:
    """C of the logits, from a dry run at the graph's own size (PROBE where it is free)."""
    if conventions.layout == "NCHW":
        h, w = in_shape[2], in_shape[3]
    else:
        h, w = in_shape[1], in_shape[2]
    z = torch.zeros(1, 3, h or PROBE, w or PROBE)
    with torch.no_grad():
        return int(net(z).shape[1])


def read_onnx(path, options: dict) -> tuple:
    """(ModelProto, GraphInfo) of the graph at ``path`` (export/onnx_graph.read_graph: the
    conventions resolved as ``calibrate --onnx`` resolves them, ``options`` over the graph's
    metadata over its input shape over the defaults); UserError for a graph it refuses."""
    require("onnx", "onnx-eval", "evaluating an ONNX model")
    return read_graph(path, {k: v for k, v in options.items() if k != "classes"})


def check_onnx(path, options: dict) -> None:
    """A one-line error before any work: an unreadable or refused graph, a bad convention,
    a missing --classes file, onnx2torch missing."""
    read_onnx(path, options)
    if options.get("classes") is not None:
        class_names(options["classes"], None)
    import_onnx2torch()


def load_onnx(path, options: dict, log=print) -> Segmenter:
    """The graph at ``path`` with the CLI's convention options (and ``classes``: --classes FILE|N)."""
    model, info = read_onnx(path, options)
    return load_onnx_segmenter(path, info.conventions, options.get("classes"), log=log, model=model, info=info)


def describe(segmenter: Segmenter) -> dict:
    """What results and manifests record of an ONNX segmenter: the file, how it is fed
    (conventions, the formula) and read (output, cut, class axis, upsampling)."""
    net = segmenter.net
    conv = net.conventions
    return {**net.info, "conventions": conv.as_dict(), "formula": conv.formula()}
