"""A user's segmentation graph, unchanged inside, wrapped into the bundle's contract.

The runtime feeds uint8 NHWC RGB pixels and reads int32 labels (N, H, W). The wrapper adds
nodes before and after the user's graph and renames nothing but with a ``user/`` prefix
(so its names cannot collide with the wrapper's)::

    image uint8 [batch, H, W, 3] RGB -> Cast float -> (Gather to BGR) -> (Transpose to NCHW)
        -> / scale -> - mean -> / std -> (Cast float16) -> user/<the user's graph>
        logits: (Transpose NHWC to NCHW) -> (Resize to H x W, --upsample) -> ArgMax -> Cast int32
        labels: (Squeeze the channel) -> (Resize to H x W, nearest) -> Cast int32
    -> labels int32 [batch, H, W]

Each bundle file fixes H and W (patches s x s, whole frames H x W); the batch stays dynamic.
:func:`probe` runs the user's graph at the size first: its output's size decides the Resize,
and a graph that cannot run at the size is refused there, in one line.
"""

from __future__ import annotations

import numpy as np

from edge_guard.errors import UserError

from .onnx_graph import MIN_OPSET, RE_EXPORT, GraphInfo, opset_of

PREFIX = "user/"
OURS = "edge_guard/"
INPUT_NAME = "image"
OUTPUT_NAME = "labels"
BATCH_DIM = "batch"
_RESIZE = {  # --upsample -> (mode, coordinate_transformation_mode): PyTorch's interpolate
    "bilinear": ("linear", "half_pixel"),
    "bilinear-align-corners": ("linear", "align_corners"),
    "nearest": ("nearest", "asymmetric"),
}


def _first_line(exc) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def upgraded(model):
    """``model`` at opset >= MIN_OPSET (converted when older), or UserError."""
    if opset_of(model) >= MIN_OPSET:
        return model
    import onnx.version_converter

    try:
        return onnx.version_converter.convert_version(model, MIN_OPSET)
    except Exception as exc:
        raise UserError(f"the graph is at opset {opset_of(model)} and cannot be converted to {MIN_OPSET} "
                        f"({_first_line(exc)}): re-export it at opset {MIN_OPSET} or later") from None


def resized(model, info: GraphInfo, size, batch=BATCH_DIM):
    """A copy of the user's graph whose input takes (batch, size) and whose output size is left
    open; the shape hints inside (value_info), which a new size would contradict, dropped."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    h, w = size
    dims = [batch, 3, h, w] if info.conventions.layout == "NCHW" else [batch, h, w, 3]
    for vi in m.graph.input:
        if vi.name == info.input_name:
            for d, v in zip(vi.type.tensor_type.shape.dim, dims):
                d.Clear()
                if isinstance(v, int):
                    d.dim_value = v
                else:
                    d.dim_param = v
    for vi in m.graph.output:
        for i, d in enumerate(vi.type.tensor_type.shape.dim):
            d.Clear()
            d.dim_param = f"out{i}"
    del m.graph.value_info[:]
    return m


def session(model):
    """A CPU ONNX Runtime session of an in-memory model, quiet."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _input_dtype(info: GraphInfo):
    return {"float32": np.float32, "float16": np.float16, "uint8": np.uint8}[info.input_type]


