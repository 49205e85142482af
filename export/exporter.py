"""``edge-guard export``: checkpoint -> verified ``model.onnx`` in a bundle folder.

Every export checks itself before the file gets its final name:

1. ``onnx.checker.check_model(full_check=True)``;
2. ONNX Runtime (CPU) against PyTorch on generated street frames, K random overlapping
   patch pairs per frame (drawn and cropped exactly as the runtime does): at least
   ``MIN_AGREEMENT`` of the labels equal and the mean per-pair mIoU within
   ``MAX_MIOU_DIFF`` of PyTorch's;
3. the TensorRT-compatibility check (trt_compat).

It then writes ``model.onnx`` and ``export.json`` ({"model": section for guard.json,
"verification": figures, "trt_compat": verdict}). Given a frame size it also writes
``segment.onnx``, the same net over the whole frame (plain segmentation, verified the same
way on one generated frame): the baseline ``edge-guard bench`` measures the guard against;
export.json's ``segment`` section describes it. A failed check raises ExportCheckError
(one line with the figures) and leaves no ``model.onnx`` behind.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edge_guard import __version__
from edge_guard.bundle import EXPORT_FILE
from edge_guard.engine_cache import sha256_file
from edge_guard.errors import UserError
from edge_guard.patches import scaled_bounds

from edge_guard.engines.frames import check_frames_fit, default_frame_size, generated_frames
from .onnx_export import BATCH_DIM, INPUT_NAME, export_onnx, torch_predictor
from edge_guard.engines.ort_predict import OrtPredictor
from edge_guard.engines.parity import compare_predictors, draw_patch_sets
from edge_guard.engines.trt_compat import check_trt_compat

MODEL_FILE = "model.onnx"
SEGMENT_FILE = "segment.onnx"
RECORD_FILE = EXPORT_FILE
MIN_AGREEMENT = 0.999
MAX_MIOU_DIFF = 1e-3


class ExportCheckError(UserError):
    """An exported graph failed its own verification (message carries the figures)."""


def model_section(onnx_path: Path, segmenter, patch: int, output: str, opset: int,
                  checkpoint: Path | None) -> dict:
    """The ``model`` section of guard.json for an exported patch graph."""
    s = int(patch)
    out = ({"kind": "labels", "name": "labels", "dtype": "int32", "shape": [BATCH_DIM, s, s]}
           if output == "labels" else
           {"kind": "logits", "name": "logits", "dtype": "float32",
            "shape": [BATCH_DIM, segmenter.num_classes, s, s]})
    return {
        "file": onnx_path.name,
        "sha256": sha256_file(onnx_path),
        "format": "onnx",
        "opset": int(opset),
        "architecture": segmenter.name,
        "model_kwargs": dict(segmenter.model_kwargs),
        "patch_size": s,
        "input": {"name": INPUT_NAME, "dtype": "uint8", "layout": "NHWC", "channels": "RGB",
                  "shape": [BATCH_DIM, s, s, 3]},
        "normalization": {"where": "in-graph", "scale": 255.0, "mean": list(segmenter.mean),
                          "std": list(segmenter.std),
                          "formula": "(pixel / 255 - mean) / std, RGB order"},
        # In the graph too (added to the logits before ArgMax); recorded so a reader sees it.
        "logit_bias": None if segmenter.logit_bias is None else list(segmenter.logit_bias),
        "num_classes": int(segmenter.num_classes),
        "class_names": list(segmenter.class_names),
        "output": out,
        "source_checkpoint": ({"file": Path(checkpoint).name, "sha256": sha256_file(checkpoint)}
                              if checkpoint else None),
    }


def verify_against_torch(onnx_path: Path, segmenter, patch: int, frames: int = 2, pairs: int = 8,
                         seed: int = 0, frame_size: tuple | None = None, log=print) -> dict:
    """ONNX Runtime vs PyTorch on generated frames; ExportCheckError when they differ."""
    low, high = scaled_bounds(patch)
    size = tuple(frame_size) if frame_size else default_frame_size(patch, high)
    images = generated_frames(frames, size, seed)
    check_frames_fit(images, patch, low)
    sets = draw_patch_sets(images, patch, low, high, pairs, seed)
    parity = compare_predictors(torch_predictor(segmenter), OrtPredictor(onnx_path), sets,
                                segmenter.num_classes, batch=8)
    figures = parity.as_dict()
    figures.update(frame_size=list(size), b_low=low, b_high=high, seed=seed,
                   min_agreement=MIN_AGREEMENT, max_miou_diff=MAX_MIOU_DIFF)
    log(f"ONNX Runtime vs PyTorch: {parity.summary()}")
    if parity.label_agreement < MIN_AGREEMENT or parity.pair_miou_diff > MAX_MIOU_DIFF:
        raise ExportCheckError(
            f"the exported graph does not match PyTorch: {100 * parity.label_agreement:.3f}% labels "
            f"equal (need {100 * MIN_AGREEMENT:.1f}%), pair mIoU differs by {parity.pair_miou_diff:.2e} "
            f"(need <= {MAX_MIOU_DIFF:g}); nothing was written")
    return figures


def export_segment(segmenter, out_dir: Path, frame: tuple, opset: int = 17, seed: int = 0,
                   log=print) -> dict:
    """Write ``segment.onnx`` (uint8 [batch, H, W, 3] RGB -> int32 labels [batch, H, W]) after
    checking it against PyTorch on one generated frame; returns export.json's ``segment`` section."""
    import onnx

    h, w = (int(v) for v in frame)
    final = out_dir / SEGMENT_FILE
    partial = out_dir / f".{SEGMENT_FILE}.partial"
    try:
        export_onnx(segmenter, partial, (h, w), "labels", opset)
        proto = onnx.load(str(partial))
        onnx.checker.check_model(proto, full_check=True)
        compat = check_trt_compat(proto)
        image = np.stack(generated_frames(1, (h, w), seed))
        ref = torch_predictor(segmenter)(image)
        test = OrtPredictor(partial)(image)
        agreement = float(np.mean(ref == test))
        log(f"segment.onnx ({h}x{w} frames, plain segmentation for `edge-guard bench`): labels agree "
            f"with PyTorch on {100 * agreement:.3f}% of {ref.size} pixels; {compat.verdict()}")
        if agreement < MIN_AGREEMENT:
            raise ExportCheckError(f"the full-frame graph does not match PyTorch: {100 * agreement:.3f}% "
                                   f"labels equal (need {100 * MIN_AGREEMENT:.1f}%); nothing was written")
        os.replace(partial, final)
    finally:
        if partial.exists():
            partial.unlink()
    return {"file": SEGMENT_FILE, "sha256": sha256_file(final), "frame_size": [h, w],
            "input": {"name": INPUT_NAME, "dtype": "uint8", "layout": "NHWC", "channels": "RGB",
                      "shape": [BATCH_DIM, h, w, 3]},
            "output": {"name": "labels", "dtype": "int32", "shape": [BATCH_DIM, h, w]},
            "verification": {"label_agreement": agreement, "pixels": int(ref.size), "seed": seed},
            "trt_compat": compat.ok}


