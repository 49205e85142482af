"""The evaluation's detector scores of image sets, cached in OUT/scores/<set>.json.

Detectors, all through the runtime's own primitives (the code a vehicle runs):

- ``spatial`` (the paper's pair detector): K_max pairs per frame drawn, cropped and scored
  as the runtime's host pipeline does (pipelines.HostPairs: the same sampler, crop and mIoU
  functions, in the same order); the score at K is the mean of the first K pair mIoUs (the
  pairs are drawn independently, so the first K of K_max are a draw of K).
  ``spatial_cm`` keeps each pair's overlap confusion matrix as well (sparse), so that other
  statistics of the pair detector can be scored from the cache.
- ``frame`` (patch-vs-frame): the frame segmented whole, K_max patches drawn with the
  runtime's sampler, each segmented alone; per patch the sparse confusion matrix of its
  labels (rows) against the frame's (columns). Any statistic at any K <= K_max is derived
  from them (:func:`frame_at`) without segmenting again.
- ``scale``: the mIoU between a frame's prediction and that of its blurred copy, per std.

Sparse confusion matrices are lists of [i, j, count] (count > 0): a benign patch holds a
handful of classes, so a patch costs tens of numbers, not C*C.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from edge_guard.consistency import mean_score, score_from_confusion


class MissingCache(Exception):
    """What a cached-only evaluation lacks (a path under OUT)."""


def to_frame(image: np.ndarray, size) -> np.ndarray:
    """``image`` at the evaluation frame size, resized exactly as the attack resized the frames
    it attacked: benign and adversarial frames must not differ by their resampling."""
    from .attacks.run import _resize

    return _resize(image, None, tuple(size))[0]


def to_sparse(cms: np.ndarray) -> list:
    """(K, C, C) counts -> K lists of [i, j, count] for the non-zero cells."""
    out = []
    for cm in np.asarray(cms):
        i, j = np.nonzero(cm)
        out.append([[int(a), int(b), int(cm[a, b])] for a, b in zip(i, j)])
    return out


def from_sparse(entries: list, num_classes: int) -> np.ndarray:
    """K lists of [i, j, count] -> (K, C, C) int64."""
    out = np.zeros((len(entries), num_classes, num_classes), np.int64)
    for k, cells in enumerate(entries):
        for i, j, n in cells:
            out[k, i, j] = n
    return out


def _first(comparisons, k: int):
    """The first k comparisons of a frame; ValueError when it holds fewer (a K above the K_max
    scored would quietly average fewer)."""
    if len(comparisons) < k:
        raise ValueError(f"a frame holds {len(comparisons)} comparisons, K={k} asks for more: "
                         "score with a larger K_max")
    return comparisons[:k]


def spatial_at(pair_mious, k: int) -> np.ndarray:
    """(frames,) scores at K: the runtime's mean of the first K pair mIoUs of each frame."""
    return np.array([mean_score(np.asarray(_first(p, k), np.float32)) for p in pair_mious], np.float64)


def frame_at(confusions, k: int, num_classes: int, statistic: str = "miou-min",
             min_pixels: int = 0) -> np.ndarray:
    """(frames,) scores at K from per-frame sparse confusions (``frame`` or ``spatial_cm``):
    the runtime's mean of the ``statistic`` of the first K comparisons."""
    out = []
    for frame in confusions:
        cms = from_sparse(_first(frame, k), num_classes)
        out.append(mean_score(score_from_confusion(cms, statistic, min_pixels)))
    return np.asarray(out, np.float64)


