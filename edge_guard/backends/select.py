"""``auto`` backend selection: TensorRT > ONNX Runtime CUDA > ONNX Runtime CPU.

TensorRT is picked when the ``tensorrt`` module is installed, a CUDA GPU is present and
the bundle holds engines that validate for this GPU, TensorRT version and K: the patch
graph's, and the full-frame graph's for the frame detector (its device pipeline runs both)
or when that graph is the one being opened. The
:class:`Selection` note says what was picked and why each better backend was not, so a
vehicle log shows why it runs slower than it could (e.g. the engine was never built).
The probes are module functions so tests can replace them.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from edge_guard.bundle import Bundle
from edge_guard.errors import UserError

from .trt_cache import EngineChoice, build_command


@dataclass
class Selection:
    """``backend``: one of BACKENDS other than auto; ``note``: one line for logs and users;
    ``engine`` / ``frame_engine``: the patch and full-frame engines TensorRT was picked with."""

    backend: str
    note: str
    engine: EngineChoice | None = None
    frame_engine: EngineChoice | None = None


def tensorrt_installed() -> bool:
    try:
        return importlib.util.find_spec("tensorrt") is not None
    except (ImportError, ValueError):
        return False


def cuda_python_installed() -> bool:
    try:
        return importlib.util.find_spec("cuda") is not None
    except (ImportError, ValueError):
        return False


def gpu_present() -> bool:
    from edge_guard.kernels.device import gpu_count

    return gpu_count() > 0


def cached_engine(bundle: Bundle, batch: int, precision: str | None = None,
                  graph: str = "patch") -> EngineChoice:
    """The engine of ``graph`` TensorRT would run here, or why there is none."""
    from edge_guard.engine_cache import current_device

    from .tensorrt import find_engine, import_tensorrt

    try:
        trt = import_tensorrt()
        device = current_device(trt.__version__)
    except UserError as exc:
        return EngineChoice(None, None, None, str(exc))
    return find_engine(bundle, device, batch, precision, graph)


def needed_graphs(bundle: Bundle, graph: str = "patch") -> tuple:
    """The graphs whose engines TensorRT needs to open ``graph``: the frame detector's device
    pipeline runs both, so either runner needs both engines."""
    if bundle.method == "frame" and bundle.frame_graph_path is not None:
        return ("patch", "frame")
    return (graph,)


def ort_cuda_offered() -> bool:
    from .onnxruntime import CUDA, available_providers

    return CUDA in available_providers()


def select_backend(bundle: Bundle, pairs: int | None = None, precision: str | None = None,
                   tensorrt_failure: str | None = None, graph: str = "patch") -> Selection:
    """The fastest usable backend for ``bundle``'s ``graph`` ("patch" or "frame") run with
    ``pairs`` (default: its K).

    ``tensorrt_failure``: why the TensorRT runner picked before failed to start (it is
    then passed over with that reason).
    """
    k = int(pairs if pairs is not None else bundle.k)
    passed = []
    if tensorrt_failure is not None:
        passed.append(f"tensorrt: failed to start ({tensorrt_failure})")
    elif not tensorrt_installed():
        passed.append("tensorrt: not installed (pip install 'edge-guard[gpu]')")
    elif not cuda_python_installed():
        passed.append("tensorrt: cuda-python is not installed (pip install 'edge-guard[gpu]')")
    elif not gpu_present():
        passed.append("tensorrt: no CUDA GPU found")
    else:
        choices = {g: cached_engine(bundle, bundle.patch_batch(k) if g == "patch" else 1, precision, g)
                   for g in needed_graphs(bundle, graph)}
        missing = [c.reason for c in choices.values() if c.path is None]
        if not missing:
            names = ", ".join(c.path.name for c in choices.values() if c.path)
            precisions = "/".join(dict.fromkeys(c.precision for c in choices.values() if c.precision))
            return Selection("tensorrt", f"auto: tensorrt ({precisions} engine{'s' * (len(choices) > 1)} "
                                         f"{names})", choices.get("patch"), choices.get("frame"))
        passed.append(f"tensorrt: {'; '.join(missing)} (build it: `{build_command(bundle, precision, k)}`)")
    if ort_cuda_offered():
        return Selection("onnxruntime", _note("onnxruntime CUDA", passed))
    passed.append("onnxruntime CUDA: this onnxruntime has no CUDAExecutionProvider "
                  "(pip install 'edge-guard[gpu]')")
    return Selection("onnxruntime-cpu", _note("onnxruntime CPU", passed))


def _note(picked: str, passed: list) -> str:
    return f"auto: {picked}" + (f"; passed over {'; '.join(passed)}" if passed else "")
