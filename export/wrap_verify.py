"""Check a wrapped graph against the user's own graph, run as given through ONNX Runtime.

The reference feeds the user's graph the way the conventions say, in NumPy
(:func:`edge_guard.export.onnx_wrap.feed`), and turns its output into labels in NumPy: an
upsampling written here from PyTorch's definitions of ``interpolate``, and argmax. So the
wrapper's nodes (cast, channel order, transpose, normalisation, Resize, ArgMax) are checked
by code that shares none of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .onnx_graph import GraphInfo
from .onnx_wrap import feed, resized, session


def _axis_linear(n_out: int, n_in: int, align_corners: bool):
    """Source index pairs and weights of PyTorch's 1-D linear interpolation n_in -> n_out."""
    dst = np.arange(n_out, dtype=np.float64)
    if align_corners:
        src = dst * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros_like(dst)
    else:
        src = np.maximum((dst + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = (src - i0).astype(np.float32)
    return i0, i1, frac


def upsample_linear(x: np.ndarray, size, align_corners: bool = False) -> np.ndarray:
    """(N, C, h, w) float -> (N, C, H, W): F.interpolate(mode="bilinear", align_corners=...)."""
    h0, h1, fh = _axis_linear(size[0], x.shape[2], align_corners)
    w0, w1, fw = _axis_linear(size[1], x.shape[3], align_corners)
    rows = x[:, :, h0, :] * (1 - fh)[:, None] + x[:, :, h1, :] * fh[:, None]
    return rows[:, :, :, w0] * (1 - fw) + rows[:, :, :, w1] * fw


def upsample_nearest(x: np.ndarray, size) -> np.ndarray:
    """(..., h, w) -> (..., H, W): F.interpolate(mode="nearest"), source = floor(dst * h / H)."""
    h, w = x.shape[-2:]
    rows = np.minimum(np.floor(np.arange(size[0]) * (h / size[0])).astype(np.int64), h - 1)
    cols = np.minimum(np.floor(np.arange(size[1]) * (w / size[1])).astype(np.int64), w - 1)
    return x[..., rows, :][..., cols]


def to_labels(info: GraphInfo, y: np.ndarray, size) -> np.ndarray:
    """The user's graph's output -> int32 (N, H, W) labels at ``size``, the conventions' way."""
    nchw = info.conventions.layout == "NCHW"
    if info.output_kind == "labels":
        if y.ndim == 4:
            y = y[:, 0] if nchw else y[..., 0]
        if y.shape[1:] != tuple(size):
            y = upsample_nearest(y, size)
        return y.astype(np.int32)
    if not nchw:
        y = y.transpose(0, 3, 1, 2)
    y = y.astype(np.float32, copy=False)
    if y.shape[2:] != tuple(size):
        up = info.conventions.upsample
        y = upsample_nearest(y, size) if up == "nearest" else upsample_linear(y, size, up == "bilinear-align-corners")
    return y.argmax(axis=1).astype(np.int32)


class Reference:
    """The user's graph as given (its input size set only where the graph fixes another one),
    called like the wrapped graph: uint8 (N, H, W, 3) RGB -> int32 (N, H, W)."""

    def __init__(self, model, info: GraphInfo, size):
        fixed = info.fixed_size
        self.as_given = fixed is None or tuple(fixed) == tuple(size)
        self.one_by_one = info.input_dims[0] == 1  # a graph fixed at batch 1 runs as given
        self.session = session(model if self.as_given else resized(model, info, size, self._batch(info)))
        self.info, self.size = info, tuple(size)

    @staticmethod
    def _batch(info: GraphInfo):
        return info.input_dims[0] if isinstance(info.input_dims[0], int) else "batch"

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        chunks = [pixels[i:i + 1] for i in range(len(pixels))] if self.one_by_one else [pixels]
        out = [self.session.run([self.info.output_name], {self.info.input_name: feed(self.info, c)})[0]
               for c in chunks]
        return to_labels(self.info, np.concatenate(out), self.size)


@dataclass
class WrapParity:
    """How often the wrapped graph's labels equal the reference's."""

    equal: int
    pixels: int
    images: int
    size: tuple
    #: the share of the wrapped graph's labels in its most frequent class
    top_class_share: float = 0.0

    @property
    def agreement(self) -> float:
        return self.equal / self.pixels if self.pixels else 1.0

    def as_dict(self) -> dict:
        return {"label_agreement": self.agreement, "pixels": self.pixels, "images": self.images,
                "size": list(self.size), "top_class_share": self.top_class_share}

    def summary(self) -> str:
        return (f"{100 * self.agreement:.3f}% of {self.pixels} labels equal on {self.images} "
                f"{self.size[0]}x{self.size[1]} inputs")


def compare(wrapped, reference, images: list, batch: int = 4) -> WrapParity:
    """Run both on ``images`` (uint8 (H, W, 3) RGB, all one size) and count equal labels."""
    equal = pixels = 0
    counts = np.zeros(0, np.int64)
    for start in range(0, len(images), batch):
        x = np.stack(images[start:start + batch])
        a, b = np.asarray(wrapped(x)), reference(x)
        equal += int(np.count_nonzero(a == b))
        pixels += a.size
        c = np.bincount(np.clip(a, 0, None).ravel())
        counts = np.pad(counts, (0, max(0, c.size - counts.size))) + np.pad(c, (0, max(0, counts.size - c.size)))
    top = float(counts.max() / pixels) if pixels else 0.0
    return WrapParity(equal, pixels, len(images), tuple(images[0].shape[:2]) if images else (0, 0), top)


def crops(frames: list, patch: int, per_frame: int, seed: int) -> list:
    """``per_frame`` random (patch x patch) crops of each frame, from a seeded generator."""
    rng = np.random.default_rng(seed)
    out = []
    for f in frames:
        h, w = f.shape[:2]
        for _ in range(per_frame):
            y, x = int(rng.integers(0, h - patch + 1)), int(rng.integers(0, w - patch + 1))
            out.append(np.ascontiguousarray(f[y:y + patch, x:x + patch]))
    return out
