"""The kernels as callables on device pointers.

Buffers are passed as int addresses, so TensorRT bindings, PyTorch tensors
(``tensor.data_ptr()``) and :class:`DeviceBuffer` all work; streams as int handles or
CUstream. Top-lefts (patches (N, 2), pairs (K, 4)) may be given as a host array (checked, then
copied to the device on the same stream) or as a device pointer to int32 rows with their
count, which is trusted as is.
NumPy references: edge_guard/crop.py and edge_guard/consistency.py.
"""

from __future__ import annotations

import numbers

import numpy as np

from edge_guard.consistency import check_statistic
from edge_guard.crop import normalisation_coefficients
from edge_guard.errors import UserError

from .device import DeviceBuffer, KernelModule, check, device_arch, driver, driver_cuda_major
from .device import as_stream, attribute
from .nvrtc import compile_kernel, parse_arch, target_for

#: Classes the confusion kernels handle: a C x C uint32 histogram in shared memory (16 KiB).
MAX_CLASSES = 64
LABEL_TYPES = {"int32": "int", "int64": "long long", "uint8": "unsigned char",
               "uint16": "unsigned short", "int16": "short"}
LAYOUTS = {"nhwc_u8": "crop_u8_nhwc", "nchw_f32": "crop_norm_nchw_f32",
           "nchw_f16": "crop_norm_nchw_f16"}
#: The statistic argument of confusion_score (overlap_confusion.cu's STAT_* codes).
STATISTIC_CODES = {"miou": 0, "agreement": 1, "miou-min": 2}
_I32, _F32 = np.int32, np.float32


def _U64(pointer) -> np.uint64:
    """A device address from an int or anything with __int__ (DeviceBuffer)."""
    return np.uint64(int(pointer))


def load_module(source: str, device: int = 0, options=()) -> KernelModule:
    """Compile ``source`` for the device (cached) and load it."""
    cc, _ = parse_arch(device_arch(device))
    image = compile_kernel(source, target_for(cc), options, max_major=driver_cuda_major())
    return KernelModule(image, device)


class _RowsOnDevice:
    """Host int32 rows (top-lefts, pairs) copied into a reusable device buffer; device
    pointers passed through."""

    def __init__(self, width: int):
        self.width = width
        self.buf: DeviceBuffer | None = None

    def __call__(self, rows, n, stream, device, check_host) -> tuple[int, int]:
        if isinstance(rows, (numbers.Integral, DeviceBuffer)):
            if n is None:
                raise UserError("the row count (k) is required with a device pointer to top-lefts")
            return int(rows), int(n)
        host = np.ascontiguousarray(np.asarray(rows).reshape(-1, self.width), dtype=np.int32)
        check_host(host)
        if self.buf is None or self.buf.nbytes < host.nbytes:
            self.buf = DeviceBuffer(host.nbytes, device)
        self.buf.upload(host, stream)  # pageable memory: staged before the call returns
        return self.buf.ptr, len(host)

    def free(self) -> None:
        if self.buf is not None:
            self.buf.free()
            self.buf = None


def _check_classes(num_classes, label_dtype, *more_dtypes) -> int:
    num_classes = int(num_classes)
    if not 1 <= num_classes <= MAX_CLASSES:
        raise UserError(f"the confusion kernel handles 1..{MAX_CLASSES} classes, got {num_classes}")
    for dtype in (label_dtype, *more_dtypes):
        if str(dtype) not in LABEL_TYPES:
            raise UserError(f"label dtype {dtype} unsupported: use one of {', '.join(LABEL_TYPES)}")
    return num_classes