def feed(info: GraphInfo, pixels: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) RGB -> the user's graph's input, computed in NumPy (the reference)."""
    c = info.conventions
    if info.input_type == "uint8":
        x = pixels[..., ::-1] if c.channels == "BGR" else pixels
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if c.layout == "NCHW" else x)
    return c.normalise(pixels).astype(_input_dtype(info), copy=False)


def probe(model, info: GraphInfo, size) -> tuple:
    """Run the user's graph on a batch of 2 mid-grey (H, W) images; returns the output's
    (rank, (h, w), channels: the logits' class count, None for labels). UserError, naming the
    fix, when it cannot run at that size or its output does not follow the input's size."""
    h, w = size
    fixed = info.fixed_size
    batch_dim = info.input_dims[0]
    what = f"{h}x{w}"
    try:
        sess = session(resized(model, info, size))
        out = sess.run([info.output_name], {info.input_name: feed(info, np.full((2, h, w, 3), 128, np.uint8))})[0]
    except Exception as exc:
        if isinstance(batch_dim, int) and batch_dim == 1 and (fixed is None or fixed == (h, w)):
            raise UserError(f"{info.path.name} takes batches of 1 only and fails on 2 ({_first_line(exc)}): "
                            "the guard segments its K patches as one batch; re-export with a dynamic batch "
                            "dimension") from None
        shown = f" takes only {fixed[0]}x{fixed[1]} inputs and" if fixed and fixed != (h, w) else ""
        raise UserError(f"{info.path.name}{shown} fails on {what} inputs ({_first_line(exc)}): {RE_EXPORT}") from None
    rank, hw = _output_size(info, out.shape, size)
    channels = None
    if info.output_kind == "logits":
        channels = int(out.shape[1] if info.conventions.layout == "NCHW" else out.shape[3])
    return rank, hw, channels


def _output_size(info: GraphInfo, shape, size) -> tuple:
    h, w = size
    kind, layout = info.output_kind, info.conventions.layout
    if len(shape) == 3 and kind == "labels":
        oh, ow = shape[1], shape[2]
    elif len(shape) == 4 and kind == "labels":
        axis = 1 if layout == "NCHW" else 3
        if shape[axis] != 1:
            raise UserError(f"{info.path.name} gives labels of shape {tuple(shape)}: expected one label "
                            "per pixel, (N, h, w) or (N, 1, h, w); is it logits? pass --output logits")
        oh, ow = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    elif len(shape) == 4:
        oh, ow = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    else:
        raise UserError(f"{info.path.name} gives {info.output_name!r} of shape {tuple(shape)} for a "
                        f"{h}x{w} input: no per-pixel output (is it a classification network?)")
    if shape[0] != 2:
        raise UserError(f"{info.path.name} gives a batch of {shape[0]} for a batch of 2: "
                        "re-export with a dynamic batch dimension")
    # A graph that fixes its output size inside (a Reshape or a Resize to constant sizes)
    # gives the same output whatever the input; the output must scale with the input.
    if oh > h or ow > w or min(oh, ow) < 1 or abs(h / oh - w / ow) > 0.15 * max(h / oh, w / ow):
        raise UserError(f"{info.path.name} gives {oh}x{ow} outputs for {h}x{w} inputs: its output does not "
                        f"follow the input's size (a size fixed inside the graph); {RE_EXPORT}")
    return len(shape), (int(oh), int(ow))


def wrap(model, info: GraphInfo, size, out_rank: int, out_size) -> "onnx.ModelProto":  # noqa: F821
    """The bundle graph for (H, W) = ``size``: uint8 [batch, H, W, 3] RGB -> int32 [batch, H, W].

    ``out_rank``/``out_size``: what :func:`probe` measured at this size.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h, w = (int(v) for v in size)
    user = onnx.compose.add_prefix(resized(model, info, size), PREFIX)
    c = info.conventions
    nodes, inits = [], []

    def const(name, value, dtype):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype), OURS + "const/" + name))
        return OURS + "const/" + name

    def node(op, inputs, name, **attrs):
        out = OURS + name
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    x = INPUT_NAME
    if info.input_type != "uint8":
        x = node("Cast", [x], "to_float", to=TensorProto.FLOAT)
    if c.channels == "BGR":
        x = node("Gather", [x, const("bgr", [2, 1, 0], np.int64)], "rgb_to_bgr", axis=3)
    nchw = c.layout == "NCHW"
    if nchw:  # normalising after the transpose broadcasts over whole planes (faster in ORT)
        x = node("Transpose", [x], "to_nchw", perm=[0, 3, 1, 2])
    if info.input_type != "uint8":
        shape = (1, 3, 1, 1) if nchw else (1, 1, 1, 3)
        x = node("Div", [x, const("scale", c.scale, np.float32)], "scale")
        x = node("Sub", [x, const("mean", np.reshape(c.mean, shape), np.float32)], "mean")
        x = node("Div", [x, const("std", np.reshape(c.std, shape), np.float32)], "std")
        if info.input_type == "float16":
            x = node("Cast", [x], "to_float16", to=TensorProto.FLOAT16)
    nodes.append(helper.make_node("Identity", [x], [PREFIX + info.input_name], name=OURS + "into_user"))

    y = PREFIX + info.output_name
    resize = tuple(out_size) != (h, w)
    if info.output_kind == "logits":
        if not nchw:
            y = node("Transpose", [y], "logits_to_nchw", perm=[0, 3, 1, 2])
        if info.output_type != "float32":
            y = node("Cast", [y], "logits_to_float", to=TensorProto.FLOAT)
        if resize:
            mode, ctm = _RESIZE[c.upsample]
            y = _resize(node, const, y, (h, w), mode, ctm)
        y = node("ArgMax", [y], "argmax", axis=1, keepdims=0)
    else:
        if out_rank == 4:
            y = node("Squeeze", [y, const("channel_axis", [1 if nchw else 3], np.int64)], "squeeze_channel")
        if resize:  # nearest on floats: ONNX Runtime's Resize takes no int64; ids < 2^24 stay exact
            y = node("Cast", [y], "labels_to_float", to=TensorProto.FLOAT)
            y = node("Unsqueeze", [y, const("axis1", [1], np.int64)], "labels_plane")
            y = _resize(node, const, y, (h, w), "nearest", "asymmetric")
            y = node("Squeeze", [y, const("axis1_", [1], np.int64)], "labels_unplane")
    nodes.append(helper.make_node("Cast", [y], [OUTPUT_NAME], name=OURS + "to_int32", to=TensorProto.INT32))

    graph = helper.make_graph(
        _ordered(nodes, user.graph.node), f"edge_guard_wrap_{h}x{w}",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, [BATCH_DIM, h, w, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.INT32, [BATCH_DIM, h, w])],
        initializer=list(user.graph.initializer) + inits)
    graph.sparse_initializer.extend(user.graph.sparse_initializer)
    out = helper.make_model(graph, opset_imports=list(user.opset_import), ir_version=user.ir_version,
                            producer_name="edge-guard wrap", functions=list(user.functions))
    for p in model.metadata_props:
        out.metadata_props.add(key=p.key, value=p.value)
    return out


def _ordered(ours: list, theirs) -> list:
    """Our pre-processing nodes, the user's graph, then our post-processing (topological)."""
    cut = next(i for i, n in enumerate(ours) if n.name == OURS + "into_user") + 1
    return ours[:cut] + list(theirs) + ours[cut:]


def _resize(node, const, y: str, size, mode: str, ctm: str) -> str:
    """Resize (N, C, h, w) ``y`` to (N, C, H, W), N and C read from its shape (dynamic batch)."""
    shape = node("Shape", [y], f"{mode}_shape")
    nc = node("Slice", [shape, const(f"{mode}_zero", [0], np.int64), const(f"{mode}_two", [2], np.int64)],
              f"{mode}_nc")
    sizes = node("Concat", [nc, const(f"{mode}_hw", list(size), np.int64)], f"{mode}_sizes", axis=0)
    attrs = {"mode": mode, "coordinate_transformation_mode": ctm}
    if mode == "nearest":
        attrs["nearest_mode"] = "floor"  # PyTorch's interpolate(mode="nearest")
    return node("Resize", [y, "", "", sizes], f"{mode}_resize", **attrs)
