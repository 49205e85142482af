"""A tiny patch graph and bundle built with the onnx API (no torch): uint8 NHWC in, int32 labels out."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PATCH = 16
CLASSES = 4


def tiny_patch_model(patch: int = PATCH, classes: int = CLASSES, seed: int = 0,
                     output_int32: bool = True, spatial=None) -> onnx.ModelProto:
    """image uint8 [batch, s, s, 3] -> normalise -> NCHW -> Conv3x3 -> ArgMax -> labels."""
    rng = np.random.default_rng(seed)
    h = w = patch
    if spatial is not None:
        h, w = spatial
    inits = [
        numpy_helper.from_array(np.array(255.0, np.float32), "k255"),
        numpy_helper.from_array(np.array([0.3, 0.33, 0.29], np.float32).reshape(1, 1, 1, 3), "mean"),
        numpy_helper.from_array(np.array([0.18, 0.19, 0.18], np.float32).reshape(1, 1, 1, 3), "std"),
        numpy_helper.from_array(rng.normal(0, 0.5, (classes, 3, 3, 3)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.normal(0, 0.1, (classes,)).astype(np.float32), "B"),
    ]
    nodes = [
        helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["x", "k255"], ["x01"]),
        helper.make_node("Sub", ["x01", "mean"], ["xc"]),
        helper.make_node("Div", ["xc", "std"], ["xn"]),
        helper.make_node("Transpose", ["xn"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "W", "B"], ["logits"], pads=[1, 1, 1, 1]),
        helper.make_node("ArgMax", ["logits"], ["idx"], axis=1, keepdims=0),
    ]
    if output_int32:
        nodes.append(helper.make_node("Cast", ["idx"], ["labels"], to=TensorProto.INT32))
        out = helper.make_tensor_value_info("labels", TensorProto.INT32, ["batch", h, w])
    else:
        nodes[-1].output[0] = "labels"
        out = helper.make_tensor_value_info("labels", TensorProto.INT64, ["batch", h, w])
    inp = helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", h, w, 3])
    graph = helper.make_graph(nodes, "tiny", [inp], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def make_bundle(root, patch: int = PATCH, classes: int = CLASSES, guard: dict | None = None):
    """A bundle folder with model.onnx and export.json (and guard.json when given)."""
    root.mkdir(parents=True, exist_ok=True)
    onnx.save_model(tiny_patch_model(patch, classes), str(root / "model.onnx"))
    section = {"file": "model.onnx", "patch_size": patch, "num_classes": classes,
               "input": {"name": "image", "dtype": "uint8", "layout": "NHWC"},
               "output": {"kind": "labels", "name": "labels", "dtype": "int32"}}
    (root / "export.json").write_text(json.dumps({"model": section}))
    if guard is not None:
        (root / "guard.json").write_text(json.dumps(dict(guard, model=section)))
    return root


def write_frames(folder, count: int = 3, size=(24, 40), seed: int = 0):
    """Smooth random RGB frames as PNG files (so labels are not pure noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        small = rng.integers(0, 256, (size[0] // 4, size[1] // 4, 3), dtype=np.uint8)
        rgb = cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(folder / f"frame{i:03d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return folder
