"""The two kernels as callables on device pointers.

Buffers are passed as int addresses, so TensorRT bindings, PyTorch tensors
(``tensor.data_ptr()``) and :class:`DeviceBuffer` all work; streams as int handles or
CUstream. Patch pairs may be given as a host array (checked, then copied to the device on the
same stream) or as a device pointer to (K, 4) int32, which is trusted as is.
NumPy references: edge_guard/crop.py and edge_guard/consistency.py.
"""

from __future__ import annotations

import numpy as np

from edge_guard.crop import normalisation_coefficients
from edge_guard.errors import UserError

from .device import DeviceBuffer, KernelModule, check, device_arch, driver, driver_cuda_major
from .device import as_stream, attribute
from .nvrtc import compile_kernel, parse_arch, target_for

#: Classes the confusion kernel handles: a C x C uint32 histogram in shared memory (16 KiB).
MAX_CLASSES = 64
LABEL_TYPES = {"int32": "int", "int64": "long long", "uint8": "unsigned char",
               "uint16": "unsigned short", "int16": "short"}
LAYOUTS = {"nhwc_u8": "crop_u8_nhwc", "nchw_f32": "crop_norm_nchw_f32",
           "nchw_f16": "crop_norm_nchw_f16"}
_I32, _F32 = np.int32, np.float32


def _U64(pointer) -> np.uint64:
    """A device address from an int or anything with __int__ (DeviceBuffer)."""
    return np.uint64(int(pointer))


def load_module(source: str, device: int = 0, options=()) -> KernelModule:
    """Compile ``source`` for the device (cached) and load it."""
    cc, _ = parse_arch(device_arch(device))
    image = compile_kernel(source, target_for(cc), options, max_major=driver_cuda_major())
    return KernelModule(image, device)


class _PairsOnDevice:
    """Host pairs copied into a reusable device buffer; device pointers passed through."""

    def __init__(self):
        self.buf: DeviceBuffer | None = None

    def __call__(self, pairs, k, stream, device, check_host) -> tuple[int, int]:
        if isinstance(pairs, (int, np.integer, DeviceBuffer)):
            if k is None:
                raise UserError("k (the number of pairs) is required with a device pointer to pairs")
            return int(pairs), int(k)
        host = np.ascontiguousarray(np.asarray(pairs).reshape(-1, 4), dtype=np.int32)
        check_host(host)
        if self.buf is None or self.buf.nbytes < host.nbytes:
            self.buf = DeviceBuffer(host.nbytes, device)
        self.buf.upload(host, stream)  # pageable memory: staged before the call returns
        return self.buf.ptr, len(host)

    def free(self) -> None:
        if self.buf is not None:
            self.buf.free()
            self.buf = None


class PatchCropKernel:
    """Crop a frame's 2K patches into the engine input batch in one launch.

    layout: 'nhwc_u8' (2K, s, s, 3) uint8 copy, the preferred input (the ONNX graph
    normalises); 'nchw_f32' / 'nchw_f16' (2K, 3, s, s) normalised with ``mean``/``std``
    ([0, 1] units, model channel order). ``swap_rb`` reverses the channel order.
    """

    def __init__(self, layout: str = "nhwc_u8", mean=None, std=None, swap_rb: bool = False,
                 device: int = 0):
        if layout not in LAYOUTS:
            raise UserError(f"unknown patch layout {layout!r}: use one of {', '.join(LAYOUTS)}")
        self.layout, self.swap_rb, self.device = layout, bool(swap_rb), device
        self.coeffs = ()
        if layout != "nhwc_u8":
            if mean is None or std is None:
                raise UserError(f"layout {layout} normalises: give mean and std")
            scale, bias = normalisation_coefficients(mean, std)
            self.coeffs = tuple(_F32(v) for v in (*scale, *bias))
        self.module = load_module("patch_crop", device)
        self._pairs = _PairsOnDevice()

    def close(self) -> None:
        """Free the pairs buffer and unload the module (a Guard that closes gives them back)."""
        self._pairs.free()
        self.module.unload()

    def __call__(self, frame_ptr: int, height: int, width: int, pairs, size: int, out_ptr: int,
                 stream=None, k: int | None = None, pitch: int | None = None) -> None:
        """Enqueue the crop of a (height, width, 3) uint8 frame at ``frame_ptr``."""
        pitch = 3 * int(width) if pitch is None else int(pitch)

        def inside(host):
            ys, xs = host[:, 0::2], host[:, 1::2]
            if len(host) == 0 or ys.min() < 0 or xs.min() < 0 or \
                    ys.max() + size > height or xs.max() + size > width:
                raise UserError(f"patch pairs must be non-empty and {size}x{size} patches inside "
                                f"the {height}x{width} frame")

        stream = as_stream(stream)
        pairs_ptr, k = self._pairs(pairs, k, stream, self.device, inside)
        args = [_U64(frame_ptr), _I32(pitch), _U64(pairs_ptr), _I32(size), _I32(self.swap_rb),
                *self.coeffs, _U64(out_ptr)]
        self.module.launch(LAYOUTS[self.layout], (2 * k, int(size)), (256,), args, stream)