def export_bundle(checkpoint, out_dir, patch: int = 256, output: str = "labels", opset: int = 17,
                  arch: str | None = None, frames: int = 2, pairs: int = 8, seed: int = 0,
                  frame_size: tuple | None = None, require_trt: bool = True,
                  segment_frame: tuple | None = None, log=print) -> dict:
    """Export, verify and write ``model.onnx`` + ``export.json`` into ``out_dir``.

    Returns the record written to export.json. ``require_trt=False`` writes a graph that
    fails the TensorRT check anyway (ONNX Runtime can still run it). ``segment_frame``
    (H, W): also write the full-frame graph ``segment.onnx``.
    """
    import onnx

    from edge_guard.calibration.models.checkpoint import load_segmenter

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} exists and is not a folder")
    low = scaled_bounds(patch)[0]
    if frame_size and min(frame_size) < patch + low:  # found now, not after the export
        raise UserError(f"--verify-size {frame_size[0]}x{frame_size[1]} is too small for {patch}px patch pairs: "
                        f"use at least {patch + low}x{patch + low}")
    out_dir.mkdir(parents=True, exist_ok=True)
    segmenter, _ = load_segmenter(checkpoint, arch=arch)
    final = out_dir / MODEL_FILE
    partial = out_dir / f".{MODEL_FILE}.partial"
    try:
        export_onnx(segmenter, partial, patch, output, opset)
        proto = onnx.load(str(partial))
        try:
            onnx.checker.check_model(proto, full_check=True)
        except onnx.checker.ValidationError as exc:
            raise ExportCheckError(f"onnx.checker rejects the exported graph: {str(exc).splitlines()[0]}") from exc
        log(f"onnx.checker (full_check): ok, opset {opset}, {len(proto.graph.node)} nodes, "
            f"{partial.stat().st_size / 1e6:.2f} MB")
        compat = check_trt_compat(proto)
        log(compat.verdict())
        figures = verify_against_torch(partial, segmenter, patch, frames, pairs, seed, frame_size, log)
        if not compat.ok and require_trt:
            raise ExportCheckError(f"{compat.verdict()}; nothing was written "
                                   "(--allow-non-trt writes it anyway, for ONNX Runtime only)")
        # The full-frame graph is made and checked before model.onnx is replaced: if it fails,
        # the folder keeps its previous, consistent model.onnx, segment.onnx and export.json.
        segment = export_segment(segmenter, out_dir, segment_frame, opset, seed, log) if segment_frame else None
        os.replace(partial, final)
    finally:
        if partial.exists():
            partial.unlink()
    if not segment_frame and (out_dir / SEGMENT_FILE).exists():
        (out_dir / SEGMENT_FILE).unlink()  # it holds the previous model's weights
    record = {
        "model": model_section(final, segmenter, patch, output, opset, Path(checkpoint)),
        "verification": figures,
        "trt_compat": compat.as_dict(),
        "segment": segment,
        "exported": {"edge_guard": __version__, "torch": _torch_version(), "onnx": onnx.__version__,
                     "time": datetime.now(timezone.utc).isoformat(timespec="seconds")},
    }
    (out_dir / RECORD_FILE).write_text(json.dumps(record, indent=1))
    _warn_stale_guard(out_dir, record["model"]["sha256"], log)
    return record


def _torch_version() -> str:
    import torch

    return torch.__version__


def _warn_stale_guard(out_dir: Path, sha: str, log) -> None:
    """A guard.json calibrated on another model must be recalibrated."""
    guard = out_dir / "guard.json"
    if not guard.is_file():
        return
    try:
        old = (json.loads(guard.read_text()).get("model") or {}).get("sha256")
    except (OSError, ValueError, AttributeError):
        old = None
    if old and old != sha:
        log(f"note: {guard} was calibrated for another model.onnx (sha256 {old[:12]}...): "
            "recalibrate before using this bundle")
