"""Finding a bundle's cached TensorRT engine for this GPU, or saying how to build it.

Each graph has its own engines: the patch graph's (``model.<precision>...engine``, a batch of
K patches for the frame detector or 2K for pairs) and the full-frame graph's
(``segment.<precision>...engine``, one frame of the bundle's size). Both are validated the
same way (edge_guard.engine_cache: sidecar, device, TensorRT version, the ONNX's sha256, the
profile); an fp16/int8 engine also needs its derived ONNX to have been made from the
bundle's current graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_guard.bundle import Bundle
from edge_guard.engine_cache import (ENGINE_DIR, DeviceInfo, EngineCheck, check_graph_name, engine_path,
                                     made_from, onnx_name, validate_engine)
from edge_guard.errors import UserError

#: Cached engines tried in this order when no precision is asked for: build-engine's default
#: first; every engine with a sidecar passed its check against the fp32 model.
PRECISION_ORDER = ("fp16", "int8", "fp32")

#: build-engine's default --max-pairs
BUILD_MAX_PAIRS = 50


@dataclass
class EngineChoice:
    """A cached engine that validated (``path`` set), or why none did (``reason``)."""

    path: Path | None
    precision: str | None
    device: DeviceInfo | None
    reason: str


def graph_source(bundle: Bundle, graph: str = "patch") -> tuple[str, str]:
    """(the file an fp32 engine of ``graph`` is built from, the sha256 guard.json records for
    that graph). The patch graph's derived files keep their historical ``model.*`` names."""
    if check_graph_name(graph) == "patch":
        return "model.onnx", bundle.model_sha256
    if bundle.frame_graph_path is None:
        raise UserError(f"{bundle.root} has no full-frame graph (model.frame_graph): recalibrate the bundle")
    return bundle.frame_graph_path.name, bundle.model["frame_graph"]["sha256"]


def find_engine(bundle: Bundle, device: DeviceInfo, batch: int, precision: str | None = None,
                graph: str = "patch") -> EngineChoice:
    """The first engine of ``graph`` and ``precision`` (default: PRECISION_ORDER) that
    validates for ``device`` and a batch of ``batch`` patches (the full-frame graph: 1 frame
    of the bundle's frame size)."""
    source, source_sha = graph_source(bundle, graph)
    reasons = []
    for p in ((precision,) if precision else PRECISION_ORDER):
        path = engine_path(bundle.root, p, device, graph)
        onnx_file = bundle.root / onnx_name(p, source)
        if graph == "patch":
            check = validate_engine(path, onnx_file, device, p, batch=batch, patch=bundle.patch_size)
        else:
            check = validate_engine(path, onnx_file, device, p, batch=1, frame=bundle.frame_size)
        if check.ok and p != "fp32" and made_from(onnx_file) != source_sha:
            # The engine matches its fp16/int8 ONNX, but that was made from an earlier graph.
            check = EngineCheck(False, f"{onnx_file.name} was made from another {source} "
                                       "(re-exported since): rebuild the engine")
        if check.ok:
            return EngineChoice(path, p, device, "ok")
        if path.exists() or precision:
            reasons.append(check.reason)
    where = f"{device.gpu} ({device.sm}, TensorRT {device.tensorrt})"
    what = "no engine" if graph == "patch" else "no full-frame engine"
    reason = "; ".join(reasons) if reasons else f"{what} for {where} in {bundle.root / ENGINE_DIR}"
    return EngineChoice(None, None, device, reason)


def build_command(bundle: Bundle, precision: str | None = None, pairs: int | None = None) -> str:
    """The command that builds the missing engines (the precision asked for, else one whose
    file exists but did not validate, else build-engine's default), for K = ``pairs``."""
    if precision is None:
        precision = "fp16"
        for p in PRECISION_ORDER:
            if any((bundle.root / ENGINE_DIR).glob(f"*.{p}.*.engine")):
                precision = p
                break
    more = f" --max-pairs {int(pairs)}" if pairs is not None and int(pairs) > BUILD_MAX_PAIRS else ""
    return f"edge-guard build-engine {bundle.root} --precision {precision}{more}"


def engine_error(bundle: Bundle, choice: EngineChoice, precision: str | None = None,
                 pairs: int | None = None) -> UserError:
    return UserError(f"no usable TensorRT engine: {choice.reason}; build one on this device with "
                     f"`{build_command(bundle, precision, pairs)}`")