class PatchCropKernel:
    """Crop a frame's patches into the engine input batch in one launch.

    layout: 'nhwc_u8' (N, ph, pw, 3) uint8 copy, the preferred input (the ONNX graph
    normalises); 'nchw_f32' / 'nchw_f16' (N, 3, ph, pw) normalised with ``mean``/``std``
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
        self._tops = _RowsOnDevice(2)

    def close(self) -> None:
        """Free the top-lefts buffer and unload the module (a Guard that closes gives them back)."""
        self._tops.free()
        self.module.unload()

    def crop_tops(self, frame_ptr: int, height: int, width: int, tops, size, out_ptr: int,
                  stream=None, n: int | None = None, pitch: int | None = None) -> None:
        """Enqueue the crop of N patches at ``tops`` (N, 2) [y, x] from a (height, width, 3)
        uint8 frame at ``frame_ptr``; ``size``: s, or (ph, pw) for rectangles (the whole frame
        at [0, 0] copies it, in the other channel order with ``swap_rb``)."""
        ph, pw = (int(size), int(size)) if isinstance(size, numbers.Integral) else (int(v) for v in size)
        pitch = 3 * int(width) if pitch is None else int(pitch)

        def inside(host):
            if len(host) == 0 or host.min() < 0 or host[:, 0].max() + ph > height or \
                    host[:, 1].max() + pw > width:
                raise UserError(f"patches must be non-empty and {ph}x{pw} patches inside "
                                f"the {height}x{width} frame")

        stream = as_stream(stream)
        tops_ptr, n = self._tops(tops, n, stream, self.device, inside)
        args = [_U64(frame_ptr), _I32(pitch), _U64(tops_ptr), _I32(ph), _I32(pw), _I32(self.swap_rb),
                *self.coeffs, _U64(out_ptr)]
        self.module.launch(LAYOUTS[self.layout], (n, ph), (256,), args, stream)

    def __call__(self, frame_ptr: int, height: int, width: int, pairs, size: int, out_ptr: int,
                 stream=None, k: int | None = None, pitch: int | None = None) -> None:
        """Enqueue the crop of K pairs (K, 4) (a host array, or a device pointer with ``k``)
        into 2K patches: a pair's row is two top-lefts."""
        if isinstance(pairs, (numbers.Integral, DeviceBuffer)):
            if k is None:
                raise UserError("k (the number of pairs) is required with a device pointer to pairs")
            self.crop_tops(frame_ptr, height, width, pairs, size, out_ptr, stream, 2 * int(k), pitch)
        else:
            tops = np.asarray(pairs).reshape(-1, 4).reshape(-1, 2)
            self.crop_tops(frame_ptr, height, width, tops, size, out_ptr, stream, None, pitch)


