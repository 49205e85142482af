"""guard.json's schema: the checks :func:`validate` runs on a parsed document (one line each).

guard.json (schema_version 1) has four sections; keys not listed here are allowed and
ignored (a newer writer may add some), listed keys are required unless marked optional::

    model       file, sha256, patch_size, num_classes (<= 256), class_names,
                input {name, dtype "uint8", layout "NHWC", channels "RGB"|"BGR"},
                normalization {where "in-graph", mean[3], std[3]},
                output {kind "labels"|"logits", name, dtype}
                (optional: format, opset, architecture, model_kwargs, source_checkpoint,
                input.shape, output.shape, normalization.scale/formula)
                = the ``model`` section that ``edge-guard export`` writes into export.json;
                frame_graph {file, sha256} (the full-frame graph: frames of the bundle's
                frame size in, labels out, same input/output names; required by the
                ``frame`` detector, optional for ``pairs``)
    detector    method "frame" | "pairs" ("spatial", the name before the frame detector,
                is read as "pairs"), patch_size (= model.patch_size), k,
                statistic "miou" | "agreement" | "miou-min" (optional, default "miou"),
                min_pixels (optional, default 0; used by "miou-min"),
                threshold in [0, 1] (adversarial when score < threshold),
                thresholds_by_k (optional; older bundles have none) {"K": threshold}: the
                thresholds calibrated together for several K (keys decimal K in
                1..MAX_PAIRS, values in [0, 1]; must hold k with the threshold above), from
                which a frame-rate budget picks K (edge_guard.budget),
                threshold_rule {rule "fpr"|"min-benign", benign_frames, quantiles {q: score},
                                target_fpr and achieved_fpr (required for "fpr")};
                pairs only: b_low, b_high, pairing "independent"
    frame       height, width: frames are resized to this before patching
    provenance  edge_guard_version, created (ISO 8601), model_sha256 (= model.sha256),
                evaluation (optional: the summary the threshold was checked against)
    alarm       (optional; older bundles have none) the calibrated sequential alarm:
                method "cusum", h > 0, reference (benign median score), scale > 0, drift >= 0,
                clip > 0, target_per_hour > 0, fps > 0, k (optional: the K it was calibrated
                at; a run at another K does not use it), calibration {benign_frames, clips,
                extrapolation, ...} (see edge_guard.alarms and edge_guard.calibration.alarm)
"""

from __future__ import annotations

import math
import numbers
from datetime import datetime
from pathlib import Path

from . import __version__
from .consistency import STATISTICS
from .errors import DataError, UserError
# Sanity bounds, so that a corrupt file is refused instead of allocating gigabytes (the
# reasons are in limits.py, shared with the CLI's options).
from .limits import MAX_CLASSES, MAX_PAIRS, MAX_SIDE  # noqa: F401 (MAX_PAIRS, MAX_SIDE: re-exported)
from .patches import check_geometry, check_patch_geometry

SCHEMA_VERSION = 1
METHODS = ("frame", "pairs")
#: Older names of a method, read as the method they now are.
METHOD_ALIASES = {"spatial": "pairs"}
PAIRINGS = ("independent",)
THRESHOLD_RULES = ("fpr", "min-benign")
ALARM_METHODS = ("cusum",)
OUTPUT_KINDS = ("labels", "logits")
LABEL_DTYPES = ("int32", "int64", "uint8", "int16", "uint16")
LOGIT_DTYPES = ("float32", "float16")


class BundleError(DataError):
    """A bundle folder or guard.json that the runtime cannot use (one line, what to do)."""


def method_of(detector: dict) -> str:
    """The detector's method under its current name ("spatial" -> "pairs")."""
    method = detector.get("method")
    return METHOD_ALIASES.get(method, method)


_MISSING = object()


def _where(path: str) -> str:
    return path or "guard.json"


def _get(section: dict, key: str, path: str, optional: bool = False):
    value = section.get(key, _MISSING)
    if value is _MISSING:
        if optional:
            return None
        raise BundleError(f"{_where(path)} lacks the key {key!r}")
    return value


def _dict(section: dict, key: str, path: str, optional: bool = False) -> dict | None:
    value = _get(section, key, path, optional)
    if value is None and optional:
        return None
    if not isinstance(value, dict):
        raise BundleError(f"{path + '.' if path else ''}{key} must be an object, got {_kind(value)}")
    return value


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), f"{type(value).__name__} {value!r}")


