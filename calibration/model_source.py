"""Where a bundle's graphs come from: a PyTorch checkpoint, or the user's own ONNX.

Both give calibration the same two things: the bundle's verified graphs (export.json's
record: ``model.onnx`` for patches, ``segment.onnx`` for whole frames) and a ``segment``
callable, (B, h, w, 3) uint8 RGB -> (B, h, w) labels, that scores frames the way the
vehicle will. A checkpoint is scored in PyTorch (checked at export to agree with its graphs);
an ONNX is scored with its wrapped graphs themselves, through ONNX Runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_guard.engine_cache import sha256_file
from edge_guard.errors import UserError

#: Calibration frames the wrapped graphs are checked on (whole, and 4 patches of each).
WRAP_CHECK_FRAMES = 8


@dataclass
class CheckpointModel:
    """An edge-guard or official DRN/DLA checkpoint, exported by :mod:`edge_guard.export`."""

    path: Path
    arch: str | None = None
    device: str = "cpu"

    def check(self, s=None) -> None:
        self.path = Path(self.path).expanduser()
        if not self.path.is_file():
            raise UserError(f"checkpoint {self.path} does not exist")

    @property
    def sha256(self) -> str:
        return sha256_file(self.path)

    def provenance(self) -> dict:
        return {"source_checkpoint": {"file": self.path.name, "sha256": self.sha256}}

    def graphs(self, out: Path, s, cal, log) -> tuple:
        """(export.json record, segment callable) for settings ``s``."""
        from edge_guard.export.exporter import export_bundle

        from .models.checkpoint import load_segmenter
        from .scoring import torch_segment

        segmenter, _ = load_segmenter(self.path, arch=self.arch)
        record = export_bundle(self.path, out, patch=s.patch, output="labels", arch=self.arch, seed=s.seed,
                               frame_size=tuple(s.frame_size), segment_frame=tuple(s.frame_size), log=log)
        return record, torch_segment(segmenter, self.device)


@dataclass
class OnnxModel:
    """A segmentation graph from the user's own stack, with its conventions (``options``:
    :func:`edge_guard.export.onnx_conventions.resolve`'s) and classes (``--classes``)."""

    path: Path
    options: dict = field(default_factory=dict)
    classes: object = None
    require_trt: bool = True
    plan: object = field(default=None, init=False, repr=False, compare=False)  # check()'s WrapPlan

    def check(self, s) -> None:
        """Every refusal of the graph itself (reading it, running it at the patch and frame
        sizes of settings ``s``), before any data loads; the plan is kept for :meth:`graphs`."""
        from edge_guard.export.wrap_bundle import plan_wrap

        self.path = Path(self.path).expanduser()
        self.plan = plan_wrap(self.path, self.options, self.classes, s.patch, tuple(s.frame_size))

    @property
    def sha256(self) -> str:
        return sha256_file(self.path)

    def provenance(self) -> dict:
        return {"source_onnx": {"file": self.path.name, "sha256": self.sha256}}

    def graphs(self, out: Path, s, cal, log) -> tuple:
        from edge_guard.export.wrap_bundle import wrap_bundle
        from edge_guard.frames import resize

        if self.plan is None:
            self.check(s)
        frames = []
        for image in cal.images():
            frames.append(resize(image, tuple(s.frame_size)))
            if len(frames) == WRAP_CHECK_FRAMES:
                break
        record = wrap_bundle(self.plan, out, frames, seed=s.seed, require_trt=self.require_trt, log=log)
        return record, bundle_segment(out, record)


def bundle_segment(out: Path, record: dict):
    """The bundle's own two graphs as one callable: s x s batches through model.onnx, H x W
    batches through segment.onnx (ONNX Runtime, CPU)."""
    from edge_guard.engines.ort_predict import OrtPredictor

    s = int(record["model"]["patch_size"])
    h, w = record["segment"]["frame_size"]
    by_size = {(s, s): OrtPredictor(Path(out) / record["model"]["file"]),
               (int(h), int(w)): OrtPredictor(Path(out) / record["segment"]["file"])}

    def segment(batch: np.ndarray) -> np.ndarray:
        predict = by_size.get(tuple(batch.shape[1:3]))
        if predict is None:
            raise UserError(f"the bundle's graphs take {s}x{s} patches and {h}x{w} frames, not "
                            f"{batch.shape[1]}x{batch.shape[2]}")
        return predict(np.ascontiguousarray(batch))

    return segment
