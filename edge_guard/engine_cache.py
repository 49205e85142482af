"""TensorRT engines cached in a bundle: their names, sidecars and validation (stdlib only).

An engine is specific to a graph, a GPU, its compute capability, the TensorRT version and
the precision, so its file name carries all five::

    BUNDLE/engines/model.fp16.sm87.trt10.3.0.orin.engine          (the patch graph)
    BUNDLE/engines/model.fp16.sm87.trt10.3.0.orin.engine.json     (sidecar)
    BUNDLE/engines/segment.fp16.sm87.trt10.3.0.orin.engine        (the full-frame graph)

The sidecar is written only after the engine passed its check against the fp32 model; it
holds the engine's sha256 and size, the sha256 of the ONNX file it was built from and the
optimisation profile. :func:`validate_engine` refuses an engine without a sidecar, a
truncated or altered one, one built from another ONNX file, for another device or TensorRT,
or one whose profile cannot take the batch (or frame size) the runtime needs: such an
engine is rebuilt, never run. Shared by ``edge-guard build-engine`` (offline) and the
runtime's TensorRT backend.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from .errors import UserError

ENGINE_DIR = "engines"
PRECISIONS = ("fp32", "fp16", "int8")
SIDECAR_VERSION = 1
# The ONNX file each precision is built from (fp16/int8 carry their precision in the graph:
# TensorRT 11 builds strongly typed networks only).
ONNX_FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
#: The graphs a bundle holds -> the stem of their engines' names.
ENGINE_STEMS = {"patch": "model", "frame": "segment"}


def onnx_name(precision: str, graph_file: str = "model.onnx") -> str:
    """The ONNX file a ``precision`` engine of ``graph_file`` is built from: the file itself
    for fp32, else ``<stem>.<precision>.onnx`` beside it (model.fp16.onnx, segment.int8.onnx)."""
    check_precision(precision)
    return graph_file if precision == "fp32" else f"{Path(graph_file).stem}.{precision}.onnx"


@dataclass(frozen=True)
class DeviceInfo:
    """The GPU and TensorRT an engine is built for / run on."""

    gpu: str                     # e.g. "Orin (nvgpu)", "NVIDIA H100 80GB HBM3"
    compute_capability: tuple    # (major, minor)
    tensorrt: str                # e.g. "10.3.0"

    @property
    def sm(self) -> str:
        major, minor = self.compute_capability
        return f"sm{int(major)}{int(minor)}"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["compute_capability"] = list(self.compute_capability)
        return d


def sanitize_gpu_name(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'h100-80gb-hbm3'; 'Orin (nvgpu)' -> 'orin-nvgpu'."""
    text = name.lower().replace("nvidia", " ").replace("geforce", " ")
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    return slug[:40].strip("-") or "gpu"


def _sanitize_version(version: str) -> str:
    return re.sub(r"[^0-9A-Za-z.]+", "-", str(version)).strip("-.") or "unknown"


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}: choose {', '.join(PRECISIONS)}")
    return precision


def check_graph_name(graph: str) -> str:
    if graph not in ENGINE_STEMS:
        raise UserError(f"unknown graph {graph!r}: choose {', '.join(ENGINE_STEMS)}")
    return graph


def engine_filename(precision: str, device: DeviceInfo, graph: str = "patch") -> str:
    """``model.<precision>.sm<XY>.trt<version>.<gpu>.engine`` (``segment.`` for the full-frame graph)."""
    check_precision(precision)
    return (f"{ENGINE_STEMS[check_graph_name(graph)]}.{precision}.{device.sm}."
            f"trt{_sanitize_version(device.tensorrt)}.{sanitize_gpu_name(device.gpu)}.engine")


def engine_path(bundle, precision: str, device: DeviceInfo, graph: str = "patch") -> Path:
    return Path(bundle) / ENGINE_DIR / engine_filename(precision, device, graph)


def sidecar_path(engine: Path) -> Path:
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def timing_cache_path(bundle, device: DeviceInfo) -> Path:
    """Timing caches are as device- and version-specific as engines."""
    return (Path(bundle) / ENGINE_DIR /
            f"timing.{device.sm}.trt{_sanitize_version(device.tensorrt)}.{sanitize_gpu_name(device.gpu)}.cache")


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def profile_shapes(patch: int, max_pairs: int, opt_pairs: int, per_k: int = 2) -> dict:
    """Optimisation profile of the NHWC uint8 patch input: ``per_k`` patches per unit of K
    (2 for pairs, 1 for the frame detector's single patches) at K = 1, opt, max."""
    patch, max_pairs, opt_pairs, per_k = int(patch), int(max_pairs), int(opt_pairs), int(per_k)
    if patch < 1 or max_pairs < 1:
        raise UserError(f"patch size and max pairs must be positive, got {patch} and {max_pairs}")
    opt_pairs = min(max(opt_pairs, 1), max_pairs)
    shape = lambda n: [per_k * n, patch, patch, 3]  # noqa: E731
    return {"min": shape(1), "opt": shape(opt_pairs), "max": shape(max_pairs)}


def frame_profile(height: int, width: int) -> dict:
    """Profile of the full-frame graph's input: one (height, width) frame."""
    shape = [1, int(height), int(width), 3]
    return {"min": shape, "opt": list(shape), "max": list(shape)}


