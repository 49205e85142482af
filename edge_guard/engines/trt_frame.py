"""build-engine's steps for the full-frame graph (segment.onnx), at the patch engine's precision.

The frame detector compares each patch with the frame's labels, and the vehicle drives on
those labels, so the full-frame engine is held to the patch engine's standard: its labels
against the fp32 graph's under ONNX Runtime, on the calibration frames themselves (at the
bundle's frame size), with the precision's label-agreement tolerance (trt_build.TOLERANCES).
The fp16/int8 graph is checked the same way under ONNX Runtime first; int8 calibrates on every
other calibration frame. The engine runs one frame: its profile is (1, H, W, 3).
"""

from __future__ import annotations

import numpy as np

from edge_guard.engine_cache import frame_profile
from edge_guard.errors import UserError

from .bundle_info import BundleInfo
from .ort_predict import OrtPredictor
from .parity import run_batched
from .trt_build import (TOLERANCES, CalibrationSet, EngineBuilder, EngineCheckError, _record_check,
                        check_compatible, ensure_precision_onnx)


class FrameGraph:
    """The full-frame graph of a bundle, its fp32 reference labels on the calibration frames,
    and the graph / engine made from it for one precision."""

    def __init__(self, info: BundleInfo, calib: CalibrationSet, log=print):
        self.info, self.log = info, log
        self.source = info.root / info.frame_graph
        self.frames = np.stack(calib.frames)
        if self.frames.shape[1:3] != tuple(info.frame_size):
            raise UserError(f"the calibration frames are {self.frames.shape[1]}x{self.frames.shape[2]}, "
                            f"{self.source.name} takes {info.frame_size[0]}x{info.frame_size[1]}")
        self.calib = calib
        log(f"{self.source.name}: fp32 reference labels of {len(self.frames)} frames under ONNX Runtime...")
        self.reference = self._labels(OrtPredictor(self.source))
        self.onnx_path = None

    def _labels(self, predict) -> np.ndarray:
        """(N, H, W) labels of the calibration frames, one frame per call (the engine's batch)."""
        return run_batched(predict, self.frames, 1)

    def figures(self, labels: np.ndarray, precision: str) -> dict:
        agreement = float(np.count_nonzero(labels == self.reference)) / self.reference.size
        need = TOLERANCES[precision]["min_agreement"]
        return {"frames": int(len(self.frames)), "pixels": int(self.reference.size),
                "label_agreement": agreement, "min_agreement": need, "passed": agreement >= need}

    def judge(self, labels: np.ndarray, precision: str, what: str) -> dict:
        """Figures of ``labels`` against the fp32 reference; EngineCheckError when below tolerance."""
        figures = self.figures(labels, precision)
        self.log(f"{what} vs fp32 {self.source.name}: labels agree on "
                 f"{100 * figures['label_agreement']:.3f}% of {figures['pixels']} pixels")
        if not figures["passed"]:
            raise EngineCheckError(f"{what} ({precision}) is refused against the fp32 full-frame graph: "
                                   f"labels agree on {100 * figures['label_agreement']:.2f}% "
                                   f"(need {100 * figures['min_agreement']:.1f}%)")
        return figures

    def prepare(self, precision: str, quant: dict) -> dict:
        """Steps 1-3: the graph for ``precision`` (made unless fresh), its TensorRT
        compatibility and, for fp16/int8, its check under ONNX Runtime."""
        frames = self.frames[1::2] if len(self.frames) > 1 else self.frames
        self.onnx_path = ensure_precision_onnx(self.info, precision, self.calib, source=self.source,
                                               quant_data=frames, **quant)
        check_compatible(self.onnx_path, self.log)
        out = {"onnx": str(self.onnx_path)}
        if precision != "fp32":
            labels = self._labels(OrtPredictor(self.onnx_path))
            try:
                out["onnx_check"] = self.judge(labels, precision, self.onnx_path.name)
            except EngineCheckError:
                _record_check(self.onnx_path, self.figures(labels, precision))
                raise
            _record_check(self.onnx_path, out["onnx_check"])
        return out

    def build(self, builder: EngineBuilder) -> dict:
        """Steps 4-5: the full-frame engine (cached when still valid)."""
        height, width = self.info.frame_size
        precision = builder.precision

        def check(runner):
            return self.judge(self._labels(runner), precision, "the full-frame TensorRT engine")

        return builder.build(self.onnx_path, "frame", frame_profile(height, width), check,
                             dict(batch=1, frame=(height, width)))
