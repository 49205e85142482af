"""The TensorRT engine executor: one engine, its execution context, stream and device buffers.

TensorRT 10/11 name-based API (mypy checks it against TensorRT 10.13's stubs: tests/test_trt_stubs.py):
``num_io_tensors`` / ``get_tensor_name`` / ``get_tensor_mode`` find the I/O,
``get_tensor_profile_shape`` bounds a dynamic batch, ``set_input_shape`` per batch size,
``set_tensor_address`` binds device buffers (cuda-python runtime), ``execute_async_v3(stream)``
runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from edge_guard.bundle import TensorSpec
from edge_guard.errors import UserError, require

from .trt_api import TensorRT

if TYPE_CHECKING:
    import tensorrt

_NP = {"UINT8": np.uint8, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
       "FLOAT": np.float32, "HALF": np.float16, "BOOL": np.bool_}


def import_tensorrt() -> TensorRT:
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


def _ints(dims: tensorrt.Dims) -> tuple[int, ...]:
    # Dims iterates like a tuple through __getitem__, which its stub does not declare.
    return tuple(int(dims[i]) for i in range(len(dims)))


def _np_dtype(trt: TensorRT, dtype) -> np.dtype:
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
    path (chunks above the profile max, pads below its min); ``enqueue(n, stream)`` runs a
    batch of ``n`` patches (frames) already in the input buffer, without waiting.
    """

    def __init__(self, engine_path, trt: TensorRT | None = None, cudart=None):
        self.trt: TensorRT = trt or require("tensorrt", "gpu", "running TensorRT engines")
        self.cudart = cudart or load_cudart()
        self.buffers = {}
        self.stream: Any = None  # a cuda-python cudaStream_t
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
        static = _ints(self.engine.get_tensor_shape(self.input))
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
        self.in_shape = _ints(self.engine.get_tensor_shape(self.input))
        self.out_shape = _ints(self.engine.get_tensor_shape(self.output))
        self.context = self.engine.create_execution_context()
        self._shape: tuple | None = None  # the input shape last set on the context
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

    def enqueue(self, n: int, stream: int | None = None) -> tuple:
        """Run ``n`` patches from the input buffer on ``stream`` (default: the runner's own; a
        device pipeline runs both engines on one stream) without waiting; the output shape."""
        shape = (int(n), self.height, self.width, 3)
        if shape != self._shape:
            if not self.context.set_input_shape(self.input, shape):
                raise UserError(f"the engine rejects a batch of {n} patches "
                                f"(its profile runs {self.min_batch}..{self.max_batch})")
            self._shape = shape
        if not self.context.execute_async_v3(self.stream_handle if stream is None else int(stream)):
            raise UserError("TensorRT execute_async_v3 failed")
        return _ints(self.context.get_tensor_shape(self.output))

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
