"""Segmentation quality of a model on a labelled split: per-class IoU and mIoU."""

from __future__ import annotations

import numpy as np
import torch

from edge_guard.classes import NAMES

from .models.fusion import fuse_segmenter
from .models.segmenter import labels_of


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts, rows = ground truth, cols = prediction; gt >= C (void) skipped."""
    valid = gt < num_classes
    index = gt[valid].astype(np.int64) * num_classes + pred[valid].astype(np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_table(cm: np.ndarray) -> dict:
    """Per-class IoU from a (C, C) confusion matrix (rows: ground truth, columns: prediction).

    As cityscapesScripts: mIoU is the mean over the classes with a non-empty union, so a class
    predicted where the ground truth has none scores 0; a class neither in the ground truth
    nor predicted is left out. ``miou_gt_classes`` averages over the ground truth's classes
    only (this project's rule before 2026-11-27; equal when every class occurs, as on a full
    Cityscapes val).
    """
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    gt_count = cm.sum(1)
    union = gt_count + cm.sum(0) - tp
    iou = np.divide(tp, union, out=np.full_like(tp, np.nan), where=union > 0)
    present = union > 0
    in_gt = gt_count > 0
    return {
        "iou": [None if not p else round(float(v), 4) for v, p in zip(iou, present)],
        "present": [bool(p) for p in present],
        "miou": float(np.mean(iou[present])) if present.any() else float("nan"),
        "miou_gt_classes": float(np.mean(iou[in_gt])) if in_gt.any() else float("nan"),
        "pixel_accuracy": float(tp.sum() / max(1.0, cm.sum())),
        "pixels": [int(v) for v in gt_count],
    }


@torch.no_grad()
def predict(segmenter, image: np.ndarray, device: str = "cpu") -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) uint8 predicted train ids."""
    x = torch.from_numpy(image).to(device).permute(2, 0, 1)[None].float().div_(255)
    return labels_of(segmenter(x))[0].to(torch.uint8).cpu().numpy()


def evaluate_segmentation(segmenter, frames, limit: int | None = None, device: str = "cpu",
                          progress: bool = True) -> dict:
    """Run `segmenter` on the labelled `frames` (items (image, labels, name)) at full size."""
    from tqdm.auto import tqdm

    segmenter = fuse_segmenter(segmenter.eval().to(device))
    n = len(frames) if not limit else min(limit, len(frames))
    c = segmenter.num_classes
    cm = np.zeros((c, c), np.int64)
    for i in tqdm(range(n), disable=not progress, desc="evaluate", unit="frame"):
        image, labels, _ = frames[i]
        cm += confusion_matrix(predict(segmenter, image, device), labels, c)
    table = iou_table(cm)
    table["frames"] = n
    table["class_names"] = list(NAMES[:c]) if c <= len(NAMES) else [str(i) for i in range(c)]
    return table


def format_table(table: dict) -> str:
    """Markdown table of per-class IoU, then mIoU over the classes in the ground truth or the
    prediction (and over the ground truth's alone when that differs)."""
    lines = ["| class | IoU | pixels |", "|---|---:|---:|"]
    for name, iou, pixels in zip(table["class_names"], table["iou"], table["pixels"]):
        lines.append(f"| {name} | {'-' if iou is None else f'{iou:.3f}'} | {pixels} |")
    present = sum(table["present"])
    lines.append(f"| **mIoU ({present} classes present)** | **{table['miou']:.3f}** | |")
    in_gt = sum(1 for p in table["pixels"] if p > 0)
    if in_gt != present:
        lines.append(f"| mIoU over the {in_gt} classes of the ground truth | {table['miou_gt_classes']:.3f} | |")
    lines.append(f"\npixel accuracy {table['pixel_accuracy']:.3f} over {table['frames']} frames")
    return "\n".join(lines)
