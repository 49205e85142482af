"""The bundle: ``model.onnx`` + ``guard.json``, the one contract between calibration and the vehicle.

``guard.json`` (schema_version 1) has four sections; keys not listed here are allowed and
ignored (a newer writer may add some), listed keys are required unless marked optional::

    model       file, sha256, patch_size, num_classes, class_names,
                input {name, dtype "uint8", layout "NHWC", channels "RGB"|"BGR"},
                normalization {where "in-graph", mean[3], std[3]},
                output {kind "labels"|"logits", name, dtype}
                (optional: format, opset, architecture, model_kwargs, source_checkpoint,
                input.shape, output.shape, normalization.scale/formula)
                = the ``model`` section that ``edge-guard export`` writes into export.json
    detector    method "spatial", patch_size (= model.patch_size), b_low, b_high, k,
                pairing "independent", threshold in [0, 1] (adversarial when score < threshold),
                threshold_rule {rule "fpr"|"min-benign", benign_frames, quantiles {q: score},
                                target_fpr and achieved_fpr (required for "fpr")}
    frame       height, width: frames are resized to this before patching
    provenance  edge_guard_version, created (ISO 8601), model_sha256 (= model.sha256),
                evaluation (optional: the summary the threshold was checked against)

:func:`load_bundle` refuses, with one line each (:class:`BundleError`): a missing folder or
guard.json, bad JSON, an unknown schema_version, missing keys, wrong types or values, a patch
that does not fit the frame, a missing model file, and a model file whose sha256 differs from
guard.json (a swapped model). The graph's input/output shapes are checked against guard.json
when a backend opens it (:func:`check_graph`), which needs the inference library.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from . import __version__
from .engine_cache import sha256_file
from .errors import DataError, UserError
from .patches import check_geometry

SCHEMA_VERSION = 1
GUARD_FILE = "guard.json"
#: What `edge-guard export` writes beside the model: its model section, checks, segment.onnx.
EXPORT_FILE = "export.json"
METHODS = ("spatial",)
PAIRINGS = ("independent",)
THRESHOLD_RULES = ("fpr", "min-benign")
OUTPUT_KINDS = ("labels", "logits")
LABEL_DTYPES = ("int32", "int64", "uint8", "int16", "uint16")
LOGIT_DTYPES = ("float32", "float16")
# Sanity bounds, so that a corrupt file is refused instead of allocating gigabytes: the paper
# uses K <= 50, and 16384 pixels is twice an 8K frame's width.
MAX_PAIRS = 1024
MAX_SIDE = 16384


class BundleError(DataError):
    """A bundle folder or guard.json that the runtime cannot use (one line, what to do)."""


# ---------------------------------------------------------------- schema validation

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


def _check_model(model: dict) -> None:
    p = "model"
    file = _str(model, "file", p)
    if Path(file).is_absolute() or Path(file).name != file:
        raise BundleError(f"model.file must be a file name inside the bundle, got {file!r}")
    sha = _str(model, "sha256", p)
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise BundleError(f"model.sha256 must be 64 lowercase hex digits, got {sha!r}")
    _int(model, "patch_size", p, minimum=1, maximum=MAX_SIDE)
    classes = _int(model, "num_classes", p, minimum=1)
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


def _check_detector(det: dict, patch: int) -> None:
    p = "detector"
    _str(det, "method", p, choices=METHODS)
    size = _int(det, "patch_size", p, minimum=1, maximum=MAX_SIDE)
    if size != patch:
        raise BundleError(f"detector.patch_size={size} differs from model.patch_size={patch}: "
                          f"the graph takes {patch}x{patch} patches; recalibrate the bundle")
    low = _int(det, "b_low", p, minimum=0)
    high = _int(det, "b_high", p, minimum=1)
    if high <= low or high > size:
        raise BundleError(f"detector needs b_low < b_high <= patch_size, got b_low={low}, "
                          f"b_high={high}, patch_size={size}")
    _int(det, "k", p, minimum=1, maximum=MAX_PAIRS)
    _str(det, "pairing", p, choices=PAIRINGS)
    _number(det, "threshold", p, 0.0, 1.0)
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


def _check_frame(frame: dict, det: dict) -> None:
    height = _int(frame, "height", "frame", minimum=1, maximum=MAX_SIDE)
    width = _int(frame, "width", "frame", minimum=1, maximum=MAX_SIDE)
    try:
        check_geometry(height, width, det["patch_size"], det["b_low"], det["b_high"])
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
    _check_detector(det, model["patch_size"])
    _check_frame(frame, det)
    _check_provenance(prov, model)
    return doc


# ---------------------------------------------------------------- the loaded bundle

class TensorSpec(NamedTuple):
    """A graph input or output as a backend reports it; a dim is an int or None/str when dynamic."""

    name: str
    dtype: str          # NumPy name: "uint8", "int32", "float32", ...
    shape: tuple


@dataclass(frozen=True)
class Bundle:
    """A validated bundle. ``doc`` is guard.json as read; the properties are its typed fields."""

    root: Path
    doc: dict = field(repr=False)

    @property
    def model(self) -> dict:
        return self.doc["model"]

    @property
    def detector(self) -> dict:
        return self.doc["detector"]

    @property
    def model_path(self) -> Path:
        return self.root / self.model["file"]

    @property
    def patch_size(self) -> int:
        return int(self.model["patch_size"])

    @property
    def b_low(self) -> int:
        return int(self.detector["b_low"])

    @property
    def b_high(self) -> int:
        return int(self.detector["b_high"])

    @property
    def k(self) -> int:
        return int(self.detector["k"])

    @property
    def threshold(self) -> float:
        return float(self.detector["threshold"])

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width) frames are resized to."""
        return int(self.doc["frame"]["height"]), int(self.doc["frame"]["width"])

    @property
    def num_classes(self) -> int:
        return int(self.model["num_classes"])

    @property
    def class_names(self) -> list[str]:
        return list(self.model["class_names"])

    @property
    def input_name(self) -> str:
        return self.model["input"]["name"]

    @property
    def channels(self) -> str:
        """Channel order the graph expects: "RGB" or "BGR"."""
        return self.model["input"]["channels"]

    @property
    def output_name(self) -> str:
        return self.model["output"]["name"]

    @property
    def output_kind(self) -> str:
        return self.model["output"]["kind"]

    @property
    def model_sha256(self) -> str:
        return self.model["sha256"]

    def describe(self) -> str:
        h, w = self.frame_size
        return (f"{self.root}: {self.model['file']} ({self.num_classes} classes, "
                f"{self.output_kind}), frame {h}x{w}, s={self.patch_size}, "
                f"b=[{self.b_low},{self.b_high}), K={self.k}, threshold={self.threshold:.4f}")


