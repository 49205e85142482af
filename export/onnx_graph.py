"""Read a user's segmentation ONNX: its one image input, its segmentation output, its metadata.

Everything a graph can be refused for is found here, before any frame is scored, and said in
one line that names the file and what to do: a corrupt or missing file, more than one input,
an input that is not one image, an output that is not per pixel (a classification network).
Whether the graph runs at the sizes the bundle needs is probed by running it
(:func:`edge_guard.export.onnx_wrap.probe`).
"""

from __future__ import annotations

import json

from dataclasses import dataclass, replace
from pathlib import Path

from edge_guard.classes import NAMES
from edge_guard.errors import UserError

from .onnx_conventions import Conventions, from_metadata, resolve

#: ONNX element types the wrapper can feed (its input) and read (its output).
FLOAT_TYPES = {1: "float32", 10: "float16"}
INT_TYPES = {7: "int64", 6: "int32", 2: "uint8", 3: "int8", 12: "uint32", 4: "uint16", 5: "int16"}
INPUT_TYPES = {**FLOAT_TYPES, 2: "uint8"}
MIN_OPSET = 13  # Resize with empty roi/scales inputs, the wrapper's Squeeze with an axes input
RE_EXPORT = ("re-export it with dynamic height and width, e.g. torch.onnx.export(..., "
             "dynamic_axes={'input': {0: 'batch', 2: 'height', 3: 'width'}})")


def _dims(value_info) -> list:
    """[int, or str for a named dim, or None for an unknown one] of a graph input/output."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def _show(dims) -> str:
    return "x".join(str(d) if isinstance(d, int) else "?" for d in dims) or "?"


@dataclass
class GraphInfo:
    """What the wrapper needs to know of a user's graph (dims: int, a name, or None)."""

    path: Path
    input_name: str
    input_dims: list
    input_type: str
    output_name: str
    output_dims: list
    output_type: str
    opset: int
    metadata: dict
    conventions: Conventions

    @property
    def output_kind(self) -> str:
        if self.conventions.output != "auto":
            return self.conventions.output
        return "labels" if self.output_type in INT_TYPES.values() else "logits"

    @property
    def fixed_size(self) -> tuple | None:
        """(H, W) when the graph's input fixes them, else None."""
        h, w = (self.input_dims[2], self.input_dims[3]) if self.conventions.layout == "NCHW" \
            else (self.input_dims[1], self.input_dims[2])
        return (h, w) if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 else None

    @property
    def num_classes(self) -> int | None:
        """The logits' channel count when the graph states it."""
        if self.output_kind != "logits" or len(self.output_dims) != 4:
            return None
        c = self.output_dims[1] if self.conventions.layout == "NCHW" else self.output_dims[3]
        return c if isinstance(c, int) and c > 0 else None

    def describe(self) -> str:
        c = self.conventions
        return (f"{self.path.name}: input {self.input_name!r} {self.input_type} {_show(self.input_dims)} "
                f"({c.layout}, {c.channels}), output {self.output_name!r} {self.output_type} "
                f"{_show(self.output_dims)} ({self.output_kind}), opset {self.opset}")


def load_model(path):
    """The ModelProto of ``path``, or UserError (one line) when it is missing or not ONNX."""
    import onnx

    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"--onnx {path} " + ("is a folder: give the .onnx file" if path.exists()
                                             else "does not exist"))
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError, external data missing, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is not a readable ONNX model ({first[:160]}): re-export it, or check "
                        "that the copy is complete") from None
    if not model.graph.node:
        raise UserError(f"{path} holds no graph (is it an ONNX model file?)")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is not a valid ONNX model ({first[:160]}): re-export it") from None
    return model


