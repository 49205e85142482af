"""Run a serialized TensorRT engine on uint8 patch batches (offline checks of build-engine).

TensorRT 10/11 name-based API: ``num_io_tensors`` / ``get_tensor_name`` /
``get_tensor_mode`` to find the I/O, ``set_input_shape`` per batch, ``set_tensor_address``
for device buffers (cuda-python), ``execute_async_v3(stream)``. Buffers are sized once for
the profile's largest batch. The runtime's own TensorRT backend lives in ``edge_guard``.
"""

from __future__ import annotations

import numpy as np

from edge_guard.errors import UserError, require

_NP = {"UINT8": np.uint8, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
       "FLOAT": np.float32, "HALF": np.float16, "BOOL": np.bool_}


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
    """uint8 (N, s, s, 3) patches -> (N, s, s) int32 labels through a TensorRT engine."""

    def __init__(self, engine_path, trt=None, cudart=None):
        self.trt = trt or require("tensorrt", "gpu", "running TensorRT engines")
        self.cudart = cudart or load_cudart()
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
        lo, _, hi = self.engine.get_tensor_profile_shape(self.input, 0)
        self.min_batch, self.max_batch = int(lo[0]), int(hi[0])
        self.patch = int(hi[1])
        self.in_dtype = _np_dtype(trt, self.engine.get_tensor_dtype(self.input))
        self.out_dtype = _np_dtype(trt, self.engine.get_tensor_dtype(self.output))
        if self.in_dtype != np.uint8:
            raise UserError(f"the engine's input is {self.in_dtype}, not uint8 NHWC patches")
        self.context = self.engine.create_execution_context()
        self.stream = _ok(cudart.cudaStreamCreate(), "stream creation")
        self.buffers = {}
        out_shape = tuple(int(d) for d in self.engine.get_tensor_shape(self.output))
        per_patch_out = int(np.prod([d for d in out_shape[1:]]))
        sizes = {self.input: self.max_batch * self.patch * self.patch * 3 * self.in_dtype.itemsize,
                 self.output: self.max_batch * per_patch_out * self.out_dtype.itemsize}
        for name, nbytes in sizes.items():
            ptr = _ok(cudart.cudaMalloc(nbytes), f"allocation of {nbytes} bytes")
            self.buffers[name] = ptr
            self.context.set_tensor_address(name, int(ptr))

    def __call__(self, patches: np.ndarray) -> np.ndarray:
        patches = np.ascontiguousarray(patches, dtype=np.uint8)
        if patches.ndim != 4 or patches.shape[1:] != (self.patch, self.patch, 3):
            raise UserError(f"patches must be (N, {self.patch}, {self.patch}, 3), got {patches.shape}")
        outs = [self._run(patches[i:i + self.max_batch]) for i in range(0, len(patches), self.max_batch)]
        return np.concatenate(outs, axis=0)

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        trt, cudart = self.trt, self.cudart
        n = len(chunk)
        if n < self.min_batch:  # pad to the profile's minimum, drop the padding after
            chunk = np.concatenate([chunk, np.zeros((self.min_batch - n,) + chunk.shape[1:], np.uint8)])
        if not self.context.set_input_shape(self.input, tuple(chunk.shape)):
            raise UserError(f"the engine rejects a batch of {len(chunk)} patches")
        out_shape = tuple(int(d) for d in self.context.get_tensor_shape(self.output))
        out = np.empty(out_shape, self.out_dtype)
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _ok(cudart.cudaMemcpyAsync(self.buffers[self.input], chunk.ctypes.data, chunk.nbytes, h2d,
                                   self.stream), "copy to the GPU")
        if not self.context.execute_async_v3(int(self.stream)):
            raise UserError("TensorRT execute_async_v3 failed")
        _ok(cudart.cudaMemcpyAsync(out.ctypes.data, self.buffers[self.output], out.nbytes, d2h,
                                   self.stream), "copy from the GPU")
        _ok(cudart.cudaStreamSynchronize(self.stream), "stream synchronisation")
        out = out[:n]
        return out.astype(np.int32, copy=False) if out.ndim == 3 else out.argmax(axis=1).astype(np.int32)

    def close(self) -> None:
        for ptr in self.buffers.values():
            self.cudart.cudaFree(ptr)
        self.buffers = {}
        if getattr(self, "stream", None) is not None:
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