class Scorer:
    """Spatial (pairs), frame and scale scores of image sets, cached in OUT/scores/<set>.json.

    ``s``: the EvalSettings (frame, patch, b_low, b_high, ks, stds, seed, out).
    """

    DETECTORS = ("spatial", "frame", "scale")

    def __init__(self, s, segmenter, model_sha: str, device: str, progress: bool,
                 cached_only: bool = False):
        from .scoring import torch_segment

        self.s, self.progress, self.cached_only = s, progress, cached_only
        self.segment = torch_segment(segmenter, device)
        self.k_max = max(s.ks)
        self.num_classes = segmenter.num_classes
        self.base_key = {"model_sha256": model_sha, "frame": list(s.frame), "patch": s.patch,
                         "b_low": s.b_low, "b_high": s.b_high, "k_max": self.k_max,
                         "stds": [float(v) for v in s.stds], "seed": s.seed, "cache": 2}
        self.folder = Path(s.out) / "scores"
        self.folder.mkdir(parents=True, exist_ok=True)

    def _cached(self, path: Path, key: dict, frames: list):
        if self.cached_only:
            # Scores made on another machine: the frames' files are not here, so the cache
            # matches on everything else and on the frame names, in order.
            try:
                doc = json.loads(path.read_text())
                cached = {k: v for k, v in doc["key"].items() if k != "frames"}
                if cached == key and [f[0] for f in doc["key"]["frames"]] == [n for n, _ in frames]:
                    return doc["scores"]
            except (OSError, ValueError, KeyError, TypeError, IndexError):
                pass
            raise MissingCache(f"scores/{path.name}")
        key["frames"] = [[n, str(p), Path(p).stat().st_size, Path(p).stat().st_mtime_ns] for n, p in frames]
        if path.is_file():
            try:
                doc = json.loads(path.read_text())
                if doc.get("key") == key:
                    return doc["scores"]
            except (OSError, ValueError):
                pass  # unreadable cache: recompute
        return None

    def scores(self, name: str, frames: list, detectors=DETECTORS, read=None) -> dict:
        """``frames``: [(frame name, path)], each read by ``read(path)`` ((H, W, 3) uint8 RGB;
        None: read_image; an attack cache's perturbations are rebuilt into frames). Returns {"names", "spatial": (n, K_max) pair
        mIoUs, "spatial_cm" and "frame": per frame K_max sparse confusions, "scale": {std:
        (n,) scores}} for the detectors asked (cached)."""
        from tqdm import tqdm

        from edge_guard.calibration.data.folders import read_image

        path = self.folder / f"{name}.json"
        key = {**self.base_key, "set": name, "detectors": sorted(detectors)}
        cached = self._cached(path, key, frames)
        if cached is not None:
            return cached
        stream = zlib.crc32(name.encode())
        rng = np.random.default_rng(np.random.SeedSequence([int(self.s.seed), stream]))
        # Another stream for the frame detector's patches: adding it left the pairs' draws as they were.
        frame_rng = np.random.default_rng(np.random.SeedSequence([int(self.s.seed), stream, 1]))
        out = {"names": [n for n, _ in frames], "pair_stream": stream, **self._empty(detectors)}
        with tqdm(total=len(frames), desc=f"scoring {name}", unit="frame",
                  disable=not self.progress, dynamic_ncols=True) as bar:
            for _, p in frames:
                image = to_frame((read or read_image)(p), self.s.frame)
                self._score(image, detectors, rng, frame_rng, out)
                bar.update(1)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"key": key, "scores": out}))
        tmp.replace(path)
        return out

    def _empty(self, detectors) -> dict:
        """The lists _score appends each frame's scores to, for ``detectors``."""
        out = {}
        for d in detectors:
            out.update({"spatial": {"spatial": [], "spatial_cm": []}, "frame": {"frame": []},
                        "scale": {"scale": {f"{v:g}": [] for v in self.s.stds}}}[d])
        return out

    def time_frame(self, image: np.ndarray) -> float:
        """Seconds to score one frame with every detector (for the grid's plan; nothing kept)."""
        import time

        rng = np.random.default_rng(0)
        start = time.perf_counter()
        self._score(to_frame(image, self.s.frame), self.DETECTORS, rng, rng, self._empty(self.DETECTORS))
        return time.perf_counter() - start

    def _score(self, image, detectors, rng, frame_rng, out) -> None:
        from edge_guard.consistency import frame_confusion, miou_from_confusion, overlap_confusion
        from edge_guard.crop import crop_patches, crop_tops
        from edge_guard.patches import sample_pairs, sample_patches

        from .scoring import scale_scores

        s, c = self.s, self.num_classes
        h, w = image.shape[:2]
        if "spatial" in detectors:
            pairs = sample_pairs(h, w, s.patch, s.b_low, s.b_high, self.k_max, rng)
            cms = overlap_confusion(self.segment(crop_patches(image, pairs, s.patch)), pairs, c)
            out["spatial"].append([float(x) for x in miou_from_confusion(cms).reshape(-1)])
            out["spatial_cm"].append(to_sparse(cms))
        if "frame" in detectors:
            frame_labels = self.segment(image[None])[0]
            tops = sample_patches(h, w, s.patch, self.k_max, frame_rng)
            labels = self.segment(crop_tops(image, tops, s.patch))
            out["frame"].append(to_sparse(frame_confusion(labels, frame_labels, tops, c)))
        if "scale" in detectors:
            for std, v in scale_scores(self.segment, image, s.stds, c).items():
                out["scale"][f"{std:g}"].append(float(v))
