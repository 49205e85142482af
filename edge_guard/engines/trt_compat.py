"""Will TensorRT 10's ONNX parser take this graph? A check that needs no TensorRT.

Checked against ``trt10_onnx_ops.json`` (onnx-tensorrt's operator table for 10.x, source
recorded in the file):

- the default-domain opset lies in the parser's range; no node from another domain;
- every node's op type is supported, and the data type of its data input (input 0; for Cast
  also the output) is one the table lists for it (types from ``onnx.shape_inference``);
- the restrictions that bite exported segmentation nets: zero Q/DQ zero points, Resize
  modes, constant ``axes`` of Slice/Squeeze/Unsqueeze;
- UINT8 only on graph inputs and outputs, no DOUBLE anywhere, no INT64 graph output;
- static shapes except the batch dimension (dim 0 of graph inputs, outputs and inner tensors).

Not checked: what only a real build reveals (kernel availability on a given GPU, memory).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

TABLE_PATH = Path(__file__).with_name("trt10_onnx_ops.json")

RESIZE_COORD_MODES = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric",
                      "align_corners"}
RESIZE_MODES = {"nearest", "linear"}
RESIZE_NEAREST_MODES = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}
# Ops whose output data type is the point of the op: check it too.
OUTPUT_TYPED = {"Cast", "CastLike"}
# (op, input index) that must be constant (initializer or Constant node) for the parser.
CONSTANT_INPUTS = {("Slice", 3), ("Squeeze", 1), ("Unsqueeze", 1), ("TopK", 1)}


@lru_cache(maxsize=1)
def load_table() -> dict:
    """The operator table (``trt10_onnx_ops.json``) as a dict."""
    with open(TABLE_PATH, encoding="utf-8") as f:
        return json.load(f)


@dataclass
class CompatReport:
    """Outcome of :func:`check_trt_compat`: ``ok`` when ``problems`` is empty."""

    problems: list = field(default_factory=list)
    op_counts: dict = field(default_factory=dict)
    source: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def verdict(self, limit: int = 5) -> str:
        """One line for the CLI."""
        if self.ok:
            ops = ", ".join(f"{k} x{v}" for k, v in sorted(self.op_counts.items()))
            return f"TensorRT 10 compatible ({sum(self.op_counts.values())} nodes: {ops})"
        shown = "; ".join(self.problems[:limit])
        more = f"; and {len(self.problems) - limit} more" if len(self.problems) > limit else ""
        return f"NOT TensorRT 10 compatible: {shown}{more}"

    def as_dict(self) -> dict:
        return {"ok": self.ok, "problems": list(self.problems), "op_counts": dict(self.op_counts),
                "table": self.source}


def _dtype_name(elem_type: int) -> str:
    return onnx.TensorProto.DataType.Name(elem_type) if elem_type else "UNKNOWN"


def _tensor_types(model: onnx.ModelProto) -> dict:
    """name -> TypeProto.tensor_type for every tensor shape inference could type."""
    graph = model.graph
    out = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        if vi.type.HasField("tensor_type"):
            out[vi.name] = vi.type.tensor_type
    for init in graph.initializer:
        tt = onnx.TypeProto.Tensor(elem_type=init.data_type)
        for d in init.dims:
            tt.shape.dim.add().dim_value = d
        out[init.name] = tt
    return out


def _constants(graph: onnx.GraphProto) -> dict:
    """name -> numpy value of initializers and Constant node outputs."""
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
                elif attr.name in ("value_int", "value_ints", "value_float", "value_floats"):
                    values[node.output[0]] = np.asarray(onnx.helper.get_attribute_value(attr))
    return values


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _label(node) -> str:
    return f"node {node.name or node.output[0]!r} ({node.op_type})"


def _check_restrictions(node, constants, problems):
    if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and node.input[2]:
        zp = constants.get(node.input[2])
        if zp is None:
            problems.append(f"{_label(node)}: zero point must be a constant")
        elif np.any(zp != 0):
            problems.append(f"{_label(node)}: zero point must be 0 (symmetric quantisation)")
    if node.op_type == "Resize":
        mode = _attr(node, "mode", "nearest")
        coord = _attr(node, "coordinate_transformation_mode", "half_pixel")
        nearest = _attr(node, "nearest_mode", "round_prefer_floor")
        if mode not in RESIZE_MODES:
            problems.append(f"{_label(node)}: mode {mode!r} unsupported (nearest or linear)")
        if coord not in RESIZE_COORD_MODES:
            problems.append(f"{_label(node)}: coordinate_transformation_mode {coord!r} unsupported")
        if mode == "nearest" and nearest not in RESIZE_NEAREST_MODES:
            problems.append(f"{_label(node)}: nearest_mode {nearest!r} unsupported")
        if _attr(node, "antialias", 0):
            problems.append(f"{_label(node)}: antialiasing unsupported")
    for op, index in CONSTANT_INPUTS:
        if node.op_type == op and len(node.input) > index and node.input[index] \
                and node.input[index] not in constants:
            problems.append(f"{_label(node)}: input {index} must be a constant")


def _check_shapes(model, problems, inner_dims: bool = True):
    graph = model.graph
    for kind, values in (("input", graph.input), ("output", graph.output)):
        for vi in values:
            tt = vi.type.tensor_type
            if not tt.HasField("shape"):
                problems.append(f"graph {kind} {vi.name!r} has no shape")
                continue
            for i, d in enumerate(tt.shape.dim):
                if i == 0:
                    continue
                if not d.HasField("dim_value") or d.dim_value <= 0:
                    what = d.dim_param or "unknown"
                    problems.append(f"graph {kind} {vi.name!r} dim {i} is dynamic ({what}): "
                                    "only the batch dimension may be")
    # Inside the graph, shape inference names what it cannot prove (unk__N); a symbol in
    # dim 0 is the batch flowing through, a symbol anywhere else a dynamic spatial size.
    for vi in (graph.value_info if inner_dims else ()):
        for i, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.dim_param and i != 0:
                problems.append(f"tensor {vi.name!r} dim {i} is dynamic ({d.dim_param}): "
                                "only the batch dimension may be")
                break


def check_trt_compat(model, inner_dims: bool = True) -> CompatReport:
    """Check an ONNX ModelProto (or a path to one) against TensorRT 10's ONNX parser.

    ``inner_dims=False`` skips the rule that no tensor inside the graph has a dynamic dim
    beyond the batch: a user's graph (wrapped with static H and W) may compute slice ends from
    its input's shape, which ONNX shape inference leaves unknown but TensorRT computes from
    the static input when it builds the engine."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    table = load_table()
    ops = table["ops"]
    report = CompatReport(source=table["source"]["url"])
    problems = report.problems

    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            if not table["opset_min"] <= opset.version <= table["opset_max"]:
                problems.append(f"opset {opset.version} is outside TensorRT 10's range "
                                f"{table['opset_min']}..{table['opset_max']}")
    if model.functions:
        problems.append(f"{len(model.functions)} local functions: inline them before export")

    try:
        inferred = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:  # an invalid graph: say why, in one line
        problems.append(f"shape inference failed: {str(exc).splitlines()[0]}")
        inferred = model
    graph = inferred.graph
    types = _tensor_types(inferred)
    constants = _constants(graph)
    io_names = {v.name for v in graph.input} | {v.name for v in graph.output}

    counts = Counter()
    for node in graph.node:
        counts[node.op_type] += 1
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{_label(node)}: custom domain {node.domain!r} is not in the ONNX parser")
            continue
        spec = ops.get(node.op_type)
        if spec is None or not spec["supported"]:
            problems.append(f"{_label(node)}: op {node.op_type} is not supported by TensorRT 10's ONNX parser")
            continue
        allowed = set(spec["types"])
        checked = [node.input[0]] if node.input and node.input[0] else []
        if node.op_type in OUTPUT_TYPED:
            checked += list(node.output)
        for name in checked:
            tt = types.get(name)
            if tt is None or not tt.elem_type:
                continue
            dtype = _dtype_name(tt.elem_type)
            if allowed and dtype not in allowed:
                problems.append(f"{_label(node)}: {dtype} tensor {name!r} not supported "
                                f"(TensorRT takes {', '.join(sorted(allowed))})")
        _check_restrictions(node, constants, problems)
    report.op_counts = dict(counts)

    for name, tt in types.items():
        dtype = _dtype_name(tt.elem_type)
        if dtype == "UINT8" and name not in io_names:
            problems.append(f"uint8 tensor {name!r} inside the graph: TensorRT takes UINT8 "
                            "only as a network input or output")
        elif dtype == "DOUBLE":
            problems.append(f"float64 tensor {name!r}: TensorRT would cast it down to float32")
    for vi in graph.output:
        dtype = _dtype_name(vi.type.tensor_type.elem_type)
        if dtype in ("INT64", "DOUBLE"):
            problems.append(f"graph output {vi.name!r} is {dtype}: cast it to "
                            f"{'INT32' if dtype == 'INT64' else 'FLOAT'} in the graph")
    _check_shapes(inferred, problems, inner_dims)
    return report
