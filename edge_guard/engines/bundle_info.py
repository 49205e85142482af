"""What build-engine needs to know about a bundle, from guard.json or export.json.

guard.json (written by calibrate) wins; a bundle straight from ``edge-guard export`` has only
export.json, whose ``model`` section is the same. Detector fields (method, K, displacement
bounds, threshold), the frame size and the full-frame graph come from guard.json when present.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edge_guard.bundle import EXPORT_FILE, GUARD_FILE, check_bundle_file
from edge_guard.bundle_schema import method_of
from edge_guard.errors import DataError, UserError
from edge_guard.patches import scaled_bounds

PAPER_K = 50  # §5: K = 50 pairs is enough against adaptive attacks


@dataclass
class BundleInfo:
    root: Path
    model_file: str
    patch: int
    num_classes: int
    input_name: str
    output_kind: str
    k: int | None = None
    b_low: int | None = None
    b_high: int | None = None
    threshold: float | None = None
    frame_size: tuple | None = None
    method: str | None = None          # "frame" or "pairs"; None for an uncalibrated bundle
    frame_graph: str | None = None     # the full-frame graph's file (guard.json model.frame_graph)

    @property
    def onnx_path(self) -> Path:
        return self.root / self.model_file

    @property
    def per_k(self) -> int:
        """Patches per unit of K the patch engine runs: 1 for the frame detector, else 2 (pairs;
        also for a bundle without a detector yet, which covers either)."""
        return 1 if self.method == "frame" else 2

    def bounds(self) -> tuple:
        if self.b_low is not None and self.b_high is not None:
            return int(self.b_low), int(self.b_high)
        return scaled_bounds(self.patch)


def _read_json(path: Path):
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not readable JSON ({exc.__class__.__name__}): re-create the bundle") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path} does not hold a JSON object")
    return data


def _first(d: dict, *keys):
    for k in keys:
        if isinstance(d, dict) and d.get(k) is not None:
            return d[k]
    return None


def _frame_size(frame) -> tuple | None:
    if not isinstance(frame, dict):
        return None
    size = _first(frame, "size", "resize")
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return int(size[0]), int(size[1])
    h, w = _first(frame, "height", "h"), _first(frame, "width", "w")
    return (int(h), int(w)) if h and w else None


def read_bundle(root) -> BundleInfo:
    """Read a bundle folder; DataError (one line) when it is not one."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a bundle folder (make one with `edge-guard export --out {root}`)")
    guard = _read_json(root / "guard.json") if (root / "guard.json").is_file() else {}
    record = _read_json(root / EXPORT_FILE) if (root / EXPORT_FILE).is_file() else {}
    model = guard.get("model") or record.get("model")
    if not isinstance(model, dict):
        raise DataError(f"{root} has neither guard.json nor export.json with a model section: "
                        f"run `edge-guard export --out {root}` first")
    try:
        info = BundleInfo(
            root=root,
            model_file=str(model.get("file", "model.onnx")),
            patch=int(_first(model, "patch_size", "patch")),
            num_classes=int(model["num_classes"]),
            input_name=str((model.get("input") or {}).get("name", "image")),
            output_kind=str((model.get("output") or {}).get("kind", "labels")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"the model section of {root} is incomplete ({exc}): re-export the bundle") from exc
    named_in = GUARD_FILE if guard.get("model") else EXPORT_FILE
    # An engine is built from the very graph the bundle was calibrated (or exported) with.
    check_bundle_file(root, info.model_file, model.get("sha256"), "model", named_in)
    det = guard.get("detector") or {}
    k = _first(det, "k", "K", "pairs")
    info.k = int(k) if k else None
    low, high = _first(det, "b_low", "low"), _first(det, "b_high", "b_upper", "high")
    if low is not None and high is not None:
        info.b_low, info.b_high = int(low), int(high)
    thr = det.get("threshold") if isinstance(det, dict) else None
    if isinstance(thr, dict):
        thr = _first(thr, "value", "threshold")
    info.threshold = float(thr) if thr is not None else None
    info.frame_size = _frame_size(guard.get("frame"))
    info.method = method_of(det) if isinstance(det, dict) and det.get("method") else None
    graph = (guard.get("model") or {}).get("frame_graph")
    if isinstance(graph, dict) and isinstance(graph.get("file"), str):
        check_bundle_file(root, graph["file"], graph.get("sha256"), "full-frame graph")
        if info.frame_size is None:
            raise DataError(f"{root}/guard.json has a full-frame graph but no frame size: recalibrate the bundle")
        info.frame_graph = graph["file"]
    return info
