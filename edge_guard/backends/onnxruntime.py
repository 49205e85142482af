"""ONNX Runtime backend: CPU by default, CUDA when onnxruntime-gpu can start it.

ORT falls back to its CPU provider without an error when a GPU provider fails to load
(missing CUDA/cuDNN libraries), so the runner reads ``session.get_providers()`` after the
session exists and reports the provider actually in use.
"""

from __future__ import annotations

import numpy as np

from edge_guard.bundle import TensorSpec
from edge_guard.errors import MissingDependency, UserError

from .base import Runner

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# ORT's own TensorRT provider is left out of the defaults: it builds an engine on every
# session start (minutes); the project's TensorRT backend caches engines in the bundle.
GPU_PROVIDERS = (CUDA,)

_DTYPES = {"float": "float32", "double": "float64", "float16": "float16", "bool": "bool"}

# A guard runs two sessions by turns (the full-frame graph, then the patches), and a vehicle
# may run its own model beside them. ORT's idle intra-op threads spin for a while after a run,
# so each session's pool stalled the other's: on 2 cores a frame (segment.onnx + 5 patches)
# took 131 ms with spinning and 78-97 ms without (ORT 1.32). ORT's process-wide pool would
# avoid it too, but once made it refuses every session with its own pool, the vehicle's
# included: our sessions do not spin instead.
NO_SPIN = ("session.intra_op.allow_spinning", "0")


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependency(
            "the ONNX Runtime backend needs onnxruntime, which is not installed: "
            "pip install 'edge-guard[cpu]' (or 'edge-guard[gpu]' on an NVIDIA GPU)") from None
    return onnxruntime


def available_providers() -> list[str]:
    """Execution providers this onnxruntime build offers ([] when it is not installed)."""
    try:
        return list(import_onnxruntime().get_available_providers())
    except MissingDependency:
        return []


def gpu_providers() -> list[str]:
    """The GPU providers that onnxruntime-gpu offers here, fastest first."""
    offered = available_providers()
    return [p for p in GPU_PROVIDERS if p in offered]


def _spec(arg) -> TensorSpec:
    t = arg.type  # "tensor(uint8)"
    name = t[len("tensor("):-1] if t.startswith("tensor(") else t
    shape = tuple(d if isinstance(d, int) else None for d in (arg.shape or ()))
    return TensorSpec(arg.name, _DTYPES.get(name, name), shape)


class OnnxRuntimeRunner(Runner):
    """An InferenceSession of a patch graph.

    ``providers``: ORT execution providers in order of preference (default: CPU only);
    the CPU provider is always appended as the fallback. ``threads``: intra-op threads
    (default: ORT's choice, all cores). ``output``: the output to read (default: the first).
    """

    name = "onnxruntime"

    def __init__(self, model_path, providers=None, threads: int | None = None,
                 output: str | None = None):
        super().__init__()
        self.model_path = str(model_path)
        requested = list(providers) if providers else [CPU]
        if CPU not in requested:
            requested.append(CPU)
        self.requested = requested
        self.threads = threads
        self._output = output
        self._session = None

    def _activate(self) -> None:
        ort = import_onnxruntime()
        offered = ort.get_available_providers()
        missing = [p for p in self.requested if p not in offered]
        if missing:
            raise UserError(f"this onnxruntime offers {', '.join(offered)}, not {', '.join(missing)}: "
                            "install 'edge-guard[gpu]' for the CUDA provider")
        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = int(self.threads)
            opts.inter_op_num_threads = 1
        opts.add_session_config_entry(*NO_SPIN)
        opts.log_severity_level = 3  # errors only; the provider in use is reported instead
        try:
            session = ort.InferenceSession(self.model_path, opts, providers=self.requested)
        except Exception as exc:  # ORT raises its own exception types for bad graphs
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"ONNX Runtime cannot load {self.model_path}: {first}") from None
        self._session = session
        self.provider = session.get_providers()[0]
        self.inputs = [_spec(a) for a in session.get_inputs()]
        self.outputs = [_spec(a) for a in session.get_outputs()]
        self._input_name = self.inputs[0].name
        # A missing output is reported by check_graph (open_runner) or by infer, not here,
        # so the bundle's one-line message wins over this generic one.
        shapes = {o.name: o.shape for o in self.outputs}
        self._output_name = self._output or self.outputs[0].name
        self._has_output = self._output_name in shapes
        self._logits = len(shapes.get(self._output_name, ())) == 4

    @property
    def fell_back(self) -> bool:
        """True when a GPU provider was asked for but the session runs on the CPU."""
        return self.is_active and self.provider == CPU and self.requested[0] != CPU

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        if not self._has_output:
            raise UserError(f"{self.model_path} has no output {self._output_name!r} "
                            f"(it has {[o.name for o in self.outputs]})")
        y = self._session.run([self._output_name], {self._input_name: np.ascontiguousarray(batch)})[0]
        if self._logits:  # (B, C, s, s) scores: argmax on the host
            return y.argmax(axis=1).astype(np.int32)
        return y.astype(np.int32, copy=False)

    def _close(self) -> None:
        self._session = None
