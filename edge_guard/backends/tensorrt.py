"""TensorRT backend: a checked engine cached in the bundle, run between the CUDA kernels.

Engines are built on the target by ``edge-guard build-engine`` (it checks each engine
against the fp32 model before writing its sidecar); a bundle with a full-frame graph gets
an engine of that graph too. A stale, truncated or foreign engine is refused with one line
naming the command that builds it. A missing one is built on first use when the backend was
asked for by name (``build=True``; it needs the ``onnx`` and ``onnxruntime`` packages for
the checks and takes minutes, so it says so first); ``auto`` never builds: it picks
TensorRT only when valid engines are cached.

The parts, one module each: ``trt_engine`` (the engine executor :class:`TrtRunner`),
``trt_cache`` (finding the cached engine, the build command), ``trt_pipelines`` (the device
pipelines and their kernels). This module is the Runner: :class:`TensorRTRunner` runs one
graph's engine (``graph="patch"``: model.onnx's, K or 2K patches; ``graph="frame"``: the
full-frame graph's, one frame). Two ways to use the patch runner:

- ``infer(batch)``: the Runner interface, host patches in, host labels out;
- ``device_pipeline(method, k, segmenter, segment, stage_timing)``: the fused hot path
  (trt_pipelines.py): the frame is uploaded once, crop, both engines and scoring run on the
  GPU, and only K + 1 floats (and the frame's labels) come back.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from edge_guard.bundle import Bundle
from edge_guard.engine_cache import ENGINE_DIR, DeviceInfo, check_graph_name, current_device
from edge_guard.errors import UserError, require

from .base import Runner
from .trt_api import TensorRT
from .trt_cache import (BUILD_MAX_PAIRS, PRECISION_ORDER, EngineChoice, build_command, engine_error,
                        find_engine)
from .trt_engine import TrtRunner, import_tensorrt, load_cudart
from .trt_pipelines import DEVICE, DeviceFrame, DeviceKernels, DevicePairs, default_kernels

# The names this module has always offered, now defined in its parts.
__all__ = ["BUILD_MAX_PAIRS", "PRECISION_ORDER", "DeviceFrame", "DeviceKernels", "DevicePairs", "EngineChoice",
           "TensorRTRunner", "TrtRunner", "build_command", "default_kernels", "engine_error", "find_engine",
           "import_tensorrt", "load_cudart"]

# Label dtypes the confusion kernels read in place (edge_guard.kernels.ops.LABEL_TYPES).
_KERNEL_LABELS = ("int32", "int64", "uint8", "uint16", "int16")


class TensorRTRunner(Runner):
    """The bundle's cached engine of one graph for this GPU (see the module docstring).

    ``pairs``: the K the runner will be fed (the patch engine's profile must take
    ``bundle.patch_batch(K)`` patches: K for the frame detector, 2K for pairs);
    ``precision``: the engine to run (default: the first valid of PRECISION_ORDER);
    ``engine``: an :class:`EngineChoice` already found (``auto`` selection), skips the search;
    ``device_scoring``: set up the fused kernels path (falls back to host scoring, with a
    note in ``device_scoring_note``, when the output is logits or the kernels cannot load);
    ``graph``: "patch" or "frame" (the full-frame graph; it has no kernels of its own: the
    patch runner's device pipeline runs it).
    ``trt``, ``cudart``, ``device_info`` and ``kernels(num_classes, label_dtype, method=,
    statistic=, min_pixels=, frame_dtype=)`` are injectable so everything but the GPU can be
    tested.
    """

    name = "tensorrt"

    def __init__(self, bundle: Bundle, pairs: int | None = None, precision: str | None = None,
                 engine: EngineChoice | None = None, device_scoring: bool = True,
                 trt: TensorRT | None = None, cudart=None, device_info: DeviceInfo | None = None, kernels=None,
                 build: bool = False, log=None, graph: str = "patch"):
        super().__init__()
        self.graph = check_graph_name(graph)
        if graph == "frame" and bundle.frame_graph_path is None:
            raise UserError(f"{bundle.root} has no full-frame graph (model.frame_graph): recalibrate the bundle")
        self._build = bool(build)
        self._log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.bundle = bundle
        self.k = int(pairs if pairs is not None else bundle.k)
        #: what one inference feeds the engine: K or 2K patches, or one frame
        self.batch = bundle.patch_batch(self.k) if graph == "patch" else 1
        self.precision = precision
        self._choice = engine
        self._want_device_scoring = bool(device_scoring)
        self._trt, self._cudart, self._device_info = trt, cudart, device_info
        self._kernel_factory = kernels or default_kernels
        self.exe: TrtRunner | None = None
        self.kernels: DeviceKernels | None = None
        self.engine_file: Path | None = None
        self.device_scoring_note = "not active"
        self._pipelines: list = []

    @property
    def supports_device_scoring(self) -> bool:
        return self.is_active and self.kernels is not None

    def _activate(self) -> None:
        trt = self._trt or import_tensorrt()
        cudart = self._cudart or load_cudart()
        choice = self._choice
        if choice is None:
            device = self._device_info or current_device(trt.__version__)
            choice = find_engine(self.bundle, device, self.batch, self.precision, self.graph)
        if choice.path is None and self._build:
            choice = self._build_engine(trt, cudart, choice)
        if choice.path is None:
            raise engine_error(self.bundle, choice, self.precision, self.k)
        exe = TrtRunner(choice.path, trt=trt, cudart=cudart)
        try:
            if not exe.min_batch <= self.batch <= exe.max_batch:
                rebuild = build_command(self.bundle, choice.precision)
                raise UserError(f"{choice.path.name} runs {exe.min_batch}..{exe.max_batch} patches, "
                                f"K={self.k} needs {self.batch}: `{rebuild} --max-pairs {self.k} --force`")
            self.inputs, self.outputs = exe.specs()
            self.kernels, self.device_scoring_note = self._load_kernels(exe)
        except BaseException:
            exe.close()
            raise
        self.exe, self._choice = exe, choice
        self.engine_file, self.precision = choice.path, choice.precision
        where = f" on {choice.device.gpu} ({choice.device.sm})" if choice.device else ""
        self.provider = f"TensorRT {getattr(trt, '__version__', '?')} {choice.precision}{where}"

    def _build_engine(self, trt: TensorRT, cudart, missing: EngineChoice) -> EngineChoice:
        """First use on this device: build and check the engines (`edge-guard build-engine`),
        then find this graph's again. Minutes on a Jetson, so it says so before it starts."""
        require("onnx", "gpu", "building a TensorRT engine on first use")
        require("onnxruntime", "gpu", "checking a TensorRT engine on first use")
        from edge_guard.engines.trt_build import build_engine, read_only_hint

        precision = self.precision or "fp16"
        device = missing.device or self._device_info or current_device(trt.__version__)
        self._log(f"edge-guard: {missing.reason}: building a TensorRT {precision} engine for "
                  f"{device.gpu} on first use (minutes; it is cached in {self.bundle.root / ENGINE_DIR})")
        try:
            build_engine(self.bundle.root, precision, max_pairs=max(BUILD_MAX_PAIRS, self.k), trt=trt,
                         device=device, runner_factory=lambda path, t: TrtRunner(path, trt=t, cudart=cudart),
                         log=self._log)
        except PermissionError:  # a bundle installed read-only (site-packages, a mounted image)
            raise UserError(read_only_hint(self.bundle.root)) from None
        return find_engine(self.bundle, device, self.batch, precision, self.graph)

    def _load_kernels(self, exe: TrtRunner):
        if self.graph == "frame":
            return None, "off: the full-frame engine runs inside the patch runner's device pipeline"
        if not self._want_device_scoring:
            return None, "off (asked for host scoring)"
        if len(exe.out_shape) != 3:
            return None, "off: the engine outputs logits, labels are argmaxed on the host"
        dtype = exe.out_dtype.name
        if dtype not in _KERNEL_LABELS:
            return None, f"off: the kernels do not read {dtype} labels"
        b = self.bundle
        try:
            # The frame labels' type on the GPU: the full-frame engine comes from the same
            # export, so it outputs the patch engine's label type (else it segments on the host).
            kernels = self._kernel_factory(b.num_classes, dtype, method=b.method, statistic=b.statistic,
                                           min_pixels=b.min_pixels, frame_dtype=dtype)
        except (UserError, RuntimeError, ImportError, OSError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return None, f"off: the CUDA kernels cannot load ({first})"
        what = "patch-vs-frame" if b.method == "frame" else "overlap"
        return kernels, f"on (crop, {what} confusion and {b.statistic} on the GPU)"

    def device_pipeline(self, method: str, k: int | None = None, segmenter: Runner | None = None,
                        segment: bool = True, stage_timing: bool = False):
        """The GPU pipeline of ``method`` ("frame" or "pairs") for K = ``k`` (pipelines.py's
        interface); ``segmenter``: the full-frame graph's runner (a TensorRTRunner keeps the
        frame's labels on the GPU). Its buffers are given back when this runner closes."""
        if not self.supports_device_scoring:
            raise UserError(f"the {self.name} runner cannot score on the GPU: device scoring "
                            f"{self.device_scoring_note}")
        if method != self.bundle.method:
            raise UserError(f"the GPU kernels were set up for the {self.bundle.method} detector, not {method}")
        pipeline = DEVICE[method](self, self.k if k is None else int(k), segmenter, segment, stage_timing)
        self._pipelines.append(pipeline)
        return pipeline

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        assert self.exe is not None  # infer() runs an active runner only
        return self.exe(batch)

    def _close(self) -> None:
        exe = self.exe
        if exe is not None:
            for pipeline in self._pipelines:
                pipeline.close()
            if self.kernels is not None:
                self.kernels.close()
            exe.close()
        self._pipelines = []
        self.exe, self.kernels = None, None
        self.device_scoring_note = "not active"
