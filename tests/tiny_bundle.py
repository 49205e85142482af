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
    from edge_guard.engine_cache import sha256_file

    onnx.save_model(tiny_patch_model(patch, classes), str(root / "model.onnx"))
    section = {"file": "model.onnx", "sha256": sha256_file(root / "model.onnx"), "patch_size": patch,
               "num_classes": classes,
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


# ---------------------------------------------------------------- a calibrated bundle (guard.json)

def contrast_patch_model(patch: int = PATCH, output: str = "labels") -> onnx.ModelProto:
    """image uint8 [batch, s, s, 3] RGB -> labels int32 [batch, s, s], analytic per patch:

    ``label = (R > mean R of the patch) + 2 * (G > mean G of the patch)`` (4 classes).

    The label depends on the patch's content as a whole, so two overlapping patches can
    disagree (a uniform frame: never; noise: on pixels between the two patch means).
    Integer pixel sums are exact in float32 and s*s is a power of two for s = 16 or 32, so
    :func:`contrast_labels` reproduces the graph bit for bit. ``output="logits"`` emits the
    one-hot float32 [batch, 4, s, s] of the same labels instead.
    """
    inits = [
        numpy_helper.from_array(np.array([0], np.int64), "c0"),
        numpy_helper.from_array(np.array([1], np.int64), "c1"),
        numpy_helper.from_array(np.array(2, np.int32), "two"),
        numpy_helper.from_array(np.arange(4, dtype=np.int32).reshape(1, 4, 1, 1), "classes"),
    ]
    nodes = [
        helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2], keepdims=1),
        helper.make_node("Greater", ["x", "m"], ["gt"]),
        helper.make_node("Cast", ["gt"], ["gti"], to=TensorProto.INT32),
        helper.make_node("Gather", ["gti", "c0"], ["r"], axis=3),
        helper.make_node("Gather", ["gti", "c1"], ["g"], axis=3),
        helper.make_node("Mul", ["g", "two"], ["g2"]),
        helper.make_node("Add", ["r", "g2"], ["sum"]),   # [batch, s, s, 1]
    ]
    if output == "labels":
        nodes.append(helper.make_node("Squeeze", ["sum", "c3"], ["labels"]))
        inits.append(numpy_helper.from_array(np.array([3], np.int64), "c3"))
        out = helper.make_tensor_value_info("labels", TensorProto.INT32, ["batch", patch, patch])
    else:
        nodes += [helper.make_node("Transpose", ["sum"], ["nchw"], perm=[0, 3, 1, 2]),
                  helper.make_node("Equal", ["nchw", "classes"], ["hot"]),
                  helper.make_node("Cast", ["hot"], ["logits"], to=TensorProto.FLOAT)]
        out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4, patch, patch])
    inp = helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", patch, patch, 3])
    graph = helper.make_graph(nodes, "contrast", [inp], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def contrast_labels(batch: np.ndarray) -> np.ndarray:
    """NumPy oracle of :func:`contrast_patch_model`: (B, s, s, 3) uint8 RGB -> (B, s, s) int32."""
    x = batch.astype(np.float32)
    total = x.sum(axis=(1, 2), keepdims=True, dtype=np.float64)
    mean = (total / (x.shape[1] * x.shape[2])).astype(np.float32)
    gt = (x > mean).astype(np.int32)
    return gt[..., 0] + 2 * gt[..., 1]


def guard_doc(model_sha: str, patch: int = PATCH, frame=(48, 64), k: int = 8, low: int = 2,
              high: int = 6, threshold: float = 0.99, output: str = "labels") -> dict:
    """A complete schema-1 guard.json document for the contrast model."""
    from edge_guard.bundle import new_guard_doc

    out = ({"kind": "labels", "name": "labels", "dtype": "int32", "shape": ["batch", patch, patch]}
           if output == "labels" else
           {"kind": "logits", "name": "logits", "dtype": "float32", "shape": ["batch", 4, patch, patch]})
    model = {"file": "model.onnx", "sha256": model_sha, "format": "onnx", "opset": 17,
             "patch_size": patch,
             "input": {"name": "image", "dtype": "uint8", "layout": "NHWC", "channels": "RGB",
                       "shape": ["batch", patch, patch, 3]},
             "normalization": {"where": "in-graph", "scale": 255.0, "mean": [0.0, 0.0, 0.0],
                               "std": [1.0, 1.0, 1.0]},
             "num_classes": 4, "class_names": ["dark", "red", "green", "yellow"], "output": out}
    detector = {"method": "spatial", "patch_size": patch, "b_low": low, "b_high": high, "k": k,
                "pairing": "independent", "threshold": threshold,
                "threshold_rule": {"rule": "fpr", "target_fpr": 0.05, "achieved_fpr": 0.04,
                                   "benign_frames": 100,
                                   "quantiles": {"0.01": 0.9, "0.05": 0.95, "0.5": 0.99}}}
    return new_guard_doc(model, detector, frame, evaluation={"auc": {"noise": 0.97}})


def make_guard_bundle(root, patch: int = PATCH, frame=(48, 64), k: int = 8, threshold: float = 0.99,
                      output: str = "labels", **detector):
    """A bundle folder with the contrast model and a valid guard.json; returns the folder."""
    from edge_guard.bundle import write_guard_json
    from edge_guard.engine_cache import sha256_file

    root.mkdir(parents=True, exist_ok=True)
    onnx.save_model(contrast_patch_model(patch, output), str(root / "model.onnx"))
    doc = guard_doc(sha256_file(root / "model.onnx"), patch, frame, k, threshold=threshold,
                    output=output, **detector)
    write_guard_json(root, doc)
    return root


# ---------------------------------------------------------------- a frame-detector bundle

def pixel_model(height: int, width: int) -> onnx.ModelProto:
    """image uint8 [batch, h, w, 3] RGB -> labels int32 [batch, h, w], per pixel:
    ``label = (R > 127) + 2 * (G > 127)`` (4 classes): a patch's labels equal the frame's on
    the same pixels, whatever the crop (the frame detector scores 1 on every frame)."""
    inits = [numpy_helper.from_array(np.array(127, np.uint8), "t"),
             numpy_helper.from_array(np.array([0], np.int64), "c0"),
             numpy_helper.from_array(np.array([1], np.int64), "c1"),
             numpy_helper.from_array(np.array([3], np.int64), "c3"),
             numpy_helper.from_array(np.array(2, np.int32), "two")]
    nodes = [
        helper.make_node("Greater", ["image", "t"], ["gt"]),
        helper.make_node("Cast", ["gt"], ["gti"], to=TensorProto.INT32),
        helper.make_node("Gather", ["gti", "c0"], ["r"], axis=3),
        helper.make_node("Gather", ["gti", "c1"], ["g"], axis=3),
        helper.make_node("Mul", ["g", "two"], ["g2"]),
        helper.make_node("Add", ["r", "g2"], ["sum"]),
        helper.make_node("Squeeze", ["sum", "c3"], ["labels"]),
    ]
    inp = helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", height, width, 3])
    out = helper.make_tensor_value_info("labels", TensorProto.INT32, ["batch", height, width])
    graph = helper.make_graph(nodes, "pixel", [inp], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def pixel_labels(batch: np.ndarray) -> np.ndarray:
    """NumPy oracle of :func:`pixel_model`: (B, h, w, 3) uint8 RGB -> (B, h, w) int32."""
    gt = (batch > 127).astype(np.int32)
    return gt[..., 0] + 2 * gt[..., 1]


def make_frame_bundle(root, patch: int = PATCH, frame=(48, 64), k: int = 4, threshold: float = 0.9,
                      statistic: str = "agreement", min_pixels: int = 0, model: str = "pixel"):
    """A bundle folder for the frame detector: model.onnx (patches) and segment.onnx (frames),
    both ``pixel_model`` (``model="contrast"``: the contrast model for patches and frames,
    whose labels depend on the region's mean, so patches and frame disagree)."""
    from edge_guard.bundle import detector_section, new_guard_doc, write_guard_json
    from edge_guard.engine_cache import sha256_file

    root.mkdir(parents=True, exist_ok=True)
    if model == "pixel":
        onnx.save_model(pixel_model(patch, patch), str(root / "model.onnx"))
        onnx.save_model(pixel_model(*frame), str(root / "segment.onnx"))
    else:
        onnx.save_model(contrast_patch_model(patch), str(root / "model.onnx"))
        full = contrast_patch_model(patch)
        for t in (*full.graph.input, *full.graph.output):  # same graph, frame-sized
            dims = t.type.tensor_type.shape.dim
            dims[1].dim_value, dims[2].dim_value = frame
        onnx.save_model(full, str(root / "segment.onnx"))
    doc = guard_doc(sha256_file(root / "model.onnx"), patch, frame, k, threshold=threshold)
    doc["model"]["frame_graph"] = {"file": "segment.onnx", "sha256": sha256_file(root / "segment.onnx")}
    det = detector_section("frame", patch, k, statistic, min_pixels, threshold=threshold)
    det["threshold_rule"] = doc["detector"]["threshold_rule"]
    doc = new_guard_doc(doc["model"], det, frame, evaluation={"auc": {"noise": 0.99}})
    write_guard_json(root, doc)
    return root
