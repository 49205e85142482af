"""Inference backends behind one interface: :class:`Runner` (see ``base``).

``open_runner(bundle, backend)`` picks and activates one, and checks the graph's inputs and
outputs against guard.json before the first frame:

- ``onnxruntime``: ONNX Runtime with its CUDA provider when onnxruntime-gpu offers one, else
  the CPU (the provider actually in use is reported: ORT falls back to the CPU silently);
- ``onnxruntime-cpu``: ONNX Runtime on the CPU only;
- ``tensorrt``: not available yet;
- ``auto``: the fastest of the above that is installed (today: ``onnxruntime``).
"""

from __future__ import annotations

import warnings

from edge_guard.bundle import Bundle, check_graph
from edge_guard.errors import UserError

from .base import FunctionRunner, Runner

BACKENDS = ("auto", "onnxruntime", "onnxruntime-cpu", "tensorrt")

__all__ = ["BACKENDS", "FunctionRunner", "Runner", "open_runner", "make_runner"]


def make_runner(bundle: Bundle, backend: str = "auto", threads: int | None = None) -> Runner:
    """The (inactive) runner for ``backend``; UserError for an unknown or unavailable one."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}: choose {', '.join(BACKENDS)}")
    if backend == "tensorrt":
        raise UserError("the TensorRT backend is not available yet: use --backend onnxruntime")
    from .onnxruntime import OnnxRuntimeRunner, gpu_providers, import_onnxruntime

    import_onnxruntime()  # MissingDependency naming the extra, before anything else
    providers = None if backend == "onnxruntime-cpu" else gpu_providers()
    return OnnxRuntimeRunner(bundle.model_path, providers=providers, threads=threads,
                             output=bundle.output_name)


def open_runner(bundle: Bundle, backend: str = "auto", threads: int | None = None,
                pairs: int | None = None) -> Runner:
    """An active runner for ``bundle`` whose graph was checked against guard.json.

    ``pairs``: the K the runner will be fed (a graph with a fixed batch must take 2K).
    """
    runner = make_runner(bundle, backend, threads).activate()
    try:
        check_graph(bundle, runner.inputs, runner.outputs,
                    batch=2 * int(pairs if pairs is not None else bundle.k))
    except BaseException:
        runner.close()
        raise
    if getattr(runner, "fell_back", False):
        warnings.warn(f"ONNX Runtime could not start {runner.requested[0]}: running on "
                      f"{runner.provider}", RuntimeWarning, stacklevel=2)
    return runner
