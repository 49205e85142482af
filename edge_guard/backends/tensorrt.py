"""TensorRT backend: a checked engine cached in the bundle, run between the CUDA kernels.

Engines are built on the target by ``edge-guard build-engine`` (it checks each engine
against the fp32 model before writing its sidecar). A stale, truncated or foreign engine is
refused with one line naming the command that builds it. A missing one is built on first
use when the backend was asked for by name (``build=True``; it needs the ``onnx`` and
``onnxruntime`` packages for the checks and takes minutes, so it says so first); ``auto``
never builds: it picks TensorRT only when a valid engine is cached.

TensorRT 10/11 name-based API: ``num_io_tensors`` / ``get_tensor_name`` /
``get_tensor_mode`` find the I/O, ``set_input_shape`` per batch size, ``set_tensor_address``
binds device buffers (cuda-python runtime), ``execute_async_v3(stream)`` runs.

Two ways to use :class:`TensorRTRunner`:

- ``infer(batch)``: the Runner interface, host patches in, host labels out;
- ``check_device(image, pairs)``: the fused hot path. The resized frame is uploaded once,
  the crop kernel writes the 2K patches straight into the engine's uint8 NHWC input
  buffer, the engine runs, the overlap-confusion kernel reads its label output in place,
  and only K + 1 floats (pair mIoUs, score) come back. One stream sync per frame, or one
  per stage when stage timings are asked for.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter

import numpy as np

from edge_guard.bundle import Bundle, TensorSpec
from edge_guard.engine_cache import (ENGINE_DIR, ONNX_FILES, DeviceInfo, EngineCheck, current_device,
                                     engine_path, made_from, validate_engine)
from edge_guard.errors import UserError, require

from .base import Runner

#: Cached engines tried in this order when no precision is asked for: build-engine's default
#: first; every engine with a sidecar passed its check against the fp32 model.
PRECISION_ORDER = ("fp16", "int8", "fp32")

_NP = {"UINT8": np.uint8, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
       "FLOAT": np.float32, "HALF": np.float16, "BOOL": np.bool_}
# Label dtypes the overlap-confusion kernel reads in place (edge_guard.kernels.ops.LABEL_TYPES).
_KERNEL_LABELS = ("int32", "int64", "uint8", "uint16", "int16")


def import_tensorrt():
    return require("tensorrt", "gpu", "the TensorRT backend")


def load_cudart():
    """cuda-python's runtime module (new and old import paths)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise UserError("running TensorRT engines needs cuda-python: pip install 'edge-guard[gpu]'") from None
    return cudart


