"""Precision in the graph: fp16 and int8 (Q/DQ) versions of the fp32 patch graph.

TensorRT 11 builds strongly typed networks only (no FP16/INT8 builder flags, no INT8
calibrators), so one path serves 10.x and 11.x: the ONNX file carries the precision.

- fp16: ModelOpt AutoCast when installed, else :func:`convert_fp16` below. The normalisation
  prologue (uint8 -> float, /255, -mean, /std, NCHW) stays float32; from the first layer
  on every float tensor, weight and constant is float16 (weights clamped to the float16
  range); ArgMax reads float16 logits; Casts sit at the boundaries, so the graph keeps its
  uint8 input and int32 (or float32 logits) output.
- int8: explicit quantisation with onnxruntime.quantization.quantize_static (QDQ format,
  symmetric int8 activations and per-channel int8 weights, zero points 0 as TensorRT
  requires, biases left in float, the normalisation prologue left in float) calibrated on
  patches of real frames, activation ranges by percentile (DEFAULT_PERCENTILE) or min/max.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference

from edge_guard.errors import UserError

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
FP16_MAX = float(np.finfo(np.float16).max)
# Leading ops that only normalise the input; kept float32 (cheap, and exact like the CPU path).
PROLOGUE_OPS = {"Cast", "Div", "Sub", "Mul", "Add", "Transpose", "Reshape", "Identity", "Unsqueeze"}
# (op -> input positions) the ONNX schema pins to float32 whatever the data type.
FP32_ONLY_INPUTS = {"Resize": {1, 2}, "Upsample": {1}}
# Ops whose output type comes from an attribute, not from their inputs.
TYPED_PRODUCERS = {"Cast", "Constant", "ConstantOfShape", "EyeLike", "RandomNormal",
                   "RandomUniform", "RandomNormalLike", "RandomUniformLike"}
# Ops quantised for TensorRT: the convolutions, and what lets TensorRT fuse residual adds,
# concatenations and pools in int8.
INT8_OPS = ["Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Concat", "MaxPool", "AveragePool"]
# Activation ranges clipped at this percentile of |x|: on the project's edge_small (200
# training steps, 512px patches) 99.9 kept 96.2% of the fp32 labels, 99.99 95.4%, ORT's
# default 99.999 94.2% and plain min/max 91.3% (ONNX Runtime CPU, 8 generated frames).
DEFAULT_PERCENTILE = 99.9


def _elem_types(model: onnx.ModelProto) -> dict:
    graph = model.graph
    out = {i.name: i.data_type for i in graph.initializer}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        if vi.type.HasField("tensor_type"):
            out[vi.name] = vi.type.tensor_type.elem_type
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    out[node.output[0]] = a.t.data_type
    return out


def prologue_nodes(graph: onnx.GraphProto) -> list:
    """Indices of the normalisation nodes between the graph inputs and the first real layer."""
    constants = {i.name for i in graph.initializer}
    constants |= {n.output[0] for n in graph.node if n.op_type == "Constant"}
    available = {i.name for i in graph.input}
    found = []
    for i, node in enumerate(graph.node):
        data = [t for t in node.input if t and t not in constants]
        if node.op_type in PROLOGUE_OPS and data and all(t in available for t in data):
            found.append(i)
            available.update(node.output)
    return found


def _toposort(nodes: list, graph_inputs: set, constants: set) -> list:
    """Nodes in an order where every input is produced before use (stable otherwise)."""
    produced = set(graph_inputs) | set(constants) | {""}
    pending = list(nodes)
    ordered = []
    while pending:
        rest = []
        for node in pending:
            if all(t in produced for t in node.input):
                ordered.append(node)
                produced.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise UserError("cannot order the graph's nodes (a cycle or a missing input)")
        pending = rest
    return ordered


def convert_fp16(model: onnx.ModelProto, keep_ops=()) -> onnx.ModelProto:
    """float16 version of a float32 patch graph (see module docstring); I/O types unchanged."""
    model = copy.deepcopy(model)
    del model.graph.value_info[:]
    inferred = shape_inference.infer_shapes(model, strict_mode=True)
    orig = _elem_types(inferred)
    graph = model.graph
    # Protobuf hands out a new wrapper per element access: hold one list, key by position.
    nodes = list(graph.node)
    pos = {id(n): i for i, n in enumerate(nodes)}
    keep = set(prologue_nodes(graph)) | {i for i, n in enumerate(nodes) if n.op_type in keep_ops}
    inits = {i.name: i for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    consumers = defaultdict(list)
    for node in nodes:
        for idx, t in enumerate(node.input):
            if t:
                consumers[t].append((node, idx))

    def converted(node) -> bool:
        return pos[id(node)] not in keep

    def wants16(node, idx) -> bool:
        return (converted(node) and node.op_type != "Cast"
                and idx not in FP32_ONLY_INPUTS.get(node.op_type, ())
                and orig.get(node.input[idx]) == FLOAT)

    def all_want16(t) -> bool:
        return bool(consumers[t]) and t not in outputs and all(wants16(n, i) for n, i in consumers[t])

    new = dict(orig)
    clamped = 0
    for name, init in inits.items():
        if init.data_type == FLOAT and all_want16(name):
            arr = numpy_helper.to_array(init)
            clamped += int(np.count_nonzero(np.abs(arr) > FP16_MAX))
            init.CopyFrom(numpy_helper.from_array(np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16), name))
            new[name] = FLOAT16
    for node in nodes:
        if not converted(node):
            continue
        if node.op_type == "Constant":
            out = node.output[0]
            if orig.get(out) == FLOAT and all_want16(out):
                for a in node.attribute:
                    if a.name == "value":
                        arr = numpy_helper.to_array(a.t)
                        a.t.CopyFrom(numpy_helper.from_array(
                            np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16), a.t.name))
                new[out] = FLOAT16
        elif node.op_type == "Cast":
            out = node.output[0]
            if orig.get(out) == FLOAT and all_want16(out):
                for a in node.attribute:
                    if a.name == "to":
                        a.i = FLOAT16
                new[out] = FLOAT16
        elif node.op_type not in TYPED_PRODUCERS:
            for out in node.output:
                if orig.get(out) == FLOAT:
                    new[out] = FLOAT16

    casts = {}
    added = []

    def cast(t, to) -> str:
        key = (t, to)
        if key not in casts:
            name = f"{t}__to_{'fp16' if to == FLOAT16 else 'fp32'}"
            added.append(helper.make_node("Cast", [t], [name], name=f"cast_{name}", to=to))
            casts[key] = name
        return casts[key]

    for node in nodes:
        for idx, t in enumerate(node.input):
            if not t:
                continue
            if wants16(node, idx) and new.get(t) == FLOAT:
                node.input[idx] = cast(t, FLOAT16)
            elif not wants16(node, idx) and node.op_type != "Cast" and new.get(t) == FLOAT16 \
                    and orig.get(t) == FLOAT:
                node.input[idx] = cast(t, FLOAT)
    for out in graph.output:
        if new.get(out.name) == FLOAT16 and orig.get(out.name) == FLOAT:
            inner = f"{out.name}__fp16"
            for node in nodes:
                node.output[:] = [inner if o == out.name else o for o in node.output]
                node.input[:] = [inner if i == out.name else i for i in node.input]
            added.append(helper.make_node("Cast", [inner], [out.name], name=f"cast_{out.name}_fp32", to=FLOAT))

    ordered = [copy.deepcopy(n) for n in _toposort(nodes + added, {i.name for i in graph.input}, set(inits))]
    del graph.node[:]
    graph.node.extend(ordered)
    model = shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    if clamped:
        model.doc_string += f" fp16: {clamped} weights clamped to +-{FP16_MAX:g}."
    return model


def convert_fp16_auto(src: Path, dst: Path, log=print) -> str:
    """Write the fp16 graph of ``src`` to ``dst``; ModelOpt AutoCast if installed. Returns the method."""
    src, dst = Path(src), Path(dst)
    try:
        from modelopt.onnx import autocast  # NVIDIA ModelOpt: TensorRT's documented path
    except ImportError:
        autocast = None
    if autocast is not None:
        model = autocast.convert_to_mixed_precision(onnx_path=str(src), low_precision_type="fp16",
                                                    keep_io_types=True)
        method = "modelopt-autocast"
    else:
        model = convert_fp16(onnx.load(str(src)))
        method = "edge-guard convert_fp16"
    _check_io_unchanged(onnx.load(str(src)), model)
    onnx.save_model(model, str(dst))
    log(f"fp16 graph ({method}): {dst}")
    return method


def _check_io_unchanged(ref: onnx.ModelProto, new: onnx.ModelProto) -> None:
    def sig(m):
        return [(v.name, v.type.tensor_type.elem_type) for v in list(m.graph.input) + list(m.graph.output)]

    if sig(ref) != sig(new):
        raise UserError(f"the low-precision graph changed the model's inputs/outputs: {sig(ref)} -> {sig(new)}")


class PatchReader:
    """onnxruntime CalibrationDataReader over uint8 patch batches."""

    def __init__(self, input_name: str, patches: np.ndarray, batch: int = 4):
        self.input_name = input_name
        self.batches = [patches[i:i + batch] for i in range(0, len(patches), batch)]
        self.pos = 0

    def get_next(self):
        if self.pos >= len(self.batches):
            return None
        self.pos += 1
        return {self.input_name: np.ascontiguousarray(self.batches[self.pos - 1])}

    def rewind(self):
        self.pos = 0


def quantize_int8(src: Path, dst: Path, patches: np.ndarray, method: str = "percentile",
                  percentile: float = DEFAULT_PERCENTILE, log=print) -> dict:
    """Explicitly quantised (QDQ) int8 graph of the fp32 graph ``src``, calibrated on ``patches``.

    ``method``: "percentile" (activation ranges clipped at ``percentile`` of |x|) or
    "minmax" (full observed ranges; outliers then waste most of the 8 bits).
    """
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise UserError(f"unknown calibration method {method!r}: choose {', '.join(methods)}")
    if not 50.0 < percentile <= 100.0:
        raise UserError(f"calibration percentile must be in (50, 100], got {percentile}")
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
    if method == "percentile":
        extra["CalibPercentile"] = float(percentile)
    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src))
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    exclude = [model.graph.node[i].name for i in prologue_nodes(model.graph)]
    input_name = model.graph.input[0].name
    named = dst.with_name(dst.name + ".named.onnx")
    onnx.save_model(model, str(named))
    try:
        quantize_static(
            str(named), str(dst), PatchReader(input_name, patches),
            quant_format=QuantFormat.QDQ, op_types_to_quantize=INT8_OPS, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude, calibrate_method=methods[method],
            extra_options=extra)
    finally:
        named.unlink(missing_ok=True)
    quantized = onnx.load(str(dst))
    _check_io_unchanged(model, quantized)
    q = sum(n.op_type == "QuantizeLinear" for n in quantized.graph.node)
    dq = sum(n.op_type == "DequantizeLinear" for n in quantized.graph.node)
    log(f"int8 QDQ graph ({method} calibration on {len(patches)} patches, {q} Q / {dq} DQ nodes): {dst}")
    return {"calibration": method, **({"percentile": float(percentile)} if method == "percentile" else {}),
            "calibration_patches": int(len(patches)), "quantize_nodes": q, "dequantize_nodes": dq}