def _read(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise BundleError(f"{path} is not UTF-8 text: recalibrate the bundle") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BundleError(f"{path} is not valid JSON (line {getattr(exc, 'lineno', '?')}: "
                          f"{getattr(exc, 'msg', exc)}): recalibrate the bundle") from None


def load_bundle(root) -> Bundle:
    """Read and validate ``root/guard.json`` and the model file it names (hashed every time)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise BundleError(f"{root} is not a bundle folder (it needs {GUARD_FILE} and the model "
                          "written by `edge-guard export` and `edge-guard calibrate`)")
    path = root / GUARD_FILE
    if not path.is_file():
        hint = (" (it has export.json: run `edge-guard calibrate` to choose the threshold)"
                if (root / EXPORT_FILE).is_file() else "")
        raise BundleError(f"{root} has no {GUARD_FILE}{hint}")
    try:
        doc = validate(_read(path))
    except BundleError as exc:
        raise BundleError(f"{path}: {exc}") from None
    bundle = Bundle(root=root, doc=doc)
    model = bundle.model_path
    if not model.is_file():
        raise BundleError(f"{path} names the model {model.name}, which is missing from {root}")
    sha = sha256_file(model)
    if sha != bundle.model_sha256:
        raise BundleError(f"{model} is not the model {GUARD_FILE} was calibrated for (sha256 "
                          f"{sha[:12]}... instead of {bundle.model_sha256[:12]}...): restore it "
                          "or recalibrate the bundle")
    return bundle


def new_guard_doc(model: dict, detector: dict, frame_size, evaluation: dict | None = None) -> dict:
    """A guard.json document for a ``model`` section (from export.json) and a calibrated detector.

    Fills ``schema_version`` and ``provenance`` (this edge-guard version, the current UTC time,
    the model's sha256). ``frame_size`` is (height, width).
    """
    height, width = (int(v) for v in frame_size)
    prov = {"edge_guard_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model_sha256": model.get("sha256")}
    if evaluation is not None:
        prov["evaluation"] = evaluation
    return {"schema_version": SCHEMA_VERSION, "model": model, "detector": detector,
            "frame": {"height": height, "width": width}, "provenance": prov}


def uncalibrated_bundle(model: dict, frame_size, b_low: int, b_high: int, k: int, root=".") -> Bundle:
    """An in-memory bundle with a detector geometry but no threshold yet (calibration scores
    frames with it; ``edge-guard bench`` times an exported model with it).

    ``model``: the guard.json model section written by the exporter. Its threshold is 0 (no
    score is below it, so nothing is flagged) and it is never written to disk.
    """
    detector = {"method": "spatial", "patch_size": int(model["patch_size"]), "b_low": int(b_low),
                "b_high": int(b_high), "k": int(k), "pairing": "independent", "threshold": 0.0}
    return Bundle(root=Path(root), doc=new_guard_doc(model, detector, frame_size))


def write_guard_json(root, doc: dict) -> Path:
    """Validate ``doc`` and write it to ``root/guard.json`` atomically; the model file must match."""
    root = Path(root)
    validate(doc)
    model = root / doc["model"]["file"]
    if not model.is_file():
        raise BundleError(f"{model} is missing: write the model into the bundle before guard.json")
    if sha256_file(model) != doc["model"]["sha256"]:
        raise BundleError(f"{model} does not match model.sha256 in the document: refusing to "
                          "write a guard.json for another model")
    path = root / GUARD_FILE
    partial = root / f".{GUARD_FILE}.partial"
    partial.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path


# ---------------------------------------------------------------- the graph against guard.json

def _dims_match(shape, expected) -> bool:
    """True when every fixed dim equals the expected one (None in ``expected`` = any)."""
    if len(shape) != len(expected):
        return False
    return all(e is None or not isinstance(d, int) or d == e for d, e in zip(shape, expected))


def _fmt(shape) -> str:
    return "[" + ", ".join(str(d) if isinstance(d, int) else "?" for d in shape) + "]"


def check_graph(bundle: Bundle, inputs, outputs, batch: int | None = None) -> None:
    """Raise BundleError unless the graph's I/O (lists of TensorSpec) fit guard.json.

    ``batch``: the batch the runtime will feed (2K); a graph with a fixed batch must equal it.
    """
    s, model = bundle.patch_size, bundle.model_path.name
    ins = {t.name: t for t in inputs}
    outs = {t.name: t for t in outputs}
    if bundle.input_name not in ins or len(ins) != 1:
        raise BundleError(f"{model} takes inputs {sorted(ins)}; guard.json expects one input "
                          f"{bundle.input_name!r}: re-export the model")
    inp = ins[bundle.input_name]
    if inp.dtype != "uint8" or not _dims_match(inp.shape, (None, s, s, 3)):
        raise BundleError(f"{model} input {inp.name!r} is {inp.dtype} {_fmt(inp.shape)}; guard.json "
                          f"expects uint8 [batch, {s}, {s}, 3]: re-export or recalibrate")
    if batch is not None and isinstance(inp.shape[0], int) and inp.shape[0] != batch:
        raise BundleError(f"{model} has a fixed batch of {inp.shape[0]} but {batch // 2} pairs need "
                          f"{batch}: re-export with a dynamic batch")
    if bundle.output_name not in outs:
        raise BundleError(f"{model} has no output {bundle.output_name!r} (it has {sorted(outs)}): "
                          "re-export or recalibrate")
    out = outs[bundle.output_name]
    if bundle.output_kind == "labels":
        ok = out.dtype in LABEL_DTYPES and _dims_match(out.shape, (None, s, s))
        want = f"integer labels [batch, {s}, {s}]"
    else:
        ok = out.dtype in LOGIT_DTYPES and _dims_match(out.shape, (None, bundle.num_classes, s, s))
        want = f"float logits [batch, {bundle.num_classes}, {s}, {s}]"
    if not ok:
        raise BundleError(f"{model} output {out.name!r} is {out.dtype} {_fmt(out.shape)}; "
                          f"guard.json expects {want}: re-export or recalibrate")
