"""The bundle: ``model.onnx`` (+ the full-frame graph) + ``guard.json``, the one contract
between calibration and the vehicle. guard.json's schema and its checks: :mod:`.bundle_schema`.

:func:`load_bundle` refuses, with one line each (:class:`BundleError`): a missing folder or
guard.json, bad JSON, an unknown schema_version, missing keys, wrong types or values, a patch
that does not fit the frame, a missing model file or full-frame graph, and a graph whose
sha256 differs from guard.json (a swapped model). The graphs' input/output shapes are checked
against guard.json when a backend opens them (:func:`check_graph`, :func:`check_frame_graph`),
which needs the inference library.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from . import __version__
from .bundle_schema import (LABEL_DTYPES, LOGIT_DTYPES, MAX_PAIRS, MAX_SIDE, METHODS, SCHEMA_VERSION,  # noqa: F401
                            BundleError, check_model_section, method_of, plain_file_name, validate)
from .engine_cache import sha256_file
from .limits import MAX_JSON_BYTES

GUARD_FILE = "guard.json"
#: What `edge-guard export` writes beside the model: its model section, checks, segment.onnx.
EXPORT_FILE = "export.json"


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
    def frame_graph_path(self) -> Path | None:
        """The full-frame graph (frames of ``frame_size`` in, labels out), or None."""
        graph = self.model.get("frame_graph")
        return None if graph is None else self.root / graph["file"]

    @property
    def method(self) -> str:
        """The detector: "frame" (patch vs the frame's labels) or "pairs" (the paper's)."""
        return method_of(self.detector)

    @property
    def statistic(self) -> str:
        """What a comparison scores: "miou" (the paper's), "agreement" or "miou-min"."""
        return str(self.detector.get("statistic", "miou"))

    @property
    def min_pixels(self) -> int:
        """For "miou-min": classes below this many pixels in both regions are left out."""
        return int(self.detector.get("min_pixels", 0))

    @property
    def patch_size(self) -> int:
        return int(self.model["patch_size"])

    def patch_batch(self, k: int | None = None) -> int:
        """Patches one check feeds the patch graph: K (frame detector) or 2K (pairs)."""
        k = self.k if k is None else int(k)
        return k if self.method == "frame" else 2 * k

    @property
    def b_low(self) -> int:
        """Pairs only: the smallest displacement of a pair's second patch (pixels)."""
        return int(self.detector["b_low"])

    @property
    def b_high(self) -> int:
        """Pairs only: the displacement's exclusive upper bound (pixels)."""
        return int(self.detector["b_high"])

    @property
    def alarm(self) -> dict | None:
        """guard.json's calibrated sequential alarm section, None in bundles without one."""
        return self.doc.get("alarm")

    @property
    def k(self) -> int:
        return int(self.detector["k"])

    @property
    def threshold(self) -> float:
        return float(self.detector["threshold"])

    @property
    def thresholds_by_k(self) -> dict[int, float]:
        """{K: threshold} calibrated together, smallest K first (guard.json's
        detector.thresholds_by_k); bundles without one hold only their own K."""
        table = self.detector.get("thresholds_by_k") or {str(self.k): self.threshold}
        return {int(k): float(table[k]) for k in sorted(table, key=int)}

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
        geometry = f"b=[{self.b_low},{self.b_high}), " if self.method == "pairs" else ""
        stat = self.statistic + (f">={self.min_pixels}px" if self.statistic == "miou-min" else "")
        return (f"{self.root}: {self.model['file']} ({self.num_classes} classes, "
                f"{self.output_kind}), frame {h}x{w}, {self.method} detector, s={self.patch_size}, "
                f"{geometry}K={self.k}, {stat}, threshold={self.threshold:.4f}")


def read_json(path: Path):
    """A bundle's JSON document (guard.json, export.json), parsed; BundleError (one line) for
    an unreadable, oversized, non-UTF-8 or invalid file."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_JSON_BYTES + 1)
        if len(data) > MAX_JSON_BYTES:
            raise BundleError(f"{path} is larger than {MAX_JSON_BYTES // 2**20} MiB: not a bundle's "
                              "JSON file; re-export or recalibrate the bundle")
        text = data.decode("utf-8")
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise BundleError(f"{path} is not UTF-8 text: recalibrate the bundle") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BundleError(f"{path} is not valid JSON (line {getattr(exc, 'lineno', '?')}: "
                          f"{getattr(exc, 'msg', exc)}): recalibrate the bundle") from None


def check_bundle_file(root: Path, name, sha256: str, what: str, named_in: str = GUARD_FILE) -> Path:
    """The path of the file ``name`` in the bundle ``root``, after checking that ``name`` is a
    plain file name, that the file is there (a regular file) and that its sha256 is the one
    ``named_in`` records; BundleError (one line) otherwise."""
    if not plain_file_name(name):
        raise BundleError(f"{root / named_in} names the {what} {name!r}: only a file name inside the "
                          "bundle is allowed (no folder, no ..)")
    path = root / name
    if not path.is_file():
        raise BundleError(f"{root / named_in} names the {what} {name}, which is missing from {root}")
    if not isinstance(sha256, str) or len(sha256) != 64:
        raise BundleError(f"{root / named_in} gives no sha256 for the {what} {name}: re-export the model")
    sha = sha256_file(path)
    if sha != sha256:
        made, redo = ("calibrated", "recalibrate") if named_in == GUARD_FILE else ("exported", "re-export")
        raise BundleError(f"{path} is not the {what} {named_in} was {made} for (sha256 {sha[:12]}... "
                          f"instead of {sha256[:12]}...): restore it or {redo} the bundle")
    return path


def load_bundle(root) -> Bundle:
    """Read and validate ``root/guard.json`` and the model file it names (hashed every time)."""
    if isinstance(root, str) and not root.strip():
        raise BundleError("an empty bundle path: give a bundle folder (it would mean the current folder)")
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
        doc = validate(read_json(path))
    except BundleError as exc:
        raise BundleError(f"{path}: {exc}") from None
    bundle = Bundle(root=root, doc=doc)
    check_bundle_file(root, bundle.model["file"], bundle.model_sha256, "model")
    graph = bundle.model.get("frame_graph")
    if graph is not None:
        check_bundle_file(root, graph["file"], graph["sha256"], "full-frame graph")
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


def detector_section(method: str, patch: int, k: int, statistic: str = "miou", min_pixels: int = 0,
                     b_low: int | None = None, b_high: int | None = None, threshold: float = 0.0) -> dict:
    """guard.json's detector section without its threshold rule (``calibrate`` adds it)."""
    detector = {"method": method, "patch_size": int(patch), "k": int(k), "statistic": statistic,
                "threshold": float(threshold)}
    if statistic == "miou-min":
        detector["min_pixels"] = int(min_pixels)
    if method == "pairs":
        detector.update(b_low=int(b_low), b_high=int(b_high), pairing="independent")
    return detector


def uncalibrated_bundle(model: dict, frame_size, b_low: int | None = None, b_high: int | None = None,
                        k: int = 5, root=".", method: str = "pairs", statistic: str = "miou",
                        min_pixels: int = 0) -> Bundle:
    """An in-memory bundle with a detector but no threshold yet (calibration scores frames
    with it; ``edge-guard bench`` times an exported model with it).

    ``model``: the guard.json model section written by the exporter (with its frame_graph
    for the frame detector). Its threshold is 0 (no score is below it, so nothing is
    flagged) and it is never written to disk.
    """
    detector = detector_section(method, model["patch_size"], k, statistic, min_pixels, b_low, b_high)
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
    graph = doc["model"].get("frame_graph")
    if graph is not None and (not (root / graph["file"]).is_file()
                              or sha256_file(root / graph["file"]) != graph["sha256"]):
        raise BundleError(f"{root / graph['file']} is missing or does not match model.frame_graph.sha256: "
                          "refusing to write a guard.json for another full-frame graph")
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


GRAPHS = ("patch", "frame")


def check_graph(bundle: Bundle, inputs, outputs, batch: int | None = None, graph: str = "patch") -> None:
    """Raise BundleError unless a graph's I/O (lists of TensorSpec) fit guard.json.

    ``graph``: "patch" (model.onnx: s x s patches) or "frame" (the full-frame graph: frames of
    the bundle's frame size); ``batch``: the batch the runtime will feed (K or 2K patches, 1
    frame); a graph with a fixed batch must equal it.
    """
    if graph not in GRAPHS:
        raise ValueError(f"graph must be one of {GRAPHS}, got {graph!r}")
    if graph == "patch":
        (h, w), model = (bundle.patch_size, bundle.patch_size), bundle.model_path.name
    else:
        if bundle.frame_graph_path is None:
            raise BundleError(f"{bundle.root} has no full-frame graph (model.frame_graph): recalibrate the bundle")
        (h, w), model = bundle.frame_size, bundle.frame_graph_path.name
    ins = {t.name: t for t in inputs}
    outs = {t.name: t for t in outputs}
    if bundle.input_name not in ins or len(ins) != 1:
        raise BundleError(f"{model} takes inputs {sorted(ins)}; guard.json expects one input "
                          f"{bundle.input_name!r}: re-export the model")
    inp = ins[bundle.input_name]
    if inp.dtype != "uint8" or not _dims_match(inp.shape, (None, h, w, 3)):
        raise BundleError(f"{model} input {inp.name!r} is {inp.dtype} {_fmt(inp.shape)}; guard.json "
                          f"expects uint8 [batch, {h}, {w}, 3]: re-export or recalibrate")
    if batch is not None and isinstance(inp.shape[0], int) and inp.shape[0] != batch:
        raise BundleError(f"{model} has a fixed batch of {inp.shape[0]} but the detector feeds it "
                          f"{batch}: re-export with a dynamic batch")
    if bundle.output_name not in outs:
        raise BundleError(f"{model} has no output {bundle.output_name!r} (it has {sorted(outs)}): "
                          "re-export or recalibrate")
    out = outs[bundle.output_name]
    if bundle.output_kind == "labels":
        ok = out.dtype in LABEL_DTYPES and _dims_match(out.shape, (None, h, w))
        want = f"integer labels [batch, {h}, {w}]"
    else:
        ok = out.dtype in LOGIT_DTYPES and _dims_match(out.shape, (None, bundle.num_classes, h, w))
        want = f"float logits [batch, {bundle.num_classes}, {h}, {w}]"
    if not ok:
        raise BundleError(f"{model} output {out.name!r} is {out.dtype} {_fmt(out.shape)}; "
                          f"guard.json expects {want}: re-export or recalibrate")