class OverlapConfusionKernel:
    """Confusion matrices, pair mIoUs and the frame score of K patch pairs, on the GPU.

    Reads the engine's (2K, s, s) label output in place; writes K + 1 float32 to ``out_ptr``:
    the K pair mIoUs, then the mean score. Equal bit for bit to
    ``edge_guard.consistency.pair_mious`` / ``mean_score``.
    One instance owns one confusion workspace: use one per concurrent stream.
    """

    def __init__(self, num_classes: int, label_dtype: str = "int32", device: int = 0):
        num_classes = int(num_classes)
        if not 1 <= num_classes <= MAX_CLASSES:
            raise UserError(f"the confusion kernel handles 1..{MAX_CLASSES} classes, got {num_classes}")
        if str(label_dtype) not in LABEL_TYPES:
            raise UserError(f"label dtype {label_dtype} unsupported: use one of {', '.join(LABEL_TYPES)}")
        self.num_classes, self.label_dtype, self.device = num_classes, str(label_dtype), device
        self.module = load_module("overlap_confusion", device,
                                  (f"-DLABEL_T={LABEL_TYPES[self.label_dtype]}",
                                   f"-DMAX_CLASSES={MAX_CLASSES}"))
        self.sm_count = attribute("MULTIPROCESSOR_COUNT", device)
        self._pairs = _PairsOnDevice()
        self._workspace: DeviceBuffer | None = None
        self._out: DeviceBuffer | None = None

    def close(self) -> None:
        """Free the workspace and buffers and unload the module."""
        for buf in (self._workspace, self._out):
            if buf is not None:
                buf.free()
        self._workspace = self._out = None
        self._pairs.free()
        self.module.unload()

    def blocks_per_pair(self, k: int, size: int) -> int:
        """Blocks sharing one pair: fill the GPU (4 blocks per SM) but keep >= 16 rows each,
        so zeroing and flushing the shared histogram stays small next to the counting."""
        want = -(-4 * self.sm_count // k)
        return max(1, min(want, -(-size // 16)))

    def __call__(self, labels_ptr: int, pairs, size: int, out_ptr: int, stream=None,
                 k: int | None = None, confusion_ptr: int | None = None) -> None:
        """Enqueue scoring; ``confusion_ptr`` (K, C, C) uint32 keeps the matrices (else internal)."""
        c, size = self.num_classes, int(size)

        def overlapping(host):
            d = np.abs(host[:, 2:4].astype(np.int64) - host[:, 0:2])
            if len(host) == 0 or d.max() >= size:
                raise UserError(f"patch pairs must be non-empty and overlap (|d| < {size})")

        stream = as_stream(stream)
        pairs_ptr, k = self._pairs(pairs, k, stream, self.device, overlapping)
        cells = k * c * c
        if confusion_ptr is None:
            if self._workspace is None or self._workspace.nbytes < 4 * cells:
                self._workspace = DeviceBuffer(4 * cells, self.device)
            confusion_ptr = self._workspace.ptr
        drv = driver()
        check(drv.cuMemsetD32Async(drv.CUdeviceptr(int(confusion_ptr)), 0, cells, stream),
              "cuMemsetD32Async")
        self.module.launch("overlap_confusion", (k, self.blocks_per_pair(k, size)), (128,),
                           [_U64(labels_ptr), _U64(pairs_ptr), _I32(size), _I32(c),
                            _U64(confusion_ptr)], stream, shared=4 * c * c)
        self.module.launch("pair_miou", (k,), (MAX_CLASSES,),
                           [_U64(confusion_ptr), _I32(c), _U64(out_ptr)], stream)
        self.module.launch("mean_score", (1,), (1,),
                           [_U64(out_ptr), _I32(k), _U64(int(out_ptr) + 4 * k)], stream)

    def score(self, labels_ptr: int, pairs: np.ndarray, size: int, stream=None):
        """Convenience: run and wait; returns ((K,) float32 pair mIoUs, float score)."""
        k = len(np.asarray(pairs).reshape(-1, 4))
        if self._out is None or self._out.nbytes < 4 * (k + 1):
            self._out = DeviceBuffer(4 * (k + 1), self.device)
        self(labels_ptr, pairs, size, self._out.ptr, stream)
        values = self._out.to_numpy((k + 1,), np.float32, stream)
        return values[:k], float(values[k])
