"""``auto`` backend selection: TensorRT > ONNX Runtime CUDA > ONNX Runtime CPU.

TensorRT is picked when the ``tensorrt`` module is installed, a CUDA GPU is present and
the bundle holds an engine that validates for this GPU, TensorRT version and K. The
:class:`Selection` note says what was picked and why each better backend was not, so a
vehicle log shows why it runs slower than it could (e.g. the engine was never built).
The probes are module functions so tests can replace them.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from edge_guard.bundle import Bundle
from edge_guard.errors import UserError

from .tensorrt import EngineChoice, build_command


@dataclass
class Selection:
    """``backend``: one of BACKENDS other than auto; ``note``: one line for logs and users."""

    backend: str
    note: str
    engine: EngineChoice | None = None


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


def cached_engine(bundle: Bundle, batch: int, precision: str | None = None) -> EngineChoice:
    """The engine TensorRT would run here, or why there is none."""
    from edge_guard.engine_cache import current_device

    from .tensorrt import find_engine, import_tensorrt

    try:
        trt = import_tensorrt()
        device = current_device(trt.__version__)
    except UserError as exc:
        return EngineChoice(None, None, None, str(exc))
    return find_engine(bundle, device, batch, precision)


def ort_cuda_offered() -> bool:
    from .onnxruntime import CUDA, available_providers

    return CUDA in available_providers()


def select_backend(bundle: Bundle, pairs: int | None = None, precision: str | None = None,
                   tensorrt_failure: str | None = None) -> Selection:
    """The fastest usable backend for ``bundle`` run with ``pairs`` (default: its K).

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
        choice = cached_engine(bundle, bundle.patch_batch(k), precision)
        if choice.path is not None:
            return Selection("tensorrt", f"auto: tensorrt ({choice.precision} engine "
                                         f"{choice.path.name})", choice)
        passed.append(f"tensorrt: {choice.reason} (build it: `{build_command(bundle, precision, k)}`)")
    if ort_cuda_offered():
        return Selection("onnxruntime", _note("onnxruntime CUDA", passed))
    passed.append("onnxruntime CUDA: this onnxruntime has no CUDAExecutionProvider "
                  "(pip install 'edge-guard[gpu]')")
    return Selection("onnxruntime-cpu", _note("onnxruntime CPU", passed))


def _note(picked: str, passed: list) -> str:
    return f"auto: {picked}" + (f"; passed over {'; '.join(passed)}" if passed else "")
