"""What ``edge-guard bench`` times: the bundle of each detector, the full-frame graph and
the runner of plain segmentation, and the camera frame.

A bundle folder (guard.json) is timed as calibrated for its own detector; the other detector,
and an uncalibrated export folder (model.onnx + export.json), are timed through
:func:`~edge_guard.bundle.uncalibrated_bundle`. The full-frame graph is guard.json's
model.frame_graph or, in bundles written before it, export.json's segment record.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .backends import FunctionRunner, Runner, open_runner
from .bundle import (EXPORT_FILE, GUARD_FILE, Bundle, BundleError, check_bundle_file, check_model_section,
                     load_bundle, plain_file_name, read_json, uncalibrated_bundle)
from .errors import UserError
from .limits import MAX_ITERS, MAX_PAIRS, MAX_SIDE, thread_count_error
from .patches import check_geometry, scaled_bounds
from .paths import ASSETS, DEFAULT_BUNDLE

DEMO_FRAME = ASSETS / "demo" / "clean_0017.png"
DETECTORS = ("frame", "pairs")


def check_settings(iters: int, warmup: int, pairs, threads) -> list:
    """The sorted K values, after checking every count against its bound (before any work:
    a thread count past the cores hangs the bench, and each iteration keeps a sample)."""
    if iters < 1 or warmup < 0:
        raise UserError(f"--iters must be >= 1 and --warmup >= 0, got {iters} and {warmup}")
    if iters > MAX_ITERS or warmup > MAX_ITERS:
        raise UserError(f"--iters and --warmup are at most {MAX_ITERS}, got {iters} and {warmup}")
    ks = sorted({int(k) for k in pairs})
    if not ks or ks[0] < 1:
        raise UserError(f"K values must be positive integers, got {list(pairs)}")
    if ks[-1] > MAX_PAIRS:
        raise UserError(f"at most K={MAX_PAIRS} patches or pairs per frame, got {ks[-1]}")
    why = None if threads is None else thread_count_error(threads, "threads")
    if why is not None:
        raise UserError(why)
    return ks


def open_bundle(bundle_dir=None, frame=None) -> Bundle:
    """guard.json when the folder has one; else export.json's model with the paper's geometry
    scaled to its patch size, at ``frame`` (or segment.onnx's frame size): timing only."""
    if isinstance(bundle_dir, str) and not bundle_dir.strip():
        raise UserError("an empty bundle path: give a bundle or export folder (it would mean the current folder)")
    root = Path(bundle_dir) if bundle_dir is not None else Path(DEFAULT_BUNDLE)
    if not root.is_dir():
        raise UserError(f"bundle folder {root} " + ("is a file: give the folder that holds guard.json"
                                                     if root.exists() else "does not exist"))
    if (root / GUARD_FILE).is_file():
        return load_bundle(root)
    record = _export_record(root)
    if record is None or not isinstance(record.get("model"), dict):
        raise BundleError(f"{root} has neither {GUARD_FILE} nor {EXPORT_FILE}: pass a bundle folder "
                          "(`edge-guard calibrate`) or an export folder (`edge-guard export`)")
    model = record["model"]
    check_model_section(model)
    check_bundle_file(root, model["file"], model["sha256"], "model", EXPORT_FILE)
    seg = record.get("segment") or {}
    size = tuple(frame) if frame else tuple(seg.get("frame_size") or ())
    if len(size) != 2:
        raise UserError(f"{root} is an uncalibrated export without a frame size: pass --frame HxW")
    s = int(model["patch_size"])
    low, high = scaled_bounds(s)
    check_geometry(size[0], size[1], s, low, high)
    return uncalibrated_bundle(model, size, low, high, k=1, root=root)


def _export_record(root: Path) -> dict | None:
    path = root / EXPORT_FILE
    if not path.is_file():
        return None
    record = read_json(path)
    if not isinstance(record, dict):
        raise BundleError(f"{path} must hold a JSON object: re-export the model (`edge-guard export`)")
    return record


def segment_graph(bundle: Bundle) -> tuple[Path | None, str]:
    """(path of the bundle's full-frame graph, why there is none). A record that names a
    file outside the bundle, or a file whose sha256 differs from the record's, is refused
    (BundleError): bench opens nothing export.json does not vouch for."""
    record = _export_record(bundle.root) or {}
    seg = record.get("segment")
    reexport = (f"re-export with `edge-guard export --frame {bundle.frame_size[0]}x{bundle.frame_size[1]}` "
                "to measure plain segmentation")
    if not seg:
        return None, f"{bundle.root} has no segment.onnx: {reexport}"
    size = seg.get("frame_size") if isinstance(seg, dict) else None
    well_formed = (isinstance(seg, dict) and isinstance(seg.get("file"), str) and isinstance(size, list)
                   and len(size) == 2 and all(type(v) is int for v in size))
    if not well_formed:
        return None, f"{EXPORT_FILE}'s segment record is malformed (needs file and frame_size [H, W]): {reexport}"
    if plain_file_name(seg["file"]) and not (bundle.root / seg["file"]).exists():
        return None, f"{bundle.root / seg['file']} is missing"
    path = check_bundle_file(bundle.root, seg["file"], seg.get("sha256"), "full-frame graph (segment)",
                             EXPORT_FILE)
    if [int(v) for v in seg["frame_size"]] != list(bundle.frame_size):
        return None, (f"segment.onnx takes {seg['frame_size'][0]}x{seg['frame_size'][1]} frames, the "
                      f"bundle checks {bundle.frame_size[0]}x{bundle.frame_size[1]}: re-export with --frame")
    return path, ""


def with_frame_graph(bundle: Bundle) -> tuple[Bundle, str]:
    """``bundle`` with model.frame_graph, taken from export.json's segment record when
    guard.json names none (bundles written before it did); and why there is none."""
    if bundle.frame_graph_path is not None:
        return bundle, ""
    path, why = segment_graph(bundle)
    if path is None:
        return bundle, why
    graph = {"file": path.name, "sha256": _export_record(bundle.root)["segment"]["sha256"]}
    return Bundle(root=bundle.root, doc=dict(bundle.doc, model=dict(bundle.model, frame_graph=graph))), ""


def parse_detectors(detectors) -> tuple:
    """None or "both" -> both detectors; "frame", "pairs" or a list of them -> those."""
    if detectors is None or detectors == "both":
        return DETECTORS
    chosen = (detectors,) if isinstance(detectors, str) else tuple(detectors)
    unknown = [d for d in chosen if d not in DETECTORS]
    if unknown or not chosen:
        raise UserError(f"detector {unknown[0] if unknown else ''!r} is not one of frame, pairs, both")
    return tuple(d for d in DETECTORS if d in chosen)


def detector_bundles(base: Bundle, detectors) -> tuple[dict, str]:
    """{detector: the bundle to time it with} and why the frame detector is not among them.

    The bundle's own detector keeps its settings (statistic, geometry, threshold); the other
    is an uncalibrated bundle on the same model with the same statistic (pairs: the paper's
    displacements scaled to the patch size). Both carry the full-frame graph when there is one.
    """
    base, why = with_frame_graph(base)
    out, skipped = {}, ""
    for d in parse_detectors(detectors):
        if d == "frame" and base.frame_graph_path is None:
            skipped = f"the frame detector needs the full-frame graph: {why}"
        elif d == base.method:
            out[d] = base
        else:
            geometry = {}
            if d == "pairs":
                low, high = scaled_bounds(base.patch_size)
                check_geometry(*base.frame_size, base.patch_size, low, high)
                geometry = {"b_low": low, "b_high": high}
            out[d] = uncalibrated_bundle(base.model, base.frame_size, k=base.k, root=base.root, method=d,
                                         statistic=base.statistic, min_pixels=base.min_pixels, **geometry)
    if not out:
        raise UserError(f"nothing to time: {skipped}")
    return out, skipped


def open_segmenter(bundle: Bundle, backend: str = "auto", threads: int | None = None, k: int | None = None,
                   precision: str | None = None, segment_engine=None) -> tuple[Runner | None, str]:
    """An active runner of the full-frame graph, or why there is none.

    The graph (the bundle's, or export.json's segment record: :func:`with_frame_graph`) is
    opened as Guard.load opens it: the same backend choice, threads and precision.
    ``segment_engine``: a TensorRT engine file of it to run instead (e.g. built by trtexec).
    """
    if segment_engine is not None:
        from .backends.tensorrt import TrtRunner

        exe = TrtRunner(segment_engine)
        return FunctionRunner(exe, provider="TensorRT", name="tensorrt", on_close=exe.close).activate(), ""
    bundle, why = with_frame_graph(bundle)
    if bundle.frame_graph_path is None:
        return None, why
    return open_runner(bundle, backend, threads=threads, pairs=k, precision=precision, graph="frame"), ""


def camera_frame(size) -> np.ndarray:
    """A BGR uint8 street frame of ``size`` (h, w): the shipped demo's clean frame, resized
    (a real scene, so the consistency step sees realistic class maps); noise without it."""
    import cv2

    h, w = size
    if not (16 <= h <= MAX_SIDE and 16 <= w <= MAX_SIDE):
        raise UserError(f"a camera frame of {h}x{w}: each side must lie in [16, {MAX_SIDE}]")
    image = cv2.imread(str(DEMO_FRAME), cv2.IMREAD_COLOR) if DEMO_FRAME.is_file() else None
    if image is None:
        return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