def _ok(result, what: str):
    """cuda-python returns (err, value...) tuples: raise on error, return the value(s)."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise UserError(f"CUDA {what} failed: {err}")
    return rest[0] if len(rest) == 1 else (tuple(rest) or None)


def _np_dtype(trt, dtype):
    name = getattr(dtype, "name", str(dtype)).split(".")[-1].upper()
    if name in _NP:
        return np.dtype(_NP[name])
    if hasattr(trt, "nptype"):
        return np.dtype(trt.nptype(dtype))
    raise UserError(f"engine tensor type {name} is not one edge-guard reads")


class TrtRunner:
    """uint8 (N, s, s, 3) patches -> (N, s, s) int32 labels through a TensorRT engine
    (or (N, H, W, 3) frames -> (N, H, W) for the full-frame graph segment.onnx).

    Owns the engine, its execution context, one stream and device buffers sized once for
    the profile's largest batch (``input_ptr``, ``output_ptr``). ``__call__`` is the host
    path (chunks above the profile max, pads below its min); ``enqueue(n)`` runs a batch of
    ``n`` patches already in the input buffer, without waiting.
    """

    def __init__(self, engine_path, trt=None, cudart=None):
        self.trt = trt or require("tensorrt", "gpu", "running TensorRT engines")
        self.cudart = cudart or load_cudart()
        self.buffers = {}
        self.stream = None
        trt, cudart = self.trt, self.cudart
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        with open(engine_path, "rb") as f:
            self.engine = self.runtime.deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise UserError(f"TensorRT cannot deserialize {engine_path} (built by another version or GPU?)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        ins = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if n not in ins]
        if len(ins) != 1 or len(outs) != 1:
            raise UserError(f"the engine has inputs {ins} and outputs {outs}: one of each expected")
        self.input, self.output = ins[0], outs[0]
        static = tuple(int(d) for d in self.engine.get_tensor_shape(self.input))
        if -1 in static:  # dynamic batch: the optimisation profile bounds it
            lo, _, hi = self.engine.get_tensor_profile_shape(self.input, 0)
        else:
            lo = hi = static
        self.min_batch, self.max_batch = int(lo[0]), int(hi[0])
        self.height, self.width = int(hi[1]), int(hi[2])
        self.patch = self.height  # the side of square patches
        self.in_dtype = _np_dtype(trt, self.engine.get_tensor_dtype(self.input))
        self.out_dtype = _np_dtype(trt, self.engine.get_tensor_dtype(self.output))
        if self.in_dtype != np.uint8:
            raise UserError(f"the engine's input is {self.in_dtype}, not uint8 NHWC patches")
        self.in_shape = tuple(int(d) for d in self.engine.get_tensor_shape(self.input))
        self.out_shape = tuple(int(d) for d in self.engine.get_tensor_shape(self.output))
        self.context = self.engine.create_execution_context()
        self._shape = None  # the input shape last set on the context
        self.stream = _ok(cudart.cudaStreamCreate(), "stream creation")
        per_patch_out = int(np.prod([d for d in self.out_shape[1:]]))
        sizes = {self.input: self.max_batch * self.height * self.width * 3 * self.in_dtype.itemsize,
                 self.output: self.max_batch * per_patch_out * self.out_dtype.itemsize}
        try:
            for name, nbytes in sizes.items():
                ptr = _ok(cudart.cudaMalloc(nbytes), f"allocation of {nbytes} bytes")
                self.buffers[name] = ptr
                self.context.set_tensor_address(name, int(ptr))
        except BaseException:
            self.close()
            raise

    @property
    def input_ptr(self) -> int:
        return int(self.buffers[self.input])

    @property
    def output_ptr(self) -> int:
        return int(self.buffers[self.output])

    @property
    def stream_handle(self) -> int:
        return int(self.stream)

    def specs(self) -> tuple[list, list]:
        """([input TensorSpec], [output TensorSpec]); dynamic dimensions are None."""
        spec = lambda name, dtype, shape: TensorSpec(  # noqa: E731
            name, dtype.name, tuple(None if d < 0 else d for d in shape))
        return ([spec(self.input, self.in_dtype, self.in_shape)],
                [spec(self.output, self.out_dtype, self.out_shape)])

    def __call__(self, patches: np.ndarray) -> np.ndarray:
        patches = np.ascontiguousarray(patches, dtype=np.uint8)
        if patches.ndim != 4 or patches.shape[1:] != (self.height, self.width, 3):
            raise UserError(f"patches must be (N, {self.height}, {self.width}, 3), got {patches.shape}")
        outs = [self._run(patches[i:i + self.max_batch]) for i in range(0, len(patches), self.max_batch)]
        return np.concatenate(outs, axis=0)

    def enqueue(self, n: int) -> tuple:
        """Run ``n`` patches from the input buffer on the stream (no wait); the output shape."""
        shape = (int(n), self.height, self.width, 3)
        if shape != self._shape:
            if not self.context.set_input_shape(self.input, shape):
                raise UserError(f"the engine rejects a batch of {n} patches "
                                f"(its profile runs {self.min_batch}..{self.max_batch})")
            self._shape = shape
        if not self.context.execute_async_v3(self.stream_handle):
            raise UserError("TensorRT execute_async_v3 failed")
        return tuple(int(d) for d in self.context.get_tensor_shape(self.output))

    def copy_in(self, dst: int, array: np.ndarray) -> None:
        _ok(self.cudart.cudaMemcpyAsync(int(dst), array.ctypes.data, array.nbytes,
                                        self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                        self.stream), "copy to the GPU")

    def copy_out(self, out: np.ndarray, src: int) -> None:
        _ok(self.cudart.cudaMemcpyAsync(out.ctypes.data, int(src), out.nbytes,
                                        self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                        self.stream), "copy from the GPU")

    def sync(self) -> None:
        _ok(self.cudart.cudaStreamSynchronize(self.stream), "stream synchronisation")

    def malloc(self, nbytes: int) -> int:
        return _ok(self.cudart.cudaMalloc(int(nbytes)), f"allocation of {nbytes} bytes")

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        n = len(chunk)
        if n < self.min_batch:  # pad to the profile's minimum, drop the padding after
            chunk = np.concatenate([chunk, np.zeros((self.min_batch - n,) + chunk.shape[1:], np.uint8)])
        self.copy_in(self.input_ptr, chunk)
        out = np.empty(self.enqueue(len(chunk)), self.out_dtype)
        self.copy_out(out, self.output_ptr)
        self.sync()
        out = out[:n]
        return out.astype(np.int32, copy=False) if out.ndim == 3 else out.argmax(axis=1).astype(np.int32)

    def close(self) -> None:
        for ptr in self.buffers.values():
            self.cudart.cudaFree(ptr)
        self.buffers = {}
        if self.stream is not None:
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------ the engine cache


@dataclass
class EngineChoice:
    """A cached engine that validated (``path`` set), or why none did (``reason``)."""

    path: Path | None
    precision: str | None
    device: DeviceInfo | None
    reason: str


def find_engine(bundle: Bundle, device: DeviceInfo, batch: int, precision: str | None = None) -> EngineChoice:
    """The first engine of ``precision`` (default: PRECISION_ORDER) that validates for ``device``
    and a batch of ``batch`` patches."""
    reasons = []
    for p in ((precision,) if precision else PRECISION_ORDER):
        path = engine_path(bundle.root, p, device)
        check = validate_engine(path, bundle.root / ONNX_FILES[p], device, p, batch=batch,
                                patch=bundle.patch_size)
        if check.ok and p != "fp32" and made_from(bundle.root / ONNX_FILES[p]) != bundle.model_sha256:
            # The engine matches its fp16/int8 ONNX, but that was made from an earlier model.onnx.
            check = EngineCheck(False, f"{ONNX_FILES[p]} was made from another {bundle.model['file']} "
                                       "(re-exported since): rebuild the engine")
        if check.ok:
            return EngineChoice(path, p, device, "ok")
        if path.exists() or precision:
            reasons.append(check.reason)
    where = f"{device.gpu} ({device.sm}, TensorRT {device.tensorrt})"
    reason = "; ".join(reasons) if reasons else f"no engine for {where} in {bundle.root / ENGINE_DIR}"
    return EngineChoice(None, None, device, reason)


#: build-engine's default --max-pairs
BUILD_MAX_PAIRS = 50


def build_command(bundle: Bundle, precision: str | None = None, pairs: int | None = None) -> str:
    """The command that builds the missing engine (the precision asked for, else one whose
    file exists but did not validate, else build-engine's default), for ``pairs`` pairs."""
    if precision is None:
        precision = "fp16"
        for p in PRECISION_ORDER:
            if any((bundle.root / ENGINE_DIR).glob(f"model.{p}.*.engine")):
                precision = p
                break
    more = f" --max-pairs {int(pairs)}" if pairs is not None and int(pairs) > BUILD_MAX_PAIRS else ""
    return f"edge-guard build-engine {bundle.root} --precision {precision}{more}"


def engine_error(bundle: Bundle, choice: EngineChoice, precision: str | None = None,
                 pairs: int | None = None) -> UserError:
    return UserError(f"no usable TensorRT engine: {choice.reason}; build one on this device with "
                     f"`{build_command(bundle, precision, pairs)}`")


# ------------------------------------------------------------------ the runner


@dataclass
class DeviceKernels:
    """The two kernels of the fused path: ``crop[swap_rb]`` and ``score``."""

    crop: dict
    score: object

    def close(self) -> None:
        """Give back the kernels' modules and buffers (kernels without ``close`` hold none)."""
        for kernel in (*self.crop.values(), self.score):
            close = getattr(kernel, "close", None)
            if close is not None:
                close()


def default_kernels(num_classes: int, label_dtype: str, device: int = 0) -> DeviceKernels:
    """NVRTC-compiled (cached) crop kernels for both channel orders and the scoring kernel."""
    from edge_guard.kernels import OverlapConfusionKernel, PatchCropKernel

    return DeviceKernels(crop={swap: PatchCropKernel("nhwc_u8", swap_rb=swap, device=device)
                               for swap in (False, True)},
                         score=OverlapConfusionKernel(num_classes, label_dtype, device))


@dataclass
class DeviceScore:
    """What the fused path returns: K pair mIoUs (float32), their mean, GPU stage times (ms)."""

    pair_mious: np.ndarray
    score: float
    timings_ms: dict


class TensorRTRunner(Runner):
    """The bundle's cached engine for this GPU (see the module docstring).

    ``pairs``: the K the runner will be fed (the engine's profile must take 2K patches);
    ``precision``: the engine to run (default: the first valid of PRECISION_ORDER);
    ``engine``: an :class:`EngineChoice` already found (``auto`` selection), skips the search;
    ``device_scoring``: set up the fused kernels path (falls back to host scoring, with a
    note in ``device_scoring_note``, when the output is logits or the kernels cannot load).
    ``trt``, ``cudart``, ``device_info`` and ``kernels(num_classes, label_dtype)`` are
    injectable so everything but the GPU can be tested.
    """

    name = "tensorrt"

    def __init__(self, bundle: Bundle, pairs: int | None = None, precision: str | None = None,
                 engine: EngineChoice | None = None, device_scoring: bool = True, trt=None,
                 cudart=None, device_info: DeviceInfo | None = None, kernels=None,
                 build: bool = False, log=None):
        super().__init__()
        self._build = bool(build)
        self._log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.bundle = bundle
        self.k = int(pairs if pairs is not None else bundle.k)
        self.precision = precision
        self._choice = engine
        self._want_device_scoring = bool(device_scoring)
        self._trt, self._cudart, self._device_info = trt, cudart, device_info
        self._kernel_factory = kernels or default_kernels
        self.exe: TrtRunner | None = None
        self.kernels: DeviceKernels | None = None
        self.engine_file: Path | None = None
        self.device_scoring_note = "not active"
        self._frame_ptr, self._frame_bytes = None, 0
        self._score_ptr, self._score_pairs = None, 0

    @property
    def supports_device_scoring(self) -> bool:
        return self.is_active and self.kernels is not None

    def _activate(self) -> None:
        trt = self._trt or import_tensorrt()
        cudart = self._cudart or load_cudart()
        choice = self._choice
        if choice is None:
            device = self._device_info or current_device(trt.__version__)
            choice = find_engine(self.bundle, device, 2 * self.k, self.precision)
        if choice.path is None and self._build:
            choice = self._build_engine(trt, cudart, choice)
        if choice.path is None:
            raise engine_error(self.bundle, choice, self.precision, self.k)
        exe = TrtRunner(choice.path, trt=trt, cudart=cudart)
        try:
            if not exe.min_batch <= 2 * self.k <= exe.max_batch:
                rebuild = build_command(self.bundle, choice.precision)
                raise UserError(f"{choice.path.name} runs {exe.min_batch}..{exe.max_batch} patches, "
                                f"K={self.k} needs {2 * self.k}: `{rebuild} --max-pairs {self.k} --force`")
            self.inputs, self.outputs = exe.specs()
            self.kernels, self.device_scoring_note = self._load_kernels(exe)
        except BaseException:
            exe.close()
            raise
        self.exe, self._choice = exe, choice
        self.engine_file, self.precision = choice.path, choice.precision
        self.provider = (f"TensorRT {getattr(trt, '__version__', '?')} {choice.precision} "
                         f"on {choice.device.gpu} ({choice.device.sm})")

    def _build_engine(self, trt, cudart, missing: EngineChoice) -> EngineChoice:
        """First use on this device: build and check the engine (`edge-guard build-engine`),
        then find it again. Minutes on a Jetson, so it says so before it starts."""
        require("onnx", "gpu", "building a TensorRT engine on first use")
        require("onnxruntime", "gpu", "checking a TensorRT engine on first use")
        from edge_guard.export.trt_build import build_engine, read_only_hint

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
        return find_engine(self.bundle, device, 2 * self.k, precision)

    def _load_kernels(self, exe: TrtRunner):
        if not self._want_device_scoring:
            return None, "off (asked for host scoring)"
        if len(exe.out_shape) != 3:
            return None, "off: the engine outputs logits, labels are argmaxed on the host"
        if exe.out_dtype.name not in _KERNEL_LABELS:
            return None, f"off: the kernels do not read {exe.out_dtype.name} labels"
        try:
            kernels = self._kernel_factory(self.bundle.num_classes, exe.out_dtype.name)
        except (UserError, RuntimeError, ImportError, OSError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return None, f"off: the CUDA kernels cannot load ({first})"
        return kernels, "on (crop and overlap confusion on the GPU)"

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self.exe(batch)

    def _buffers(self, frame_bytes: int, k: int) -> None:
        # Sized for the largest frame / K seen; frames have the bundle's size in steady state.
        exe = self.exe
        if frame_bytes > self._frame_bytes:
            if self._frame_ptr is not None:
                exe.cudart.cudaFree(self._frame_ptr)
                self._frame_ptr, self._frame_bytes = None, 0  # a failed malloc leaves no stale size
            self._frame_ptr, self._frame_bytes = exe.malloc(frame_bytes), frame_bytes
        if k > self._score_pairs:
            if self._score_ptr is not None:
                exe.cudart.cudaFree(self._score_ptr)
                self._score_ptr, self._score_pairs = None, 0
            self._score_ptr, self._score_pairs = exe.malloc(4 * (k + 1)), k

    def check_device(self, image: np.ndarray, pairs: np.ndarray, swap_rb: bool = False,
                     stage_timing: bool = False) -> DeviceScore:
        """Score ``pairs`` (K, 4) of an (H, W, 3) uint8 frame on the GPU.

        ``swap_rb`` reverses the channel order during the crop. Timings: ``gpu`` (upload to
        download, one sync) by default; ``crop`` (upload + crop), ``infer`` and
        ``consistency`` (scoring + download) with ``stage_timing`` (a sync after each).
        """
        if not self.supports_device_scoring:
            raise UserError(f"the {self.name} runner cannot score on the GPU: device scoring "
                            f"{self.device_scoring_note}")
        image = np.ascontiguousarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise UserError(f"a frame is uint8 (H, W, 3), got {image.dtype} {image.shape}")
        pairs = np.ascontiguousarray(np.asarray(pairs).reshape(-1, 4), dtype=np.int32)
        k, s, exe = len(pairs), self.bundle.patch_size, self.exe
        if not exe.min_batch <= 2 * k <= exe.max_batch:
            raise UserError(f"{self.engine_file.name} runs {exe.min_batch}..{exe.max_batch} patches, "
                            f"not {2 * k}")
        self._buffers(image.nbytes, k)
        height, width = image.shape[:2]
        stream = exe.stream_handle
        out = np.empty(k + 1, np.float32)
        marks = [perf_counter()]
        exe.copy_in(self._frame_ptr, image)
        self.kernels.crop[bool(swap_rb)](self._frame_ptr, height, width, pairs, s, exe.input_ptr,
                                         stream=stream)
        if stage_timing:
            exe.sync()
            marks.append(perf_counter())
        shape = exe.enqueue(2 * k)
        if shape != (2 * k, s, s):
            raise UserError(f"the engine returned labels of shape {shape} for {2 * k} patches of {s}px")
        if stage_timing:
            exe.sync()
            marks.append(perf_counter())
        self.kernels.score(exe.output_ptr, pairs, s, self._score_ptr, stream=stream)
        exe.copy_out(out, self._score_ptr)
        exe.sync()
        marks.append(perf_counter())
        ms = [1e3 * (b - a) for a, b in zip(marks, marks[1:])]
        timings = dict(zip(("crop", "infer", "consistency"), ms)) if stage_timing else {"gpu": ms[0]}
        return DeviceScore(out[:k].copy(), float(out[k]), timings)

    def _close(self) -> None:
        exe = self.exe
        if exe is not None:
            for ptr in (self._frame_ptr, self._score_ptr):
                if ptr is not None:
                    exe.cudart.cudaFree(ptr)
            if self.kernels is not None:
                self.kernels.close()
            exe.close()
        self.exe, self.kernels = None, None
        self._frame_ptr, self._frame_bytes, self._score_ptr, self._score_pairs = None, 0, None, 0
        self.device_scoring_note = "not active"
