"""The detector on the vehicle: frame -> Verdict, with the frame's segmentation.

Per frame: resize to the bundle's frame size -> segment the whole frame (the bundle's
full-frame graph; skipped when the caller passes the labels it already has) -> draw K
patches (frame detector) or K overlapping patch pairs (pairs, the paper's §3.2) from the
Guard's generator -> crop them into one reused batch -> one batched inference -> compare each
patch with the frame's labels on the same pixels (frame), or the two patches of each pair on
their overlap (pairs) -> score = mean of the K comparison scores; adversarial when score <
threshold. The bundle says which detector and which statistic (pipelines.py).

On a runner that scores on the GPU (``runner.supports_device_scoring``: the TensorRT
backend with its kernels) crop, inference and scoring run there and only K + 1 floats come
back; the NumPy path (crop.py, consistency.py) stays the reference the kernels are tested
against.

Threads: a Guard owns its generator and its buffers, so it is not thread-safe. Give each
camera thread its own Guard (they may share nothing else), or serialise calls with a lock.
The patches are unpredictable only while the generator is: pass ``seed`` for tests and
reproducible experiments only; the default seeds from the OS.

Example::

    from edge_guard import Guard

    with Guard.load("bundle", backend="auto") as guard:
        verdict = guard.check(cv2.imread("frame.png"))   # BGR, as OpenCV reads it
        labels = verdict.labels_at()                      # the segmentation, at the frame's size
        if verdict.adversarial: ...
"""

from __future__ import annotations

import numbers
from pathlib import Path
from time import perf_counter

import numpy as np

from .backends import FunctionRunner, Runner, open_runner
from .budget import REPEATS, BudgetChoice, budget_ms_of, choose
from .bundle import MAX_PAIRS, Bundle, BundleError, load_bundle
from .errors import UserError
from .frames import as_colour, resize
from .images import check_max_pixels
from .limits import DEFAULT_MAX_PIXELS, thread_count_error
from .paths import DEFAULT_BUNDLE
from .pipelines import check_label_range, make_pipeline
from .verdict import Verdict

STAGES = ("resize", "segment", "sample", "crop", "infer", "consistency", "total")


def _pairs_count(pairs, default: int) -> int:
    """K (patches of the frame detector, pairs of the pairs detector), validated."""
    if pairs is None:
        return default
    if isinstance(pairs, bool) or not isinstance(pairs, numbers.Integral) or pairs < 1:
        raise UserError(f"K (patches or patch pairs per frame) must be a positive integer, got {pairs!r}")
    if pairs > MAX_PAIRS:
        raise UserError(f"at most K={MAX_PAIRS} patches or pairs per frame, got {pairs}")
    return int(pairs)


def _check_labels(labels, size) -> np.ndarray:
    """The caller's frame labels: an integer (H, W) array at the bundle's frame size."""
    if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "iu" or labels.ndim != 2:
        what = f"{labels.dtype} {labels.shape}" if isinstance(labels, np.ndarray) else type(labels).__name__
        raise UserError(f"labels must be an integer (H, W) NumPy array of class ids, got {what}")
    if labels.shape != tuple(size):
        h, w = size
        raise UserError(f"labels are {labels.shape[0]}x{labels.shape[1]}, but the guard compares at the "
                        f"bundle's frame size {h}x{w}: segment the frame at {h}x{w} (or pass labels=None "
                        "and let the guard segment it)")
    return labels


def _check_threads(threads) -> None:
    if threads is not None:
        why = thread_count_error(threads, "threads")
        if why is not None:
            raise UserError(why)


