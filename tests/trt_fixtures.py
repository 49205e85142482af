"""Fake engines and runners of the tiny bundles for the TensorRT backend tests (no GPU):
engines are the bundle's ONNX graphs behind fake_tensorrt's header, with valid sidecars."""

import json
import shutil

import numpy as np
from fake_tensorrt import FakeCudart, fake_kernels, make_fake_trt
from tiny_bundle import PATCH

from edge_guard.backends.tensorrt import TensorRTRunner
from edge_guard.engine_cache import (DeviceInfo, engine_path, frame_profile, onnx_name, precision_record_path,
                                     profile_shapes, sha256_file, write_sidecar)

ORIN = DeviceInfo("Orin", (8, 7), "10.3.0")
K = 8  # make_guard_bundle's K
FRAME = (48, 64)  # the tiny bundles' frame size


def put_engine(root, precision="fp32", device=ORIN, max_pairs=K, garbage=False, graph="patch", per_k=2):
    """A fake engine of the bundle's ``graph`` for ``precision`` with a valid sidecar
    (patch graph: ``per_k`` patches per K, 2 for pairs; full-frame graph: one 48x64 frame)."""
    source = "model.onnx" if graph == "patch" else "segment.onnx"
    onnx_file = root / onnx_name(precision, source)
    if not onnx_file.exists():
        shutil.copy(root / source, onnx_file)
    if precision != "fp32":  # what build-engine records of the graph it converted
        precision_record_path(onnx_file).write_text(json.dumps({"source_sha256": sha256_file(root / source)}))
    builder = make_fake_trt(device.tensorrt).Builder(None)
    net = builder.create_network(0)
    net._raw = onnx_file.read_bytes()
    config = builder.create_builder_config()
    if graph == "patch":
        shapes = profile_shapes(PATCH, max_pairs, min(K, max_pairs), per_k)
    else:
        shapes = frame_profile(*FRAME)
    profile = builder.create_optimization_profile()
    profile.set_shape("image", *(tuple(shapes[x]) for x in ("min", "opt", "max")))
    config.add_optimization_profile(profile)
    path = engine_path(root, precision, device, graph)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"not an engine" if garbage else builder.build_serialized_network(net, config))
    write_sidecar(path, onnx_path=onnx_file, precision=precision, device=device, input_name="image",
                  profile=shapes, graph=graph)
    return path


def fake_runner(bundle, **kw):
    cudart = FakeCudart()
    runner = TensorRTRunner(bundle, trt=make_fake_trt("10.3.0"), cudart=cudart, device_info=ORIN,
                            kernels=fake_kernels, **kw)
    return runner, cudart


def noisy_frames(n=3, seed=0, shape=(60, 80, 3)):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]