def write_sidecar(engine: Path, *, onnx_path: Path, precision: str, device: DeviceInfo,
                  input_name: str, profile: dict, verification: dict | None = None,
                  graph: str = "patch") -> dict:
    """Write ``<engine>.json`` for an engine file that passed its checks; returns the dict."""
    engine = Path(engine)
    meta = {
        "sidecar_version": SIDECAR_VERSION,
        "engine_file": engine.name,
        "engine_sha256": sha256_file(engine),
        "engine_size": engine.stat().st_size,
        "onnx_file": Path(onnx_path).name,
        "onnx_sha256": sha256_file(onnx_path),
        "precision": precision,
        "graph": check_graph_name(graph),
        "device": device.as_dict(),
        "input": input_name,
        "profile": profile,
        "verification": verification or {},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    tmp = sidecar_path(engine).with_name(sidecar_path(engine).name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    tmp.replace(sidecar_path(engine))
    return meta


@dataclass
class EngineCheck:
    """Outcome of :func:`validate_engine`: usable when ``ok``; else ``reason`` says why not."""

    ok: bool
    reason: str
    sidecar: dict | None = None


def validate_engine(engine: Path, onnx_path: Path | None = None, device: DeviceInfo | None = None,
                    precision: str | None = None, batch: int | None = None,
                    patch: int | None = None, check_sha: bool = True,
                    frame: tuple | None = None) -> EngineCheck:
    """Can ``engine`` be run? Compares file, sidecar, ONNX source, device and profile.

    ``batch``: the number of patches (K or 2K; 1 frame) the caller will run at most; ``None``
    skips the profile check. ``patch``: the side of the patches; ``frame``: (height, width)
    of the full-frame graph's frames. ``check_sha=False`` skips hashing the engine (size is
    still compared).
    """
    engine = Path(engine)
    side = sidecar_path(engine)
    if not engine.is_file():
        return EngineCheck(False, f"no engine file {engine.name}")
    if not side.is_file():
        return EngineCheck(False, f"{engine.name} has no sidecar {side.name} (unverified build)")
    try:
        meta = json.loads(side.read_text())
        if not isinstance(meta, dict):
            raise ValueError("not an object")
    except (OSError, ValueError) as exc:
        return EngineCheck(False, f"sidecar {side.name} is unreadable ({exc})")
    if meta.get("sidecar_version") != SIDECAR_VERSION:
        return EngineCheck(False, f"sidecar {side.name} has version {meta.get('sidecar_version')!r}", meta)
    size = engine.stat().st_size
    if size != meta.get("engine_size"):
        return EngineCheck(False, f"{engine.name} is {size} bytes, its sidecar says "
                                  f"{meta.get('engine_size')} (truncated or replaced)", meta)
    if check_sha and sha256_file(engine) != meta.get("engine_sha256"):
        return EngineCheck(False, f"{engine.name} does not match the sha256 in its sidecar", meta)
    if onnx_path is not None:
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            return EngineCheck(False, f"its ONNX source {onnx_path.name} is missing", meta)
        if sha256_file(onnx_path) != meta.get("onnx_sha256"):
            return EngineCheck(False, f"{onnx_path.name} changed since {engine.name} was built", meta)
    if precision is not None and meta.get("precision") != precision:
        return EngineCheck(False, f"{engine.name} is {meta.get('precision')}, not {precision}", meta)
    if device is not None:
        built = meta.get("device") or {}
        if built != device.as_dict():
            return EngineCheck(False, f"{engine.name} was built for {built}, this is {device.as_dict()}", meta)
    profile = meta.get("profile") or {}
    lo_shape, hi_shape = (_profile_shape(profile, key) for key in ("min", "max"))
    wants_profile = patch is not None or batch is not None or frame is not None
    if wants_profile and (lo_shape is None or hi_shape is None):
        return EngineCheck(False, f"{engine.name}'s record has no valid input profile (min/max shapes)", meta)
    if patch is not None and hi_shape[1] != int(patch):
        return EngineCheck(False, f"{engine.name} takes {hi_shape[1]}px patches, not {patch}px", meta)
    if frame is not None and hi_shape[1:3] != [int(v) for v in frame]:
        return EngineCheck(False, f"{engine.name} takes {'x'.join(map(str, hi_shape[1:3]))} frames, "
                                  f"not {frame[0]}x{frame[1]}", meta)
    if batch is not None:
        lo, hi = lo_shape[0], hi_shape[0]
        if not lo <= int(batch) <= hi:
            return EngineCheck(False, f"{engine.name} runs batches of {lo}..{hi} patches, "
                                      f"{batch} needed: rebuild with a larger --max-pairs", meta)
    return EngineCheck(True, "ok", meta)


def precision_record_path(onnx_path: Path) -> Path:
    """model.fp16.onnx -> model.fp16.json: what that file was made from (build-engine writes it)."""
    return Path(onnx_path).with_suffix(".json")


def read_precision_record(onnx_path: Path) -> dict:
    """The record beside a derived fp16/int8 ONNX; {} when missing or unreadable."""
    try:
        record = json.loads(precision_record_path(onnx_path).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def made_from(onnx_path: Path) -> str | None:
    """sha256 of the model.onnx that a derived fp16/int8 ONNX was made from; None if unrecorded."""
    return read_precision_record(onnx_path).get("source_sha256")


def _profile_shape(profile, key: str) -> list | None:
    """The sidecar's profile[key] as a list of >= 2 ints (batch, side, ...), None if malformed."""
    shape = profile.get(key) if isinstance(profile, dict) else None
    if not isinstance(shape, list) or len(shape) < 2:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in shape):
        return None
    return shape


def current_device(tensorrt_version: str, device_index: int = 0) -> DeviceInfo:
    """Name and compute capability of CUDA device ``device_index`` via cuda-python."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            raise UserError("querying the GPU needs cuda-python: pip install 'edge-guard[gpu]'") from None
    err, prop = cudart.cudaGetDeviceProperties(device_index)
    if int(err) != 0:
        raise UserError(f"no usable CUDA device {device_index} (cudaGetDeviceProperties: {err})")
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return DeviceInfo(name.rstrip("\x00").strip(), (int(prop.major), int(prop.minor)), str(tensorrt_version))
