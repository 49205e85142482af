"""The detector on the vehicle: frame -> Verdict (the paper's spatial-consistency check, §3.2).

Per frame: resize to the bundle's frame size -> draw K overlapping patch pairs from the
Guard's generator -> crop the 2K patches into one reused batch -> one batched inference ->
mIoU of every pair's overlap -> score = mean mIoU; adversarial when score < threshold.

On a runner that scores on the GPU (``runner.supports_device_scoring``: the TensorRT
backend with its kernels) steps 3-5 run there and only K + 1 floats come back; the NumPy
path (crop.py, consistency.py) stays the reference the kernels are tested against.

Threads: a Guard owns its generator and its buffers, so it is not thread-safe. Give each
camera thread its own Guard (they may share nothing else), or serialise calls with a lock.
The patches are unpredictable only while the generator is: pass ``seed`` for tests and
reproducible experiments only; the default seeds from the OS.

Example::

    with Guard.load("bundle", backend="auto") as guard:
        verdict = guard.check(cv2.imread("frame.png"))   # BGR, as OpenCV reads it
        if verdict.adversarial: ...
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter

import numpy as np

from .backends import FunctionRunner, Runner, open_runner
from .bundle import MAX_PAIRS, Bundle, BundleError, load_bundle
from .consistency import mean_score, pair_mious
from .crop import crop_patches
from .errors import UserError
from .frames import as_colour, resize, swap_rb
from .patches import sample_pairs
from .paths import DEFAULT_BUNDLE

STAGES = ("resize", "sample", "crop", "infer", "consistency", "total")


@dataclass
class Verdict:
    """The check of one frame.

    ``pairs``: K rows [y1, x1, y2, x2], top-lefts of each pair's patches in the resized frame;
    ``pair_mious``: their K overlap mIoUs; ``score``: their mean; ``timings_ms``: wall time
    per stage (STAGES; "resize" covers conversion to 3 channels, resizing and the channel
    order the graph wants). On the GPU path crop, infer and consistency are one "gpu" entry
    (one sync per frame) unless the Guard was made with ``stage_timing=True``;
    ``frame_size``: (h, w) the pairs live in; ``input_size``: the
    frame's (h, w) as given.
    """

    score: float
    threshold: float
    adversarial: bool
    pair_mious: list
    pairs: list
    timings_ms: dict
    frame_size: tuple
    input_size: tuple
    backend: str
    provider: str

    def as_dict(self) -> dict:
        """JSON-ready fields (stable names: the stream events use them)."""
        return {"score": self.score, "threshold": self.threshold, "adversarial": self.adversarial,
                "k": len(self.pairs), "pair_mious": list(self.pair_mious),
                "pairs": [list(p) for p in self.pairs], "timings_ms": dict(self.timings_ms),
                "frame_size": list(self.frame_size), "input_size": list(self.input_size),
                "backend": self.backend, "provider": self.provider}


def _pairs_count(pairs, default: int) -> int:
    if pairs is None:
        return default
    if isinstance(pairs, bool) or not isinstance(pairs, numbers.Integral) or pairs < 1:
        raise UserError(f"the number of patch pairs must be a positive integer, got {pairs!r}")
    if pairs > MAX_PAIRS:
        raise UserError(f"at most {MAX_PAIRS} patch pairs per frame, got {pairs}")
    return int(pairs)


def _generator(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
        raise UserError(f"seed must be a non-negative integer or None, got {seed!r}")
    return np.random.default_rng(seed)


class Guard:
    """A bundle + an active runner + a generator. Use :meth:`load`; close it (or use ``with``)."""

    def __init__(self, bundle: Bundle, runner: Runner, seed=None, pairs: int | None = None,
                 device_scoring: bool | None = None, stage_timing: bool = False):
        """``device_scoring``: None uses the runner's GPU scoring when it has one, False never,
        True requires it; ``stage_timing``: time the GPU stages apart (a sync after each)."""
        self.bundle = bundle
        self.runner = runner.activate()
        self.k = _pairs_count(pairs, bundle.k)
        supported = bool(getattr(self.runner, "supports_device_scoring", False))
        if device_scoring and not supported:
            raise UserError(f"the {self.runner.name} backend cannot score on the GPU: "
                            f"{getattr(self.runner, 'device_scoring_note', 'no kernels')}")
        self.device_scoring = supported and device_scoring is not False
        self.stage_timing = bool(stage_timing)
        self.threshold = bundle.threshold
        self.rng = _generator(seed)
        s = bundle.patch_size
        height, width = bundle.frame_size
        # The buffers live as long as the Guard: no allocation per frame in steady state.
        try:
            self._batch = np.empty((2 * self.k, s, s, 3), np.uint8)
            self._resized = np.empty((height, width, 3), np.uint8)
            self._swapped = np.empty((height, width, 3), np.uint8)
        except MemoryError:
            raise UserError(f"not enough memory for {2 * self.k} patches of {s}x{s} and a {height}x{width} "
                            f"frame: use fewer pairs (--pairs) or a bundle with smaller frames") from None
        # rgb flag of check() -> whether the frame's channel order differs from the graph's
        self._swap = {False: bundle.channels == "RGB", True: bundle.channels == "BGR"}

    @property
    def k_text(self) -> str:
        """The pair count for headers: e.g. "K=5", or "K=50 (threshold set for K=5)" when
        ``pairs`` overrode the bundle's K (the score is a mean over K pairs, so its benign
        spread, and the threshold's false-positive rate, depend on K)."""
        calibrated = self.bundle.k
        return f"K={self.k}" if self.k == calibrated else f"K={self.k} (threshold set for K={calibrated})"

    @classmethod
    def load(cls, bundle_dir=None, backend: str = "auto", seed=None, pairs: int | None = None,
             threads: int | None = None, precision: str | None = None,
             device_scoring: bool | None = None, stage_timing: bool = False) -> "Guard":
        """Load a bundle (default: the one shipped in the package) and open a backend on it.

        ``pairs`` overrides the bundle's K; ``threads`` caps the CPU threads of the backend;
        ``precision`` picks the TensorRT engine (default: the first valid of fp16, int8, fp32).
        """
        if bundle_dir is None:
            if not Path(DEFAULT_BUNDLE).is_dir():
                raise BundleError(f"the shipped bundle is not installed ({DEFAULT_BUNDLE} is missing): "
                                  "pass a bundle folder (--bundle DIR)")
            bundle_dir = DEFAULT_BUNDLE
        bundle = load_bundle(bundle_dir)
        k = _pairs_count(pairs, bundle.k)
        runner = open_runner(bundle, backend, threads=threads, pairs=k, precision=precision)
        try:
            return cls(bundle, runner, seed=seed, pairs=k, device_scoring=device_scoring,
                       stage_timing=stage_timing)
        except BaseException:
            runner.close()
            raise

    @classmethod
    def from_function(cls, bundle: Bundle, segment, seed=None, pairs: int | None = None) -> "Guard":
        """A Guard whose model is ``segment``: (B, s, s, 3) uint8 -> (B, s, s) integer labels.

        The reference path: same sampling, crop and scoring as with a backend, so a backend's
        verdicts can be compared with a NumPy (or PyTorch) model's for the same seed.
        """
        return cls(bundle, FunctionRunner(segment), seed=seed, pairs=pairs)

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

    def check(self, frame: np.ndarray, rgb: bool = False) -> Verdict:
        """Check one frame: uint8 (H, W, 3) BGR as OpenCV delivers it (``rgb=True`` for RGB).

        Grey (H, W)/(H, W, 1) and four-channel frames are converted; anything else raises
        UserError. The frame is resized to the bundle's frame size first.
        """
        t0 = perf_counter()
        colour = as_colour(frame)
        image = resize(colour, self.bundle.frame_size, out=self._resized)
        swap = self._swap[bool(rgb)]
        if swap and not self.device_scoring:  # the GPU crop swaps for free
            image = swap_rb(image, out=self._swapped)
        t1 = perf_counter()
        height, width = image.shape[:2]
        pairs = sample_pairs(height, width, self.bundle.patch_size, self.bundle.b_low,
                             self.bundle.b_high, self.k, self.rng)
        t2 = perf_counter()
        ms = lambda a, b: 1e3 * (b - a)  # noqa: E731
        if self.device_scoring:
            result = self.runner.check_device(image, pairs, swap_rb=swap, stage_timing=self.stage_timing)
            mious, score = result.pair_mious, result.score
            t5 = perf_counter()
            timings = {"resize": ms(t0, t1), "sample": ms(t1, t2), **result.timings_ms,
                       "total": ms(t0, t5)}
        else:
            batch = crop_patches(image, pairs, self.bundle.patch_size, out=self._batch)
            t3 = perf_counter()
            labels = self.runner.infer(batch)
            t4 = perf_counter()
            mious = pair_mious(labels, pairs, self.bundle.num_classes)
            score = mean_score(mious)
            t5 = perf_counter()
            timings = {"resize": ms(t0, t1), "sample": ms(t1, t2), "crop": ms(t2, t3),
                       "infer": ms(t3, t4), "consistency": ms(t4, t5), "total": ms(t0, t5)}
        return Verdict(score=score, threshold=self.threshold, adversarial=bool(score < self.threshold),
                       pair_mious=[float(v) for v in mious], pairs=pairs.tolist(), timings_ms=timings,
                       frame_size=(height, width), input_size=tuple(colour.shape[:2]),
                       backend=self.runner.name, provider=self.runner.provider)

    def close(self) -> None:
        self.runner.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"<Guard {self.bundle.root} K={self.k} {self.runner.name} ({self.runner.provider})>"
