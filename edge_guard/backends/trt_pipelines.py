"""The TensorRT backend's device pipelines: a resized frame in, K + 1 floats (and the frame's
labels) out, with crop, inference and scoring on the GPU (the pipelines.py interface).

- :class:`DeviceFrame` (patch-vs-frame): the frame is uploaded once; the full-frame engine
  segments it there (the channel swap, when the graph wants the other order, is a whole-frame
  crop kernel into the engine's input) and its labels stay on the GPU, unless the caller
  passed labels (then those are uploaded); the crop kernel writes the K patches into the
  patch engine's input, the engine runs, the frame-confusion kernel compares its labels with
  the frame's under each patch and scores them with the bundle's statistic.
- :class:`DevicePairs` (the paper's pairs): crop of the 2K patches (swapping channels on the
  way), the engine, the overlap-confusion kernel; the frame is segmented too when a
  full-frame runner is given (its labels are only returned).

What comes back per frame: the K scores and their mean, and the frame's (H, W) labels when
the guard segmented it. Both engines and every kernel run on the patch runner's stream: one
sync per frame, or one per stage with ``stage_timing`` (stages "segment" when the guard
segments the frame, "crop", "infer", "consistency", the uploads counting in the first; else
one "gpu" entry after "sample"). Device buffers are allocated once per
pipeline and given back when the runner closes. A full-frame runner that is not a TensorRT
engine with labels on the GPU (ONNX Runtime, logits, another label type than the kernel's)
segments on the host and its labels are uploaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter

import numpy as np

from edge_guard.errors import UserError
from edge_guard.frames import swap_rb
from edge_guard.patches import sample_pairs, sample_patches
from edge_guard.pipelines import Comparison

from .trt_engine import TrtRunner


@dataclass
class DeviceKernels:
    """The kernels of a device pipeline: ``crop[swap_rb]`` and ``score`` (the overlap kernel
    for pairs, the frame-confusion kernel for the frame detector)."""

    crop: dict
    score: object

    def close(self) -> None:
        """Give back the kernels' modules and buffers (kernels without ``close`` hold none)."""
        for kernel in (*self.crop.values(), self.score):
            close = getattr(kernel, "close", None)
            if close is not None:
                close()


def default_kernels(num_classes: int, label_dtype: str, method: str = "pairs", statistic: str = "miou",
                    min_pixels: int = 0, frame_dtype: str | None = None, device: int = 0) -> DeviceKernels:
    """NVRTC-compiled (cached) crop kernels for both channel orders and the ``method``'s
    scoring kernel for ``statistic``; ``frame_dtype``: the frame labels' type on the GPU."""
    from edge_guard.kernels import FrameConfusionKernel, OverlapConfusionKernel, PatchCropKernel

    crop = {}
    try:
        for swap in (False, True):
            crop[swap] = PatchCropKernel("nhwc_u8", swap_rb=swap, device=device)
        if method == "frame":
            score = FrameConfusionKernel(num_classes, label_dtype, frame_dtype or label_dtype, device,
                                         statistic, min_pixels)
        else:
            score = OverlapConfusionKernel(num_classes, label_dtype, device, statistic, min_pixels)
    except BaseException:
        for kernel in crop.values():
            kernel.close()
        raise
    return DeviceKernels(crop=crop, score=score)


def as_label_dtype(labels: np.ndarray, dtype, num_classes: int) -> np.ndarray:
    """Contiguous ``labels`` in ``dtype`` for the kernel; ids outside [0, C) stay outside it
    (a plain cast could wrap e.g. 256 to 0 in uint8), so they are still ignored."""
    dtype = np.dtype(dtype)
    if labels.dtype == dtype:
        return np.ascontiguousarray(labels)
    out = labels.astype(dtype)
    ignored = (labels >= num_classes) if labels.dtype.kind == "u" else (labels < 0) | (labels >= num_classes)
    if ignored.any():
        out[ignored] = -1 if dtype.kind == "i" else np.iinfo(dtype).max
    return out


def _ms(a: float, b: float) -> float:
    return 1e3 * (b - a)