class _ConfusionScorer:
    """What both confusion kernels share: the module, the confusion workspace and the scoring
    of K (C, C) matrices into K + 1 float32 (the statistic of each, then their mean).
    One instance owns one workspace: use one per concurrent stream."""

    def __init__(self, num_classes, label_dtype, frame_dtype, statistic, min_pixels, device, width):
        self.num_classes = _check_classes(num_classes, label_dtype, frame_dtype)
        self.statistic, self.min_pixels = check_statistic(statistic, min_pixels)
        self.label_dtype, self.frame_dtype, self.device = str(label_dtype), str(frame_dtype), device
        self.module = load_module("overlap_confusion", device,
                                  (f"-DLABEL_T={LABEL_TYPES[self.label_dtype]}",
                                   f"-DFRAME_T={LABEL_TYPES[self.frame_dtype]}",
                                   f"-DMAX_CLASSES={MAX_CLASSES}"))
        self.sm_count = attribute("MULTIPROCESSOR_COUNT", device)
        self._rows = _RowsOnDevice(width)
        self._workspace: DeviceBuffer | None = None
        self._out: DeviceBuffer | None = None

    def close(self) -> None:
        """Free the workspace and buffers and unload the module."""
        for buf in (self._workspace, self._out):
            if buf is not None:
                buf.free()
        self._workspace = self._out = None
        self._rows.free()
        self.module.unload()

    def blocks_per_pair(self, k: int, size: int) -> int:
        """Blocks sharing one region: fill the GPU (4 blocks per SM) but keep >= 16 rows each,
        so zeroing and flushing the shared histogram stays small next to the counting."""
        want = -(-4 * self.sm_count // k)
        return max(1, min(want, -(-size // 16)))

    def _zeroed(self, k: int, confusion_ptr, stream) -> int:
        cells = k * self.num_classes ** 2
        if confusion_ptr is None:
            if self._workspace is None or self._workspace.nbytes < 4 * cells:
                self._workspace = DeviceBuffer(4 * cells, self.device)
            confusion_ptr = self._workspace.ptr
        drv = driver()
        check(drv.cuMemsetD32Async(drv.CUdeviceptr(int(confusion_ptr)), 0, cells, stream),
              "cuMemsetD32Async")
        return int(confusion_ptr)

    def _score(self, confusion_ptr: int, k: int, out_ptr: int, stream) -> None:
        code = STATISTIC_CODES[self.statistic]
        self.module.launch("confusion_score", (k,), (MAX_CLASSES,),
                           [_U64(confusion_ptr), _I32(self.num_classes), _I32(code),
                            _I32(self.min_pixels), _U64(out_ptr)], stream)
        self.module.launch("mean_score", (1,), (1,),
                           [_U64(out_ptr), _I32(k), _U64(int(out_ptr) + 4 * k)], stream)

    def _download(self, k: int, stream, run) -> tuple[np.ndarray, float]:
        if self._out is None or self._out.nbytes < 4 * (k + 1):
            self._out = DeviceBuffer(4 * (k + 1), self.device)
        run(self._out.ptr)
        values = self._out.to_numpy((k + 1,), np.float32, stream)
        return values[:k], float(values[k])


class OverlapConfusionKernel(_ConfusionScorer):
    """Confusion matrices of K patch pairs' overlaps, their statistic and the frame score.

    Reads the engine's (2K, s, s) label output in place; writes K + 1 float32 to ``out_ptr``:
    the K pair scores, then their mean. Equal bit for bit to
    ``edge_guard.consistency.pair_scores(..., statistic, min_pixels)`` / ``mean_score``.
    """

    def __init__(self, num_classes: int, label_dtype: str = "int32", device: int = 0,
                 statistic: str = "miou", min_pixels: int = 0):
        super().__init__(num_classes, label_dtype, "int32", statistic, min_pixels, device, 4)

    def __call__(self, labels_ptr: int, pairs, size: int, out_ptr: int, stream=None,
                 k: int | None = None, confusion_ptr: int | None = None) -> None:
        """Enqueue scoring; ``confusion_ptr`` (K, C, C) uint32 keeps the matrices (else internal)."""
        size = int(size)

        def overlapping(host):
            d = np.abs(host[:, 2:4].astype(np.int64) - host[:, 0:2])
            if len(host) == 0 or d.max() >= size:
                raise UserError(f"patch pairs must be non-empty and overlap (|d| < {size})")

        stream = as_stream(stream)
        pairs_ptr, k = self._rows(pairs, k, stream, self.device, overlapping)
        cm = self._zeroed(k, confusion_ptr, stream)
        self.module.launch("overlap_confusion", (k, self.blocks_per_pair(k, size)), (128,),
                           [_U64(labels_ptr), _U64(pairs_ptr), _I32(size), _I32(self.num_classes),
                            _U64(cm)], stream, shared=4 * self.num_classes ** 2)
        self._score(cm, k, out_ptr, stream)

    def score(self, labels_ptr: int, pairs: np.ndarray, size: int, stream=None):
        """Convenience: run and wait; returns ((K,) float32 pair scores, float score)."""
        k = len(np.asarray(pairs).reshape(-1, 4))
        return self._download(k, stream, lambda out: self(labels_ptr, pairs, size, out, stream))


class FrameConfusionKernel(_ConfusionScorer):
    """Confusion matrices of K patches' labels against the frame's labels under them, their
    statistic and the frame score (the patch-vs-frame detector).

    Reads the patch engine's (K, s, s) labels and the frame's (H, W) labels (``frame_dtype``)
    in place; writes K + 1 float32 to ``out_ptr``. Equal bit for bit to
    ``edge_guard.consistency.frame_scores(..., statistic, min_pixels)`` / ``mean_score``.
    """

    def __init__(self, num_classes: int, label_dtype: str = "int32", frame_dtype: str = "int32",
                 device: int = 0, statistic: str = "miou", min_pixels: int = 0):
        super().__init__(num_classes, label_dtype, frame_dtype, statistic, min_pixels, device, 2)

    def __call__(self, labels_ptr: int, frame_ptr: int, height: int, width: int, tops, size: int,
                 out_ptr: int, stream=None, k: int | None = None,
                 confusion_ptr: int | None = None) -> None:
        """Enqueue scoring of patches at ``tops`` (K, 2) [y, x] (host, or a device pointer with
        ``k``) against a (height, width) label map; ``confusion_ptr`` keeps the matrices."""
        size = int(size)

        def inside(host):
            if len(host) == 0 or host.min() < 0 or host[:, 0].max() + size > height or \
                    host[:, 1].max() + size > width:
                raise UserError(f"patches must be non-empty and {size}x{size} patches inside "
                                f"the {height}x{width} frame labels")

        stream = as_stream(stream)
        tops_ptr, k = self._rows(tops, k, stream, self.device, inside)
        cm = self._zeroed(k, confusion_ptr, stream)
        self.module.launch("frame_confusion", (k, self.blocks_per_pair(k, size)), (128,),
                           [_U64(labels_ptr), _U64(frame_ptr), _I32(width), _U64(tops_ptr), _I32(size),
                            _I32(self.num_classes), _U64(cm)], stream, shared=4 * self.num_classes ** 2)
        self._score(cm, k, out_ptr, stream)

    def score(self, labels_ptr: int, frame_ptr: int, height: int, width: int, tops: np.ndarray,
              size: int, stream=None):
        """Convenience: run and wait; returns ((K,) float32 patch scores, float score)."""
        k = len(np.asarray(tops).reshape(-1, 2))
        return self._download(k, stream, lambda out: self(labels_ptr, frame_ptr, height, width, tops,
                                                          size, out, stream))