def _generator(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
        raise UserError(f"seed must be a non-negative integer or None, got {seed!r}")
    return np.random.default_rng(seed)


def _stand_in(size) -> np.ndarray:
    """A frame to time checks on when none is given: smooth colour blobs (a segmentation of
    several regions, as a street gives, not one class), the same every time."""
    h, w = size
    small = np.random.default_rng(0).integers(0, 256, (max(1, h // 32), max(1, w // 32), 3), dtype=np.uint8)
    return resize(small, (h, w))


class Guard:
    """A bundle + active runners (patches, and the whole frame) + a generator + the
    detector's pipeline. Use :meth:`load`; close it (or use ``with``)."""

    def __init__(self, bundle: Bundle, runner: Runner, seed=None, pairs: int | None = None,
                 device_scoring: bool | None = None, stage_timing: bool = False,
                 segmenter: Runner | None = None, segment: bool = True,
                 max_pixels: int = DEFAULT_MAX_PIXELS):
        """``runner``: the patch graph's; ``segmenter``: the full-frame graph's (None: the
        caller passes the frame's labels); ``pairs``: K, overriding the bundle's;
        ``device_scoring``: None uses the runner's GPU scoring when it has one, False never,
        True requires it; ``stage_timing``: time the GPU stages apart (a sync after each);
        ``segment``: False leaves the frame unsegmented for the pairs detector (its score does
        not need it; offline scoring of the paper's detector); ``max_pixels``: check() refuses
        larger frames (default 64 megapixels; at most 16384 x 16384)."""
        self.max_pixels = check_max_pixels(max_pixels)
        self.bundle = bundle
        self.runner = runner.activate()
        self.segmenter = segmenter.activate() if segmenter is not None else None
        self.k = _pairs_count(pairs, bundle.k)
        supported = bool(getattr(self.runner, "supports_device_scoring", False))
        if device_scoring and not supported:
            raise UserError(f"the {self.runner.name} backend cannot score on the GPU: "
                            f"{getattr(self.runner, 'device_scoring_note', 'no kernels')}")
        self.device_scoring = supported and device_scoring is not False
        self.stage_timing = bool(stage_timing)
        # A K the bundle was calibrated for runs with its own threshold; another K, with the bundle's.
        self.threshold = bundle.thresholds_by_k.get(self.k, bundle.threshold)
        self.rng = _generator(seed)
        self._segment = segment
        self.budget: BudgetChoice | None = None  # what fit_budget() measured and chose
        self._budget_request = None  # (fps, budget_ms) given to load(), timed on the first check
        height, width = bundle.frame_size
        try:
            self._resized = np.empty((height, width, 3), np.uint8)
        except MemoryError:
            raise UserError(f"not enough memory for a {height}x{width} frame: use a bundle with "
                            "smaller frames") from None
        self.pipeline = make_pipeline(bundle, self.runner, self.segmenter, self.k, self.device_scoring,
                                      segment=segment, stage_timing=self.stage_timing)
        # rgb flag of check() -> whether the frame's channel order differs from the graph's
        self._swap = {False: bundle.channels == "RGB", True: bundle.channels == "BGR"}
        self._labels_checked = False  # the frame's label ids, on the first frame segmented here

    @property
    def method(self) -> str:
        """The detector: "frame" or "pairs"."""
        return self.bundle.method

    @property
    def k_text(self) -> str:
        """K for headers: e.g. "K=5", or "K=50 (threshold set for K=5)" when ``pairs``
        set a K the bundle holds no threshold for (the score is a mean over K comparisons, so
        its benign spread, and the threshold's false-positive rate, depend on K)."""
        if self.k in self.bundle.thresholds_by_k:
            return f"K={self.k}"
        return f"K={self.k} (threshold set for K={self.bundle.k})"

    def use_k(self, k: int) -> None:
        """Run K = ``k`` from the next check on, with the threshold calibrated for it (the
        bundle's own when guard.json holds none for ``k``)."""
        k = _pairs_count(k, self.k)
        self.pipeline = make_pipeline(self.bundle, self.runner, self.segmenter, k, self.device_scoring,
                                      segment=self._segment, stage_timing=self.stage_timing)
        self.k = k
        self.threshold = self.bundle.thresholds_by_k.get(k, self.bundle.threshold)

    def fit_budget(self, frame: np.ndarray | None = None, fps: float | None = None,
                   budget_ms: float | None = None, rgb: bool = False, labels: np.ndarray | None = None,
                   repeats: int = REPEATS, clock=perf_counter) -> BudgetChoice:
        """Time check() on ``frame`` at each K the bundle holds a threshold for and run the
        largest that fits ``fps`` frames/s or ``budget_ms`` ms a frame (default: the budget
        given to :meth:`load`); sets and returns :attr:`budget` (edge_guard.budget).
        ``frame``: default a stand-in of the bundle's frame size (a real frame times the
        resize from the camera's size too); ``clock``: () -> seconds, injectable for tests."""
        if fps is None and budget_ms is None:
            if self._budget_request is None:
                raise UserError("fit_budget needs a budget: fps= or budget_ms= (here or to Guard.load)")
            fps, budget_ms = self._budget_request
        ms = budget_ms_of(fps, budget_ms)
        request, self._budget_request = self._budget_request, None  # the timed checks must not fit again
        if frame is None:
            frame = _stand_in(self.bundle.frame_size)
        try:
            self.budget = choose(self, frame, ms, fps=fps, rgb=rgb, labels=labels, repeats=repeats, clock=clock)
        except BaseException:
            self._budget_request = request  # a frame check() refuses: the next frame times the budget
            raise
        return self.budget

    @classmethod
    def load(cls, bundle_dir=None, backend: str = "auto", seed=None, pairs: int | None = None,
             threads: int | None = None, precision: str | None = None,
             device_scoring: bool | None = None, stage_timing: bool = False,
             segment: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS, fps: float | None = None,
             budget_ms: float | None = None) -> "Guard":
        """Load a bundle (default: the one shipped in the package) and open a backend on it
        (on both its graphs: the patches' and the whole frame's).

        ``fps`` (frames/s) or ``budget_ms`` (ms a frame): a frame-rate budget instead of a
        fixed K: the first check() times each K the bundle holds a threshold for on its frame
        and runs the largest that fits (:meth:`fit_budget`, :attr:`budget`); not with ``pairs``.

        ``pairs`` overrides the bundle's K; ``threads`` caps the CPU threads of the backend;
        ``precision`` picks the TensorRT engine (default: the first valid of fp16, int8, fp32);
        ``segment=False`` (pairs detector only) opens no full-frame graph: verdicts then carry
        no labels unless check() is given them. ``threads`` is at most 4 per usable core;
        ``max_pixels`` caps the frames check() accepts.
        """
        _check_threads(threads)  # before any work: 512 threads on 2 cores make a check 300x slower
        check_max_pixels(max_pixels)
        if bundle_dir is None:
            if not Path(DEFAULT_BUNDLE).is_dir():
                raise BundleError(f"the shipped bundle is not installed ({DEFAULT_BUNDLE} is missing): "
                                  "pass a bundle folder (--bundle DIR)")
            bundle_dir = DEFAULT_BUNDLE
        budget = budget_ms_of(fps, budget_ms)
        if budget is not None and pairs is not None:
            raise UserError("K is fixed by --k and chosen by --fps/--budget-ms: give one of them")
        bundle = load_bundle(bundle_dir)
        k = _pairs_count(pairs, bundle.k)
        # A budget may pick any K the bundle holds: the backend must take the largest batch.
        opened_k = max(bundle.thresholds_by_k) if budget is not None else k
        if not segment and bundle.method == "frame":
            raise UserError("segment=False: the frame detector compares patches with the frame's "
                            "segmentation; pass labels= to check() instead to skip segmenting")
        runner = open_runner(bundle, backend, threads=threads, pairs=opened_k, precision=precision)
        segmenter = None
        try:
            if segment and bundle.frame_graph_path is not None:
                segmenter = open_runner(bundle, backend, threads=threads, pairs=opened_k, precision=precision,
                                        graph="frame")
            guard = cls(bundle, runner, seed=seed, pairs=k, device_scoring=device_scoring,
                        stage_timing=stage_timing, segmenter=segmenter, segment=segment,
                        max_pixels=max_pixels)
            if budget is not None:
                guard._budget_request = (fps, budget_ms)
            return guard
        except BaseException:
            runner.close()
            if segmenter is not None:
                segmenter.close()
            raise

    @classmethod
    def from_function(cls, bundle: Bundle, segment, seed=None, pairs: int | None = None,
                      segment_frames: bool | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> "Guard":
        """A Guard whose model is ``segment``: (B, h, w, 3) uint8 -> (B, h, w) integer labels,
        for patches and whole frames alike (a fully convolutional model).

        The reference path: same sampling, crop and scoring as with a backend, so a backend's
        verdicts can be compared with a NumPy (or PyTorch) model's for the same seed.
        ``segment_frames``: segment the whole frame too (default: when the bundle has a
        full-frame graph, as :meth:`load` does; the frame detector always needs it).
        """
        if segment_frames is None:
            segment_frames = bundle.frame_graph_path is not None or bundle.method == "frame"
        segmenter = FunctionRunner(segment) if segment_frames else None
        return cls(bundle, FunctionRunner(segment), seed=seed, pairs=pairs, segmenter=segmenter,
                   segment=segment_frames, max_pixels=max_pixels)

    @property
    def backend(self) -> str:
        return self.runner.name

    @property
    def provider(self) -> str:
        return self.runner.provider

    @property
    def selection(self) -> str:
        """How the backend was chosen (``auto``: why the better ones were passed over)."""
        return getattr(self.runner, "selection", "") or f"{self.runner.name} (given)"

    def check(self, frame: np.ndarray, rgb: bool = False, labels: np.ndarray | None = None) -> Verdict:
        """Check one frame: uint8 (H, W, 3) BGR as OpenCV delivers it (``rgb=True`` for RGB).

        ``labels``: the frame's (h, w) class ids at the bundle's frame size, when the vehicle
        has segmented it already; the guard then spends only the patches. Without them the
        guard segments the frame and returns the labels in ``verdict.labels``.
        Grey (H, W)/(H, W, 1) and four-channel frames are converted; anything else raises
        UserError. The frame is resized to the bundle's frame size first. Under a budget
        (``Guard.load(fps=...)``) the first call times the K on this frame first
        (:meth:`fit_budget`: a few seconds) and checks it at the K chosen.
        """
        if self._budget_request is not None:  # the warm-up of Guard.load(fps=...): choose K first
            self.fit_budget(frame, rgb=rgb, labels=labels)
        t0 = perf_counter()
        if isinstance(frame, np.ndarray) and frame.ndim >= 2 and frame.shape[0] * frame.shape[1] > self.max_pixels:
            raise UserError(f"a {frame.shape[0]}x{frame.shape[1]} frame has more than the guard's cap of "
                            f"{self.max_pixels} pixels (Guard.load(max_pixels=) raises it)")
        colour = as_colour(frame)
        if labels is not None:
            labels = _check_labels(labels, self.bundle.frame_size)
        image = resize(colour, self.bundle.frame_size, out=self._resized)
        t1 = perf_counter()
        result = self.pipeline(image, self._swap[bool(rgb)], labels, self.rng, t1)
        timings = dict(result.timings_ms)
        timings["resize"] = 1e3 * (t1 - t0) + timings.get("resize", 0.0)
        timings = {stage: timings[stage] for stage in STAGES if stage in timings}
        for stage, value in result.timings_ms.items():  # a device pipeline's own stages ("gpu")
            timings.setdefault(stage, value)
        timings["total"] = 1e3 * (result.end - t0)
        out_labels = result.labels
        if not self._labels_checked and out_labels is not None and labels is None:
            check_label_range(out_labels, self.bundle, "full-frame graph")
        self._labels_checked = True
        if out_labels is not None and out_labels.dtype != np.int32 and labels is None:
            out_labels = out_labels.astype(np.int32)
        return Verdict(score=result.score, threshold=self.threshold, adversarial=bool(result.score < self.threshold),
                       detector=self.bundle.method, statistic=self.bundle.statistic,
                       scores=[float(v) for v in result.scores], boxes=np.asarray(result.boxes).tolist(),
                       patch_size=self.bundle.patch_size, timings_ms=timings,
                       frame_size=tuple(image.shape[:2]), input_size=tuple(colour.shape[:2]),
                       backend=self.runner.name, provider=self.runner.provider, labels=out_labels)

    def close(self) -> None:
        self.runner.close()
        if self.segmenter is not None:
            self.segmenter.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return (f"<Guard {self.bundle.root} {self.bundle.method} K={self.k} {self.runner.name} "
                f"({self.runner.provider})>")