class _DevicePipeline:
    """What both device pipelines share: buffers, the upload, the frame's segmentation, timing."""

    def __init__(self, runner, k: int, segmenter, segment: bool, stage_timing: bool, batch: int,
                 row_width: int):
        exe: TrtRunner = runner.exe
        self.runner, self.exe, self.kernels = runner, exe, runner.kernels
        self.bundle = bundle = runner.bundle
        self.k, self.s = int(k), bundle.patch_size
        self.height, self.width = bundle.frame_size
        if not exe.min_batch <= batch <= exe.max_batch:
            raise UserError(f"{runner.engine_file.name} runs {exe.min_batch}..{exe.max_batch} patches, "
                            f"K={self.k} needs {batch}: rebuild it with a larger --max-pairs")
        self.batch, self.stage_timing = batch, bool(stage_timing)
        self.segmenter = segmenter if segment and segmenter is not None else None
        self.seg_exe = self._device_segmenter(self.segmenter)
        self._ptrs: list = []
        h, w = self.height, self.width
        try:
            self.frame_ptr = self._malloc(h * w * 3)
            self.rows_ptr = self._malloc(4 * row_width * self.k)
            self.out_ptr = self._malloc(4 * (self.k + 1))
            # The whole frame as one "patch" at [0, 0]: the swap kernel's top-left.
            self._origin = np.zeros((1, 2), np.int32)
            self.origin_ptr = self._malloc(self._origin.nbytes)
            exe.copy_in(self.origin_ptr, self._origin)
            self._swapped = np.empty((h, w, 3), np.uint8)  # host segmenters want the graph's order
        except BaseException:
            self.close()
            raise

    def _device_segmenter(self, segmenter) -> TrtRunner | None:
        """The full-frame engine when it can segment in place on the GPU, else None."""
        exe = getattr(segmenter, "exe", None)
        if not isinstance(exe, TrtRunner) or len(exe.out_shape) != 3:
            return None
        if (exe.height, exe.width) != (self.height, self.width):
            raise UserError(f"the full-frame engine takes {exe.height}x{exe.width} frames, the bundle "
                            f"checks {self.height}x{self.width}: rebuild it (edge-guard build-engine --force)")
        return exe if self._frame_labels_fit(exe.out_dtype) else None

    def _frame_labels_fit(self, dtype) -> bool:
        return True

    def _malloc(self, nbytes: int) -> int:
        ptr = self.exe.malloc(nbytes)
        self._ptrs.append(ptr)
        return int(ptr)

    def close(self) -> None:
        """Give the device buffers back (the runner calls this when it closes)."""
        for ptr in self._ptrs:
            self.exe.cudart.cudaFree(ptr)
        self._ptrs = []

    def _check(self, image: np.ndarray) -> np.ndarray:
        image = np.ascontiguousarray(image)
        if image.dtype != np.uint8 or image.shape != (self.height, self.width, 3):
            raise UserError(f"a resized frame is uint8 ({self.height}, {self.width}, 3), "
                            f"got {image.dtype} {image.shape}")
        return image

    def _mark(self, marks: list) -> None:
        if self.stage_timing:
            self.exe.sync()
            marks.append(perf_counter())

    def _timings(self, timings: dict, marks: list, stages: list) -> dict:
        if self.stage_timing:
            timings.update((stage, _ms(a, b)) for stage, a, b in zip(stages, marks, marks[1:]))
        else:
            timings["gpu"] = _ms(marks[0], marks[-1])
        return timings

    def _upload(self, image: np.ndarray, swap: bool, on_device: bool) -> tuple[int, bool]:
        """Upload the frame once -> (where the patches are cropped from, whether the crop swaps).

        When the full-frame engine segments it, the frame goes into that engine's input in
        the graph's channel order (swapped there by a whole-frame crop) and the patches are
        cut from that copy."""
        exe, stream = self.exe, self.exe.stream_handle
        if not on_device:
            exe.copy_in(self.frame_ptr, image)
            return self.frame_ptr, swap
        if not swap:
            exe.copy_in(self.seg_exe.input_ptr, image)
        else:
            exe.copy_in(self.frame_ptr, image)
            self.kernels.crop[True].crop_tops(self.frame_ptr, self.height, self.width, self.origin_ptr,
                                              (self.height, self.width), self.seg_exe.input_ptr,
                                              stream=stream, n=1)
        return self.seg_exe.input_ptr, False

    def _segment(self, image: np.ndarray, swap: bool, on_device: bool):
        """Segment the frame -> (its labels on the GPU or None, the host array they are (or
        will be) in). On the device the engine's output is read back at the end of the frame."""
        exe = self.exe
        if on_device:
            shape = self.seg_exe.enqueue(1, stream=exe.stream_handle)
            if shape != (1, self.height, self.width):
                raise UserError(f"the full-frame engine returned labels of shape {shape} for a "
                                f"{self.height}x{self.width} frame")
            return self.seg_exe.output_ptr, np.empty((self.height, self.width), self.seg_exe.out_dtype)
        graph_order = swap_rb(image, out=self._swapped) if swap else image
        return None, self.segmenter.infer(graph_order[None])[0]


