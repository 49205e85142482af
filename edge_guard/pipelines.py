"""One scoring pipeline per detector and path: frame (resized) -> comparison scores.

- ``frame`` (patch-vs-frame): K patches drawn uniformly, each segmented alone and compared
  with the frame's own labels on the same pixels. The frame's labels come from the
  full-frame graph, or from the caller (who segmented the frame already).
- ``pairs`` (the paper's Algorithm 1): K overlapping pairs, the two patches of each compared
  on their overlap. The frame is segmented too when a full-frame graph is there (the vehicle
  gets its labels from the same call), unless the caller passed them.

Host pipelines crop, infer and score with NumPy (``crop.py``, ``consistency.py``: the
references of the kernels). A runner that scores on the GPU supplies its own pipelines
(``runner.device_pipeline(method, ...)``, backends/tensorrt.py) with the same interface.
The Guard picks one pipeline when it is made and calls only that one.

Every pipeline is called as ``pipeline(image, swap, labels, rng, start) -> Comparison`` with
``image`` the resized (H, W, 3) uint8 frame in the caller's channel order, ``swap`` whether
the graph wants the other order, ``labels`` the caller's (H, W) labels or None, ``start`` the
perf_counter() time its stages are timed from (the channel swap counts as "resize", which
the caller has begun). The stage times are contiguous: they add up to ``end - start``.
"""

from __future__ import annotations

from time import perf_counter
from typing import NamedTuple

import numpy as np

from .bundle_schema import BundleError
from .consistency import frame_scores, mean_score, pair_scores
from .crop import crop_patches, crop_tops
from .errors import UserError
from .frames import swap_rb
from .patches import sample_pairs, sample_patches


class Comparison(NamedTuple):
    """scores (K,) float32, their mean, boxes (K, 2|4) int32, the frame's labels or None,
    the stage timings in ms and the perf_counter() time the last stage ended."""

    scores: np.ndarray
    score: float
    boxes: np.ndarray
    labels: np.ndarray | None
    timings_ms: dict
    end: float


def _ms(a: float, b: float) -> float:
    return 1e3 * (b - a)


def check_label_range(labels: np.ndarray, bundle, what: str = "model") -> None:
    """BundleError unless some label is a class id in [0, num_classes): a model with other
    ids (more classes than guard.json says) has every pixel ignored, and every frame would
    score as benign. Some ignored ids (a void label) are normal; none valid is not."""
    labels = np.asarray(labels)
    c = bundle.num_classes
    ids = labels.view(np.dtype(f"u{labels.dtype.itemsize}")) if labels.dtype.kind == "i" else labels
    if labels.size and not np.any(ids < c):
        raise BundleError(f"{bundle.root}: every label of the {what} on the first frame is outside the "
                          f"{c} classes of guard.json (e.g. {labels.flat[0]}): the graph does not match "
                          "model.num_classes; re-export the model or recalibrate the bundle")


class _Host:
    """What both host pipelines share: the swapped copy of the frame, the frame's labels."""

    def __init__(self, bundle, runner, segmenter, k: int, batch: int, segment: bool):
        s = bundle.patch_size
        height, width = bundle.frame_size
        self.bundle, self.runner, self.segmenter, self.k = bundle, runner, segmenter, int(k)
        self.segment = bool(segment) and segmenter is not None
        self._labels_checked = False  # the model's label ids, checked on the first frame
        try:  # the buffers live as long as the pipeline: no allocation per frame
            self._batch = np.empty((batch, s, s, 3), np.uint8)
            self._swapped = np.empty((height, width, 3), np.uint8)
        except MemoryError:
            raise UserError(f"not enough memory for {batch} patches of {s}x{s} and a {height}x{width} "
                            f"frame: use a smaller K or a bundle with smaller frames") from None

    def _check_once(self, patch_labels) -> None:
        if not self._labels_checked:
            check_label_range(patch_labels, self.bundle, "patch graph")
            self._labels_checked = True

    def _prepare(self, image: np.ndarray, swap: bool, labels, start: float, timings: dict):
        """(the frame in the graph's channel order, the frame's labels or None, the time)."""
        if swap:
            image = swap_rb(image, out=self._swapped)
        t = perf_counter()
        timings["resize"] = _ms(start, t)
        if labels is None and self.segment:
            labels = self.segmenter.infer(image[None])[0]
            t, t0 = perf_counter(), t
            timings["segment"] = _ms(t0, t)
        return image, labels, t


class HostFrame(_Host):
    """The patch-vs-frame detector on the host."""

    method = "frame"

    def __init__(self, bundle, runner, segmenter, k: int, segment: bool = True):
        super().__init__(bundle, runner, segmenter, k, k, segment)

    def __call__(self, image, swap: bool, labels, rng, start: float) -> Comparison:
        timings: dict = {}
        image, labels, t1 = self._prepare(image, swap, labels, start, timings)
        if labels is None:
            raise UserError("the frame detector needs the frame's labels: pass labels= to check() "
                            "or load the guard with its full-frame graph")
        height, width = image.shape[:2]
        s = self.bundle.patch_size
        tops = sample_patches(height, width, s, self.k, rng)
        t2 = perf_counter()
        batch = crop_tops(image, tops, s, out=self._batch)
        t3 = perf_counter()
        patch_labels = self.runner.infer(batch)
        t4 = perf_counter()
        self._check_once(patch_labels)
        scores = frame_scores(patch_labels, labels, tops, self.bundle.num_classes,
                              self.bundle.statistic, self.bundle.min_pixels)
        score = mean_score(scores)
        t5 = perf_counter()
        timings.update(sample=_ms(t1, t2), crop=_ms(t2, t3), infer=_ms(t3, t4), consistency=_ms(t4, t5))
        return Comparison(scores, score, tops, labels, timings, t5)


class HostPairs(_Host):
    """The paper's pair detector on the host."""

    method = "pairs"

    def __init__(self, bundle, runner, segmenter, k: int, segment: bool = True):
        super().__init__(bundle, runner, segmenter, k, 2 * k, segment)

    def __call__(self, image, swap: bool, labels, rng, start: float) -> Comparison:
        timings: dict = {}
        image, labels, t1 = self._prepare(image, swap, labels, start, timings)
        height, width = image.shape[:2]
        b = self.bundle
        pairs = sample_pairs(height, width, b.patch_size, b.b_low, b.b_high, self.k, rng)
        t2 = perf_counter()
        batch = crop_patches(image, pairs, b.patch_size, out=self._batch)
        t3 = perf_counter()
        patch_labels = self.runner.infer(batch)
        t4 = perf_counter()
        self._check_once(patch_labels)
        scores = pair_scores(patch_labels, pairs, b.num_classes, b.statistic, b.min_pixels)
        score = mean_score(scores)
        t5 = perf_counter()
        timings.update(sample=_ms(t1, t2), crop=_ms(t2, t3), infer=_ms(t3, t4), consistency=_ms(t4, t5))
        return Comparison(scores, score, pairs, labels, timings, t5)


HOST = {"frame": HostFrame, "pairs": HostPairs}


def make_pipeline(bundle, runner, segmenter, k: int, device_scoring: bool, segment: bool = True,
                  stage_timing: bool = False):
    """The pipeline of the bundle's detector: the runner's GPU one when ``device_scoring``,
    else the host one."""
    if device_scoring:
        return runner.device_pipeline(bundle.method, k=k, segmenter=segmenter, segment=segment,
                                      stage_timing=stage_timing)
    return HOST[bundle.method](bundle, runner, segmenter, k, segment=segment)
