"""The CUDA driver through cuda-python: context, device memory, modules and launches.

Works on the device's primary context, the one the CUDA runtime (TensorRT, PyTorch) uses,
so pointers from their buffers (``tensor.data_ptr()``, TensorRT bindings) can be passed to
the kernels as plain ints, and their streams as ints too.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .nvrtc import cuda_module


class CudaError(RuntimeError):
    """A CUDA driver call failed."""


def driver():
    return cuda_module("driver")


def check(result, what: str = "CUDA call"):
    """Unpack a cuda-python ``(CUresult, *values)`` result; raise CudaError on failure."""
    drv = driver()
    if isinstance(result, tuple):
        err, *values = result
    else:
        err, values = result, []
    if err != drv.CUresult.CUDA_SUCCESS:
        name = drv.cuGetErrorName(err)[1]
        text = drv.cuGetErrorString(err)[1]
        name = name.decode() if isinstance(name, bytes) else str(err)
        text = text.decode() if isinstance(text, bytes) else ""
        raise CudaError(f"{what} failed: {name}: {text}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def gpu_count() -> int:
    """Number of CUDA devices; 0 when there is no driver, no device or no cuda-python."""
    try:
        drv = driver()
        if drv.cuInit(0)[0] != drv.CUresult.CUDA_SUCCESS:
            return 0
        err, n = drv.cuDeviceGetCount()
        return int(n) if err == drv.CUresult.CUDA_SUCCESS else 0
    except Exception:  # no libcuda.so raises from inside cuda-python, with varying types
        return 0


@lru_cache(maxsize=None)
def context(device: int = 0):
    """Make device ``device``'s primary context current (retained for the process)."""
    drv = driver()
    check(drv.cuInit(0), "cuInit")
    dev = check(drv.cuDeviceGet(device), "cuDeviceGet")
    ctx = check(drv.cuDevicePrimaryCtxRetain(dev), "cuDevicePrimaryCtxRetain")
    check(drv.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
    return dev, ctx


def ensure_current(device: int = 0):
    dev, ctx = context(device)
    check(driver().cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
    return dev


def attribute(name: str, device: int = 0) -> int:
    """``cuDeviceGetAttribute(CU_DEVICE_ATTRIBUTE_<name>)``, e.g. 'MULTIPROCESSOR_COUNT'."""
    drv = driver()
    dev = ensure_current(device)
    attr = getattr(drv.CUdevice_attribute, f"CU_DEVICE_ATTRIBUTE_{name}")
    return int(check(drv.cuDeviceGetAttribute(attr, dev), f"cuDeviceGetAttribute({name})"))


def device_arch(device: int = 0) -> str:
    """'sm_XY' of the device."""
    major = attribute("COMPUTE_CAPABILITY_MAJOR", device)
    minor = attribute("COMPUTE_CAPABILITY_MINOR", device)
    return f"sm_{major}{minor}"


def driver_cuda_major() -> int:
    """The CUDA major version the installed driver supports (e.g. 12)."""
    return int(check(driver().cuDriverGetVersion(), "cuDriverGetVersion")) // 1000


def as_stream(stream):
    """A CUstream from an int handle (0 = the legacy default stream) or a CUstream."""
    drv = driver()
    if stream is None:
        return drv.CUstream(0)
    if isinstance(stream, drv.CUstream):
        return stream
    return drv.CUstream(int(stream))


def new_stream():
    drv = driver()
    return check(drv.cuStreamCreate(drv.CUstream_flags.CU_STREAM_NON_BLOCKING.value), "cuStreamCreate")


def synchronize(stream=None) -> None:
    check(driver().cuStreamSynchronize(as_stream(stream)), "cuStreamSynchronize")


class DeviceBuffer:
    """``nbytes`` of device memory (cuMemAlloc); ``int(buf)`` or ``buf.ptr`` is the address."""

    def __init__(self, nbytes: int, device: int = 0):
        ensure_current(device)
        self.nbytes = int(nbytes)
        self._ptr = check(driver().cuMemAlloc(max(self.nbytes, 1)), "cuMemAlloc")
        self.ptr = int(self._ptr)

    @classmethod
    def from_array(cls, array: np.ndarray, stream=None, device: int = 0) -> "DeviceBuffer":
        array = np.ascontiguousarray(array)
        buf = cls(array.nbytes, device)
        buf.upload(array, stream)
        synchronize(stream)  # the host array may be a temporary
        return buf

    def __int__(self) -> int:
        return self.ptr

    def upload(self, array: np.ndarray, stream=None) -> None:
        """Copy a contiguous host array in (asynchronous only from pinned memory)."""
        if not array.flags.c_contiguous or array.nbytes > self.nbytes:
            raise ValueError(f"need a contiguous array of at most {self.nbytes} bytes")
        check(driver().cuMemcpyHtoDAsync(self._ptr, array.ctypes.data, array.nbytes,
                                         as_stream(stream)), "cuMemcpyHtoDAsync")

    def download(self, out: np.ndarray, stream=None) -> np.ndarray:
        """Copy into a contiguous host array and wait for the copy."""
        if not out.flags.c_contiguous or out.nbytes > self.nbytes:
            raise ValueError(f"need a contiguous array of at most {self.nbytes} bytes")
        check(driver().cuMemcpyDtoHAsync(out.ctypes.data, self._ptr, out.nbytes,
                                         as_stream(stream)), "cuMemcpyDtoHAsync")
        synchronize(stream)
        return out

    def to_numpy(self, shape, dtype, stream=None) -> np.ndarray:
        return self.download(np.empty(shape, dtype), stream)

    def free(self) -> None:
        if self._ptr is not None:
            try:
                driver().cuMemFree(self._ptr)
            finally:
                self._ptr, self.ptr = None, 0

    def __del__(self):
        try:
            self.free()
        except Exception:  # interpreter shutdown: the driver may already be gone
            pass


def pack_args(*args) -> tuple[list[np.ndarray], np.ndarray]:
    """Kernel arguments as numpy scalars (np.uint64 pointer, np.int32, np.float32, ...) ->
    (storage to keep alive, the void** array cuLaunchKernel reads)."""
    storage = [np.array([a], dtype=np.asarray(a).dtype) for a in args]
    return storage, np.array([s.ctypes.data for s in storage], dtype=np.uint64)


class KernelModule:
    """A loaded cubin or PTX image (cuModuleLoadData) and its functions by name."""

    def __init__(self, image: bytes, device: int = 0):
        ensure_current(device)
        self.device = device
        self._module = check(driver().cuModuleLoadData(image), "cuModuleLoadData")
        self._functions = {}

    def function(self, name: str):
        if name not in self._functions:
            self._functions[name] = check(
                driver().cuModuleGetFunction(self._module, name.encode()),
                f"cuModuleGetFunction({name})")
        return self._functions[name]

    def launch(self, name: str, grid, block, args, stream=None, shared: int = 0) -> None:
        """Enqueue ``name`` on ``stream``; ``args`` are numpy scalars in the kernel's order."""
        grid = tuple(grid) + (1,) * (3 - len(grid))
        block = tuple(block) + (1,) * (3 - len(block))
        _storage, argv = pack_args(*args)  # the driver copies the values during the call
        check(driver().cuLaunchKernel(self.function(name), *grid, *block, int(shared),
                                      as_stream(stream), argv.ctypes.data, 0),
              f"launching {name}")

    def unload(self) -> None:
        if self._module is not None:
            try:
                driver().cuModuleUnload(self._module)
            finally:
                self._module = None
                self._functions = {}