class DeviceFrame(_DevicePipeline):
    """The patch-vs-frame detector on the GPU (see the module docstring)."""

    method = "frame"

    def __init__(self, runner, k: int, segmenter=None, segment: bool = True, stage_timing: bool = False):
        super().__init__(runner, k, segmenter, segment, stage_timing, batch=int(k), row_width=2)
        self.frame_dtype = np.dtype(getattr(self.kernels.score, "frame_dtype", "int32"))
        try:  # the caller's (or a host segmenter's) labels, in the kernel's label type
            self.labels_ptr = self._malloc(self.height * self.width * self.frame_dtype.itemsize)
        except BaseException:
            self.close()
            raise

    def _frame_labels_fit(self, dtype) -> bool:
        # The frame-confusion kernel was compiled for one frame label type.
        kernel_dtype = getattr(self.runner.kernels.score, "frame_dtype", "int32")
        return np.dtype(dtype) == np.dtype(kernel_dtype)

    def __call__(self, image, swap: bool, labels, rng, start: float) -> Comparison:
        image = self._check(image)
        if labels is None and self.segmenter is None:
            raise UserError("the frame detector needs the frame's labels: pass labels= to check() "
                            "or load the guard with its full-frame graph")
        h, w, s, k = self.height, self.width, self.s, self.k
        tops = sample_patches(h, w, s, k, rng)
        t = perf_counter()
        timings, marks, stages = {"sample": _ms(start, t)}, [t], []
        exe, stream, kernels = self.exe, self.exe.stream_handle, self.kernels
        exe.copy_in(self.rows_ptr, tops)
        on_device = labels is None and self.seg_exe is not None
        src, crop_swap = self._upload(image, swap, on_device)
        if labels is None:
            frame_ptr, labels = self._segment(image, swap, on_device)
            stages.append("segment")
            self._mark(marks)
        else:
            frame_ptr = None
        if frame_ptr is None:  # host labels (the caller's or a host segmenter's) go up once
            frame_ptr = self.labels_ptr
            exe.copy_in(frame_ptr, as_label_dtype(labels, self.frame_dtype, self.bundle.num_classes))
        kernels.crop[crop_swap].crop_tops(src, h, w, self.rows_ptr, s, exe.input_ptr, stream=stream, n=k)
        self._mark(marks)
        shape = exe.enqueue(k)
        if shape != (k, s, s):
            raise UserError(f"the engine returned labels of shape {shape} for {k} patches of {s}px")
        self._mark(marks)
        kernels.score(exe.output_ptr, frame_ptr, h, w, self.rows_ptr, s, self.out_ptr, stream=stream, k=k)
        out = np.empty(k + 1, np.float32)
        exe.copy_out(out, self.out_ptr)
        if on_device:
            exe.copy_out(labels, frame_ptr)
        exe.sync()
        marks.append(perf_counter())
        stages += ["crop", "infer", "consistency"]
        return Comparison(out[:k].copy(), float(out[k]), tops, labels,
                          self._timings(timings, marks, stages), marks[-1])


class DevicePairs(_DevicePipeline):
    """The paper's pair detector on the GPU (see the module docstring)."""

    method = "pairs"

    def __init__(self, runner, k: int, segmenter=None, segment: bool = True, stage_timing: bool = False):
        super().__init__(runner, k, segmenter, segment, stage_timing, batch=2 * int(k), row_width=4)

    def __call__(self, image, swap: bool, labels, rng, start: float) -> Comparison:
        image = self._check(image)
        h, w, s, k, b = self.height, self.width, self.s, self.k, self.bundle
        pairs = sample_pairs(h, w, s, b.b_low, b.b_high, k, rng)
        t = perf_counter()
        timings, marks, stages = {"sample": _ms(start, t)}, [t], []
        exe, stream, kernels = self.exe, self.exe.stream_handle, self.kernels
        exe.copy_in(self.rows_ptr, pairs)
        segmenting = labels is None and self.segmenter is not None
        on_device = segmenting and self.seg_exe is not None
        src, crop_swap = self._upload(image, swap, on_device)
        frame_ptr = None
        if segmenting:  # only for the caller: the pair scores do not read the frame's labels
            frame_ptr, labels = self._segment(image, swap, on_device)
            stages.append("segment")
            self._mark(marks)
        kernels.crop[crop_swap](src, h, w, self.rows_ptr, s, exe.input_ptr, stream=stream, k=k)
        self._mark(marks)
        shape = exe.enqueue(2 * k)
        if shape != (2 * k, s, s):
            raise UserError(f"the engine returned labels of shape {shape} for {2 * k} patches of {s}px")
        self._mark(marks)
        kernels.score(exe.output_ptr, self.rows_ptr, s, self.out_ptr, stream=stream, k=k)
        out = np.empty(k + 1, np.float32)
        exe.copy_out(out, self.out_ptr)
        if frame_ptr is not None:
            exe.copy_out(labels, frame_ptr)
        exe.sync()
        marks.append(perf_counter())
        stages += ["crop", "infer", "consistency"]
        return Comparison(out[:k].copy(), float(out[k]), pairs, labels,
                          self._timings(timings, marks, stages), marks[-1])


DEVICE = {"frame": DeviceFrame, "pairs": DevicePairs}