def opset_of(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def read_graph(path, options: dict | None = None, model=None) -> tuple:
    """(ModelProto, GraphInfo) of ``path`` with its conventions resolved from ``options`` over
    the graph's metadata; UserError (one line) for a graph the wrapper cannot take."""
    path = Path(path).expanduser()
    model = model if model is not None else load_model(path)
    props = {p.key: p.value for p in model.metadata_props}
    meta = from_metadata(props)
    options = dict(options or {})
    graph = model.graph
    weights = {t.name for t in graph.initializer}
    inputs = [vi for vi in graph.input if vi.name not in weights]  # IR < 4 lists weights as inputs
    if len(inputs) != 1:
        names = ", ".join(repr(vi.name) for vi in inputs) or "none"
        raise UserError(f"{path.name} has {len(inputs)} inputs ({names}): edge-guard feeds one image; "
                        "re-export the graph with the image as its only input")
    inp = inputs[0]
    in_type = inp.type.tensor_type.elem_type
    if in_type not in INPUT_TYPES:
        raise UserError(f"{path.name}'s input {inp.name!r} is not an image tensor (element type {in_type}): "
                        "edge-guard feeds float32, float16 or uint8 pixels")
    in_dims = _dims(inp)
    if len(in_dims) != 4:
        raise UserError(f"{path.name}'s input {inp.name!r} has shape {_show(in_dims)}: edge-guard feeds "
                        "one image batch, (N, 3, H, W) or (N, H, W, 3)")
    conv = resolve(options, meta)
    if conv.sources["layout"] == "default" and in_dims[3] == 3 and in_dims[1] != 3:
        # The shape tells the layout when one end is 3 channels and the other is not.
        conv = replace(conv, layout="NHWC", sources={**conv.sources, "layout": "input shape"})
    channel, far = (in_dims[1], in_dims[3]) if conv.layout == "NCHW" else (in_dims[3], in_dims[1])
    other = "NHWC" if conv.layout == "NCHW" else "NCHW"
    if isinstance(channel, int) and channel != 3:
        raise UserError(f"{path.name}'s input {inp.name!r} has shape {_show(in_dims)}: as {conv.layout} "
                        f"that is {channel} channels, not 3 (is it {other}? pass --layout {other})")
    if not isinstance(channel, int) and far == 3:  # a free channel axis, and 3 at the other end
        raise UserError(f"{path.name}'s input {inp.name!r} has shape {_show(in_dims)}: as {conv.layout} its "
                        f"channel axis should be 3 (is it {other}? --layout {other})")
    if INPUT_TYPES[in_type] == "uint8" and any(conv.sources[k] != "default" for k in ("scale", "mean", "std")) \
            and (conv.scale, conv.mean, conv.std) != (1.0, (0.0,) * 3, (1.0,) * 3):
        raise UserError(f"{path.name} takes uint8 pixels and normalises them itself: leave out --scale, "
                        "--mean and --std (or pass --scale 1 --mean 0 --std 1)")
    outputs = list(graph.output)
    if conv.output_name is not None:
        found = [o for o in outputs if o.name == conv.output_name]
        if not found:
            raise UserError(f"{path.name} has no output {conv.output_name!r}: its outputs are "
                            + ", ".join(repr(o.name) for o in outputs))
        out = found[0]
    else:
        out = outputs[0]
    out_type = out.type.tensor_type.elem_type
    out_name = {**FLOAT_TYPES, **INT_TYPES}.get(out_type)
    if out_name is None:
        raise UserError(f"{path.name}'s output {out.name!r} has element type {out_type}: edge-guard "
                        "reads float logits or integer labels")
    info = GraphInfo(path, inp.name, in_dims, INPUT_TYPES[in_type], out.name, _dims(out), out_name,
                     opset_of(model), props, conv)
    _check_output(info)
    return model, info


def _check_output(info: GraphInfo) -> None:
    dims, kind = info.output_dims, info.output_kind
    if kind == "logits" and info.output_type not in FLOAT_TYPES.values():
        raise UserError(f"--output logits, but {info.path.name}'s output {info.output_name!r} is "
                        f"{info.output_type} (labels): pass --output labels (or leave --output auto)")
    if kind == "labels" and info.output_type in FLOAT_TYPES.values():
        raise UserError(f"{info.path.name}'s output {info.output_name!r} is {info.output_type}: labels are "
                        "integers; pass --output logits")
    if dims and len(dims) < 3:
        raise UserError(f"{info.path.name} gives {info.output_name!r} of shape {_show(dims)}: no per-pixel "
                        "output. Is it a classification network? edge-guard needs a segmentation graph "
                        "(a class, or class scores, for every pixel)")
    if dims and len(dims) > 4:
        raise UserError(f"{info.path.name} gives {info.output_name!r} of shape {_show(dims)}: edge-guard "
                        "reads (N, C, h, w) logits or (N, h, w) labels")


def class_names(classes, num_classes: int | None, metadata: str | None = None) -> list:
    """Class names from ``--classes`` (a file of names, one a line, or a count), else the
    graph's ``class_names`` metadata (a JSON list or comma-separated), else the count.

    19 classes without names get the Cityscapes train-id names; other counts ``class0, ...``.
    """
    if (classes is None or classes == "") and metadata:
        text = metadata.strip()
        try:
            classes = [str(c) for c in json.loads(text)] if text.startswith("[") else \
                [c.strip() for c in text.split(",") if c.strip()]
        except ValueError:
            raise UserError("the graph's class_names metadata is not a JSON list: pass --classes") from None
    def default_class_names(n: int) -> list:
        return list(NAMES) if n == len(NAMES) else [f"class{i}" for i in range(n)]

    if classes is None or classes == "":
        if num_classes is None:
            raise UserError("the graph gives labels, so the class count cannot be read from it: pass "
                            "--classes with a file of class names (one a line) or the count")
        return list(default_class_names(int(num_classes)))
    if isinstance(classes, (list, tuple)):
        names = [str(c) for c in classes]
    elif str(classes).strip().isdigit():
        names = list(default_class_names(int(str(classes).strip())))
    else:
        path = Path(str(classes)).expanduser()
        if not path.is_file():
            raise UserError(f"--classes {classes}: no such file (give a file of class names, one a line, "
                            "or the class count)")
        names = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if not names:
        raise UserError(f"--classes {classes} names no classes")
    if num_classes is not None and len(names) != num_classes:
        raise UserError(f"--classes gives {len(names)} classes, but the graph's logits have {num_classes} "
                        "channels")
    return names
