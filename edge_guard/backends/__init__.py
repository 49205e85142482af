"""Inference backends behind one interface: :class:`Runner` (see ``base``).

``open_runner(bundle, backend)`` picks and activates one, and checks the graph's inputs and
outputs against guard.json before the first frame. ``graph="patch"`` (default) runs the
bundle's patch graph (model.onnx), ``graph="frame"`` its full-frame graph (segment.onnx):

- ``tensorrt``: the bundle's TensorRT engine for this GPU (built beforehand on the device by
  ``edge-guard build-engine``), with crop and scoring on the GPU (backends/tensorrt.py);
- ``onnxruntime``: ONNX Runtime with its CUDA provider when onnxruntime-gpu offers one, else
  the CPU (the provider actually in use is reported: ORT falls back to the CPU silently);
- ``onnxruntime-cpu``: ONNX Runtime on the CPU only;
- ``auto``: TensorRT when installed with a GPU and valid cached engines, else ONNX Runtime
  CUDA, else ONNX Runtime CPU (backends/select.py). ``runner.selection`` says which and why
  the better ones were passed over.
"""

from __future__ import annotations

import warnings

from edge_guard.bundle import Bundle, check_graph
from edge_guard.errors import UserError

from . import select
from .base import FunctionRunner, Runner

BACKENDS = ("auto", "onnxruntime", "onnxruntime-cpu", "tensorrt")

__all__ = ["BACKENDS", "FunctionRunner", "Runner", "open_runner", "make_runner"]


def _runner(bundle: Bundle, choice: select.Selection, threads, pairs, precision, graph="patch") -> Runner:
    if choice.backend == "tensorrt":
        from .tensorrt import TensorRTRunner

        # Asked for by name, a missing engine is built on first use; `auto` only picks
        # TensorRT when the engines are cached, so it never stalls for minutes unannounced.
        engine = choice.engine if graph == "patch" else choice.frame_engine
        runner = TensorRTRunner(bundle, pairs=pairs, precision=precision, engine=engine,
                                build=engine is None, graph=graph)
    else:
        from .onnxruntime import OnnxRuntimeRunner, gpu_providers, import_onnxruntime

        import_onnxruntime()  # MissingDependency naming the extra, before anything else
        providers = None if choice.backend == "onnxruntime-cpu" else gpu_providers()
        path = bundle.model_path if graph == "patch" else bundle.frame_graph_path
        runner = OnnxRuntimeRunner(path, providers=providers, threads=threads,
                                   output=bundle.output_name)
    runner.selection = choice.note
    return runner


def make_runner(bundle: Bundle, backend: str = "auto", threads: int | None = None,
                pairs: int | None = None, precision: str | None = None, graph: str = "patch") -> Runner:
    """The (inactive) runner for ``backend``; UserError for an unknown or unavailable one.

    ``pairs``: the K it will run (TensorRT engines have a batch range); ``precision``: the
    TensorRT engine to run (default: the first valid of fp16, int8, fp32); ``graph``:
    "patch" or "frame" (the full-frame graph).
    """
    if graph == "frame" and bundle.frame_graph_path is None:
        raise UserError(f"{bundle.root} has no full-frame graph (model.frame_graph): recalibrate the bundle")
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}: choose {', '.join(BACKENDS)}")
    if precision and backend.startswith("onnxruntime"):
        raise UserError(f"--precision {precision} picks a TensorRT engine; the {backend} backend runs "
                        "model.onnx in fp32: drop --precision, or use --backend tensorrt")
    if backend == "auto":
        choice = select.select_backend(bundle, pairs, precision, graph=graph)
        if precision and choice.backend != "tensorrt":
            choice = select.Selection(choice.backend, f"{choice.note}; --precision {precision} applies to "
                                                      "TensorRT engines only: model.onnx runs in fp32")
    else:
        choice = select.Selection(backend, f"{backend} (asked for)")
    return _runner(bundle, choice, threads, pairs, precision, graph)


def _activate(bundle: Bundle, backend: str, threads, pairs, precision, graph) -> Runner:
    runner = make_runner(bundle, backend, threads, pairs, precision, graph)
    try:
        return runner.activate()
    except UserError as exc:
        if backend != "auto" or runner.name != "tensorrt":
            raise
        # A validated engine that still will not start (driver trouble, out of memory):
        # auto goes on with the next backend and says why.
        choice = select.select_backend(bundle, pairs, precision, tensorrt_failure=str(exc), graph=graph)
        return _runner(bundle, choice, threads, pairs, precision, graph).activate()


def open_runner(bundle: Bundle, backend: str = "auto", threads: int | None = None,
                pairs: int | None = None, precision: str | None = None, graph: str = "patch") -> Runner:
    """An active runner for ``bundle``'s patch graph (or, ``graph="frame"``, its full-frame
    graph) whose inputs and outputs were checked against guard.json.

    ``pairs``: the K the runner will be fed (a patch graph with a fixed batch must take the
    detector's K or 2K patches; the full-frame graph takes one frame).
    """
    runner = _activate(bundle, backend, threads, pairs, precision, graph)
    try:
        batch = bundle.patch_batch(pairs) if graph == "patch" else 1
        check_graph(bundle, runner.inputs, runner.outputs, batch=batch, graph=graph)
    except BaseException:
        runner.close()
        raise
    if getattr(runner, "fell_back", False):
        runner.selection += f" (but {runner.requested[0]} did not start: running on {runner.provider})"
        warnings.warn(f"ONNX Runtime could not start {runner.requested[0]}: running on "
                      f"{runner.provider}", RuntimeWarning, stacklevel=2)
    return runner