def _int(section: dict, key: str, path: str, minimum: int | None = None,
         maximum: int | None = None) -> int:
    value = _get(section, key, path)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise BundleError(f"{path}.{key} must be an integer, got {_kind(value)}")
    if minimum is not None and value < minimum:
        raise BundleError(f"{path}.{key} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise BundleError(f"{path}.{key} must be <= {maximum}, got {value}")
    return int(value)


def _finite(value) -> bool:
    """A real number (not a bool) that is finite; an int too large for a float is not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _number(section: dict, key: str, path: str, lo: float | None = None, hi: float | None = None,
            optional: bool = False) -> float | None:
    value = _get(section, key, path, optional)
    if value is None and optional:
        return None
    if not _finite(value):
        raise BundleError(f"{path}.{key} must be a finite number, got {_kind(value)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise BundleError(f"{path}.{key} must lie in [{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def _str(section: dict, key: str, path: str, choices=None) -> str:
    value = _get(section, key, path)
    if not isinstance(value, str) or not value:
        raise BundleError(f"{path}.{key} must be a non-empty string, got {_kind(value)}")
    if choices is not None and value not in choices:
        raise BundleError(f"{path}.{key} is {value!r}; this runtime knows {', '.join(map(repr, choices))}")
    return value


def _triple(section: dict, key: str, path: str, positive: bool = False) -> list:
    value = _get(section, key, path)
    ok = isinstance(value, list) and len(value) == 3 and all(_finite(v) for v in value)
    if not ok or (positive and min(value) <= 0):
        what = "3 positive numbers" if positive else "3 numbers"
        raise BundleError(f"{path}.{key} must be a list of {what}, got {value!r}")
    return list(value)


def plain_file_name(name) -> bool:
    """Whether ``name`` names a file directly inside a folder: no separator, not "." or "..",
    not absolute, no NUL (on any operating system the bundle is copied to)."""
    return (isinstance(name, str) and bool(name) and name not in (".", "..")
            and not any(c in name for c in "/\\\0") and not Path(name).is_absolute()
            and Path(name).name == name and ":" not in name[1:2])


def _check_file(section: dict, p: str) -> None:
    file = _str(section, "file", p)
    if not plain_file_name(file):
        raise BundleError(f"{p}.file must be a file name inside the bundle, got {file!r}")
    sha = _str(section, "sha256", p)
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise BundleError(f"{p}.sha256 must be 64 lowercase hex digits, got {sha!r}")


def _check_model(model: dict) -> None:
    p = "model"
    _check_file(model, p)
    if "frame_graph" in model:  # optional, but an object when given (null is not "none")
        graph = _dict(model, "frame_graph", p)
        _check_file(graph, "model.frame_graph")
        if graph["file"] == model["file"]:
            raise BundleError("model.frame_graph names the patch graph's file: the full-frame graph "
                              "is its own file (re-export the bundle)")
    _int(model, "patch_size", p, minimum=1, maximum=MAX_SIDE)
    classes = _int(model, "num_classes", p, minimum=1, maximum=MAX_CLASSES)
    names = _get(model, "class_names", p)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BundleError(f"model.class_names must be a list of strings, got {_kind(names)}")
    if len(names) != classes:
        raise BundleError(f"model.class_names has {len(names)} names for num_classes={classes}")
    inp = _dict(model, "input", p)
    _str(inp, "name", "model.input")
    _str(inp, "dtype", "model.input", choices=("uint8",))
    _str(inp, "layout", "model.input", choices=("NHWC",))
    _str(inp, "channels", "model.input", choices=("RGB", "BGR"))
    norm = _dict(model, "normalization", p)
    if _get(norm, "where", "model.normalization") != "in-graph":
        raise BundleError("model.normalization.where must be 'in-graph': this runtime feeds uint8 "
                          "patches and the graph normalises them (re-export the model)")
    _triple(norm, "mean", "model.normalization")
    _triple(norm, "std", "model.normalization", positive=True)
    out = _dict(model, "output", p)
    _str(out, "name", "model.output")
    kind = _str(out, "kind", "model.output", choices=OUTPUT_KINDS)
    _str(out, "dtype", "model.output", choices=LABEL_DTYPES if kind == "labels" else LOGIT_DTYPES)


def check_model_section(model: dict) -> None:
    """BundleError unless ``model`` is a valid guard.json/export.json model section."""
    if not isinstance(model, dict):
        raise BundleError(f"the model section must be an object, got {_kind(model)}")
    _check_model(model)


def _check_detector(det: dict, model: dict) -> None:
    p = "detector"
    patch = model["patch_size"]
    _str(det, "method", p, choices=METHODS + tuple(METHOD_ALIASES))
    method = method_of(det)
    size = _int(det, "patch_size", p, minimum=1, maximum=MAX_SIDE)
    if size != patch:
        raise BundleError(f"detector.patch_size={size} differs from model.patch_size={patch}: "
                          f"the graph takes {patch}x{patch} patches; recalibrate the bundle")
    if method == "pairs":
        low = _int(det, "b_low", p, minimum=0)
        high = _int(det, "b_high", p, minimum=1)
        if high <= low or high > size:
            raise BundleError(f"detector needs b_low < b_high <= patch_size, got b_low={low}, "
                              f"b_high={high}, patch_size={size}")
        _str(det, "pairing", p, choices=PAIRINGS)
    elif model.get("frame_graph") is None:
        raise BundleError("the frame detector compares patches with the whole frame's labels, but "
                          "model.frame_graph (the full-frame graph) is missing: recalibrate the bundle")
    _int(det, "k", p, minimum=1, maximum=MAX_PAIRS)
    if "statistic" in det:
        _str(det, "statistic", p, choices=STATISTICS)
    if "min_pixels" in det:
        _int(det, "min_pixels", p, minimum=0)
    _number(det, "threshold", p, 0.0, 1.0)
    if "thresholds_by_k" in det:
        _check_thresholds_by_k(det)
    rule = _dict(det, "threshold_rule", p)
    rp = "detector.threshold_rule"
    kind = _str(rule, "rule", rp, choices=THRESHOLD_RULES)
    _int(rule, "benign_frames", rp, minimum=1)
    fpr = kind == "fpr"
    _number(rule, "target_fpr", rp, 0.0, 1.0, optional=not fpr)
    _number(rule, "achieved_fpr", rp, 0.0, 1.0, optional=not fpr)
    quantiles = _dict(rule, "quantiles", rp)
    for q, v in quantiles.items():
        _number(quantiles, q, f"{rp}.quantiles", 0.0, 1.0)


def _check_thresholds_by_k(det: dict) -> None:
    """detector.thresholds_by_k: {"K": threshold}, holding the bundle's own K unchanged (a
    table that disagrees with detector.threshold would run two thresholds for one K)."""
    p = "detector.thresholds_by_k"
    table = _dict(det, "thresholds_by_k", "detector")
    for key in table:
        if not (isinstance(key, str) and key.isascii() and key.isdigit() and key == str(int(key))
                and 1 <= int(key) <= MAX_PAIRS):
            raise BundleError(f"{p} has the key {key!r}: keys are K as decimal integers in 1..{MAX_PAIRS}; "
                              "recalibrate the bundle")
        _number(table, key, p, 0.0, 1.0)
    k = str(det["k"])
    if k not in table or table[k] != det["threshold"]:
        raise BundleError(f"{p} must hold the bundle's own K={k} with detector.threshold "
                          f"({det['threshold']!r}), got {table.get(k, 'nothing')!r}: recalibrate the bundle")


def _check_frame(frame: dict, det: dict) -> None:
    height = _int(frame, "height", "frame", minimum=1, maximum=MAX_SIDE)
    width = _int(frame, "width", "frame", minimum=1, maximum=MAX_SIDE)
    try:
        if method_of(det) == "pairs":
            check_geometry(height, width, det["patch_size"], det["b_low"], det["b_high"])
        else:
            check_patch_geometry(height, width, det["patch_size"])
    except UserError as exc:
        raise BundleError(f"frame and detector disagree: {exc}") from None


def _check_provenance(prov: dict, model: dict) -> None:
    p = "provenance"
    _str(prov, "edge_guard_version", p)
    created = _str(prov, "created", p)
    try:
        datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        raise BundleError(f"provenance.created must be an ISO 8601 time, got {created!r}") from None
    if _str(prov, "model_sha256", p) != model["sha256"]:
        raise BundleError("provenance.model_sha256 differs from model.sha256: guard.json was "
                          "edited inconsistently; recalibrate the bundle")
    _dict(prov, "evaluation", p, optional=True)


def _check_alarm(alarm: dict) -> None:
    p = "alarm"
    _str(alarm, "method", p, choices=ALARM_METHODS)
    inf = math.inf
    for key, lo in (("h", 0.0), ("scale", 0.0), ("clip", 0.0), ("target_per_hour", 0.0), ("fps", 0.0)):
        if _number(alarm, key, p, lo, inf) <= 0:
            raise BundleError(f"alarm.{key} must be > 0, got {alarm[key]!r}")
    _number(alarm, "reference", p, 0.0, 1.0)
    _number(alarm, "drift", p, 0.0, inf)
    if "k" in alarm:
        _int(alarm, "k", p, minimum=1, maximum=MAX_PAIRS)
    cal = _dict(alarm, "calibration", p)
    _int(cal, "benign_frames", "alarm.calibration", minimum=1)
    _int(cal, "clips", "alarm.calibration", minimum=1)
    _str(cal, "extrapolation", "alarm.calibration")


def validate(doc) -> dict:
    """Check a guard.json document (already parsed); return it, or raise BundleError (one line).

    Checks structure, types and ranges only; :func:`load_bundle` also checks the model file.
    """
    if not isinstance(doc, dict):
        raise BundleError(f"guard.json must hold a JSON object, got {_kind(doc)}")
    version = _get(doc, "schema_version", "")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise BundleError(f"guard.json has schema_version {version!r}; this edge-guard "
                          f"({__version__}) reads version {SCHEMA_VERSION}: use a matching "
                          "edge-guard or recalibrate the bundle")
    model = _dict(doc, "model", "")
    det = _dict(doc, "detector", "")
    frame = _dict(doc, "frame", "")
    prov = _dict(doc, "provenance", "")
    _check_model(model)
    _check_detector(det, model)
    _check_frame(frame, det)
    _check_provenance(prov, model)
    if "alarm" in doc:  # optional, but an object when given
        _check_alarm(_dict(doc, "alarm", ""))
    return doc
