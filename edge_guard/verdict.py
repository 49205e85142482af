"""What ``Guard.check`` returns for one frame: the verdict and the frame's segmentation."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import UserError


@dataclass
class Verdict:
    """The check of one frame.

    ``detector``: "frame" (each patch against the frame's labels) or "pairs" (the paper's
    overlapping pairs); ``statistic``: what a comparison scores ("miou", "agreement",
    "miou-min"); ``scores``: the K comparison scores, ``score`` their mean (adversarial when
    below ``threshold``); ``boxes``: the K regions compared, in the resized frame: [y, x] patch
    top-lefts (frame) or [y1, x1, y2, x2] pair top-lefts (pairs); ``patch_size``: their side.
    ``labels``: (H, W) int32 class ids of the whole frame at ``frame_size`` (the full-frame
    graph's, or the ones passed to check), None when the guard did not segment the frame;
    :meth:`labels_at` gives them at the input's size. ``timings_ms``: wall time per stage
    (guard.STAGES; on the GPU path crop, infer and consistency are one "gpu" entry unless the
    Guard was made with ``stage_timing=True``); ``frame_size``: (h, w) the boxes live in;
    ``input_size``: the frame's (h, w) as given.
    """

    score: float
    threshold: float
    adversarial: bool
    detector: str
    statistic: str
    scores: list
    boxes: list
    patch_size: int
    timings_ms: dict
    frame_size: tuple
    input_size: tuple
    backend: str
    provider: str
    labels: np.ndarray | None = field(default=None, repr=False)

    @property
    def k(self) -> int:
        return len(self.boxes)

    @property
    def pair_mious(self) -> list:
        """The pairs detector's name for ``scores`` (its overlap mIoUs)."""
        return self.scores

    @property
    def pairs(self) -> list:
        """The pairs detector's name for ``boxes``."""
        return self.boxes

    def labels_at(self, size=None) -> np.ndarray:
        """The frame's labels resized (nearest neighbour) to ``size`` = (h, w), by default the
        input frame's size: the segmentation to overlay on the camera image."""
        if self.labels is None:
            raise UserError("this verdict carries no labels: the guard did not segment the frame "
                            "(a pairs bundle without a full-frame graph, or segment=False)")
        h, w = (int(v) for v in (self.input_size if size is None else size))
        if h < 1 or w < 1:
            raise UserError(f"labels_at needs a positive size, got {h}x{w}")
        src_h, src_w = self.labels.shape
        if (h, w) == (src_h, src_w):
            return self.labels
        # Nearest neighbour by pixel centres, on any integer dtype (OpenCV's resize is not).
        ys = np.minimum(((np.arange(h) + 0.5) * src_h / h).astype(np.intp), src_h - 1)
        xs = np.minimum(((np.arange(w) + 0.5) * src_w / w).astype(np.intp), src_w - 1)
        return self.labels[ys[:, None], xs[None, :]]

    def as_dict(self) -> dict:
        """JSON-ready fields (stable names: the stream events use them); labels are left out.

        The pairs detector also carries its older names: ``pair_mious`` and ``pairs``."""
        out = {"score": self.score, "threshold": self.threshold, "adversarial": self.adversarial,
               "detector": self.detector, "statistic": self.statistic, "k": self.k,
               "scores": list(self.scores), "boxes": [list(b) for b in self.boxes],
               "patch_size": self.patch_size, "timings_ms": dict(self.timings_ms),
               "frame_size": list(self.frame_size), "input_size": list(self.input_size),
               "backend": self.backend, "provider": self.provider}
        if self.detector == "pairs":
            out["pair_mious"] = out["scores"]
            out["pairs"] = out["boxes"]
        return out
