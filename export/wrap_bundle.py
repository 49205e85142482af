"""A user's segmentation ONNX -> the bundle's verified ``model.onnx`` and ``segment.onnx``.

The ONNX counterpart of :func:`edge_guard.export.exporter.export_bundle`, without PyTorch:

1. (:func:`plan_wrap`, before any frame is read) read the graph and its conventions
   (:mod:`.onnx_graph`), refusing what cannot work;
2. run it at the patch size and at the frame size (:func:`.onnx_wrap.probe`): both must give
   per-pixel outputs at the same stride;
3. (:func:`wrap_bundle`) wrap it for s x s patches and for H x W frames (:func:`.onnx_wrap.wrap`);
4. check each wrapped graph against the user's graph run as given, on the calibration
   frames and random patches of them: at least ``MIN_AGREEMENT`` of the labels equal
   (:mod:`.wrap_verify`); onnx.checker; the TensorRT-compatibility check;
5. write both files and ``export.json`` (what was wrapped, how, and the figures).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from edge_guard import __version__
from edge_guard.bundle import EXPORT_FILE
from edge_guard.engine_cache import sha256_file
from edge_guard.errors import UserError

from .onnx_conventions import from_metadata
from .onnx_graph import class_names, opset_of, read_graph
from .onnx_wrap import BATCH_DIM, INPUT_NAME, OUTPUT_NAME, probe, upgraded, wrap
from .wrap_verify import Reference, compare, crops

MODEL_FILE = "model.onnx"
SEGMENT_FILE = "segment.onnx"
MIN_AGREEMENT = 0.999
ONE_CLASS_SHARE = 0.98  # of the calibration frames' pixels in one class: warn
PATCHES_PER_FRAME = 4


class WrapCheckError(UserError):
    """A wrapped graph failed its own check (the message carries the figures)."""


def _stride(size, out) -> float:
    return size[0] / out[0]


def _sections(onnx_path: Path, info, names: list, patch: int, frame: tuple, files: dict, opset: int) -> dict:
    c = info.conventions
    s, (h, w) = int(patch), frame
    model = {
        "file": MODEL_FILE, "sha256": sha256_file(files[MODEL_FILE]), "format": "onnx", "opset": int(opset),
        "architecture": f"onnx:{onnx_path.name}", "model_kwargs": {}, "patch_size": s,
        "input": {"name": INPUT_NAME, "dtype": "uint8", "layout": "NHWC", "channels": "RGB",
                  "shape": [BATCH_DIM, s, s, 3]},
        "normalization": {"where": "in-graph", "scale": c.scale, "mean": list(c.mean), "std": list(c.std),
                          "formula": c.formula()},
        "logit_bias": None, "num_classes": len(names), "class_names": list(names),
        "output": {"kind": "labels", "name": OUTPUT_NAME, "dtype": "int32", "shape": [BATCH_DIM, s, s]},
        "source_checkpoint": None,
        "source_onnx": {"file": onnx_path.name, "sha256": sha256_file(onnx_path), "graph": info.describe(),
                        "conventions": c.as_dict()},
    }
    segment = {"file": SEGMENT_FILE, "sha256": sha256_file(files[SEGMENT_FILE]), "frame_size": [h, w],
               "input": {"name": INPUT_NAME, "dtype": "uint8", "layout": "NHWC", "channels": "RGB",
                         "shape": [BATCH_DIM, h, w, 3]},
               "output": {"name": OUTPUT_NAME, "dtype": "int32", "shape": [BATCH_DIM, h, w]}}
    return {"model": model, "segment": segment}


def _check(proto, what: str, require_trt: bool, log) -> dict:
    import onnx

    from edge_guard.engines.trt_compat import check_trt_compat

    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise WrapCheckError(f"onnx.checker rejects the wrapped {what} graph: {str(exc).splitlines()[0]}") from None
    compat = check_trt_compat(proto, inner_dims=False)
    log(f"{what}: {compat.verdict()}")
    if not compat.ok and require_trt:
        raise WrapCheckError(f"the wrapped {what} graph: {compat.verdict()}; nothing was written "
                             "(--allow-non-trt writes it anyway, for ONNX Runtime only)")
    return compat.as_dict()


@dataclass
class WrapPlan:
    """A user's graph read, run at the patch and frame sizes and found usable: what
    :func:`wrap_bundle` writes from. ``*_out``: the output's (rank, (h, w)) at each size."""

    path: Path
    model: object
    info: object
    patch: int
    frame: tuple
    patch_out: tuple
    frame_out: tuple
    names: list

    def output(self) -> str:
        """How the output is read, in words (the log and export.json)."""
        kind, c, out = self.info.output_kind, self.info.conventions, self.frame_out[1]
        if out == self.frame:
            return f"{kind} at the input's size"
        return (f"{kind} at {out[0]}x{out[1]} (1/{_stride(self.frame, out):g} of the input), upsampled "
                + (c.upsample if kind == "logits" else "nearest"))


def plan_wrap(onnx_path, options: dict | None = None, classes=None, patch: int = 256,
              frame: tuple = (512, 1024)) -> WrapPlan:
    """Read the graph and run it at both sizes: every refusal (one line) before any frame is
    read: an unusable file or graph, sizes it cannot take, outputs at different strides, a
    --classes that does not fit."""
    onnx_path = Path(onnx_path).expanduser()
    model, info = read_graph(onnx_path, options)
    model = upgraded(model)
    s, frame = int(patch), tuple(int(v) for v in frame)
    p_rank, p_out, p_classes = probe(model, info, (s, s))
    f_rank, f_out, f_classes = probe(model, info, frame)
    if abs(_stride((s, s), p_out) - _stride(frame, f_out)) > 0.15 * _stride(frame, f_out):
        raise UserError(f"{onnx_path.name} gives {p_out[0]}x{p_out[1]} for {s}x{s} inputs but {f_out[0]}x{f_out[1]} "
                        f"for {frame[0]}x{frame[1]}: its output does not follow the input's size")
    if p_classes != f_classes:
        raise UserError(f"{onnx_path.name} gives {p_classes} class channels at {s}x{s} but {f_classes} at "
                        f"{frame[0]}x{frame[1]}")
    names = class_names(classes, f_classes, from_metadata(info.metadata).get("class_names"))
    return WrapPlan(onnx_path, model, info, s, frame, (p_rank, p_out), (f_rank, f_out), names)


def wrap_bundle(plan: WrapPlan, out_dir, frames: list, seed: int = 0, require_trt: bool = True,
                log=print) -> dict:
    """Wrap, verify and write ``model.onnx``, ``segment.onnx`` and ``export.json`` into ``out_dir``.

    ``plan``: :func:`plan_wrap`'s. ``frames``: uint8 (H, W, 3) RGB calibration frames at the
    plan's frame size, the parity check's inputs (whole, and ``PATCHES_PER_FRAME`` random
    patches of each). Returns export.json's record.
    """
    import onnx

    out_dir = Path(out_dir)
    onnx_path, model, info, s, frame, names = plan.path, plan.model, plan.info, plan.patch, plan.frame, plan.names
    c = info.conventions
    log(f"your model: {info.describe()}")
    given = ", ".join(f"{k} from {v}" for k, v in sorted(c.sources.items()) if v != "default")
    log(f"  fed as {c.formula()}" + (f" ({given}; the rest defaults)" if given else " (all defaults)"))
    how = plan.output()
    log(f"  output: {how}; {len(names)} classes")
    graphs = {MODEL_FILE: wrap(model, info, (s, s), *plan.patch_out),
              SEGMENT_FILE: wrap(model, info, frame, *plan.frame_out)}
    compat = {name: _check(g, name, require_trt, log) for name, g in graphs.items()}

    partial = {name: out_dir / f".{name}.partial" for name in graphs}
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        for name, g in graphs.items():
            onnx.save_model(g, str(partial[name]))
        parity = _verify(model, info, partial, frames, s, frame, seed, log)
        for name in graphs:
            os.replace(partial[name], out_dir / name)
    finally:
        for path in partial.values():
            if path.exists():
                path.unlink()
    record = _sections(onnx_path, info, names, s, frame, {n: out_dir / n for n in graphs}, opset_of(model))
    record.update(
        verification={"wrapped_vs_source": parity, "min_agreement": MIN_AGREEMENT, "seed": seed,
                      "output": how, "reference": "the user's graph through ONNX Runtime, fed and "
                      "upsampled in NumPy (edge_guard.export.wrap_verify)"},
        trt_compat=compat[MODEL_FILE], exported={
            "edge_guard": __version__, "onnx": onnx.__version__, "from": "onnx (calibrate --onnx)",
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    record["segment"]["verification"] = parity["frames"]
    record["segment"]["trt_compat"] = compat[SEGMENT_FILE]["ok"]
    (out_dir / EXPORT_FILE).write_text(json.dumps(record, indent=1))
    return record


def _verify(model, info, partial: dict, frames: list, patch: int, frame: tuple, seed: int, log) -> dict:
    """Parity of both wrapped graphs with the user's graph; WrapCheckError below MIN_AGREEMENT."""
    from edge_guard.engines.ort_predict import OrtPredictor

    if not frames:
        raise UserError("the wrap check needs at least one calibration frame")
    checks = {"frames": (SEGMENT_FILE, frame, list(frames)),
              "patches": (MODEL_FILE, (patch, patch), crops(frames, patch, PATCHES_PER_FRAME, seed))}
    out = {}
    for what, (name, size, images) in checks.items():
        ref = Reference(model, info, size)
        parity = compare(OrtPredictor(partial[name]), ref, images)
        out[what] = dict(parity.as_dict(), source_as_given=ref.as_given)
        given = "" if ref.as_given else f" (its input size set to {size[0]}x{size[1]}: the graph fixes another)"
        log(f"{name} vs {info.path.name}{given}: {parity.summary()}")
        if parity.agreement < MIN_AGREEMENT:
            raise WrapCheckError(f"the wrapped {name} does not match {info.path.name}: {parity.summary()} "
                                 f"(need {100 * MIN_AGREEMENT:.1f}%); nothing was written")
    share = out["frames"]["top_class_share"]
    if share >= ONE_CLASS_SHARE:
        # The wrap agrees with the graph either way; a street segmented as one class is what
        # wrong conventions (a 0-255 graph fed 0-1, BGR for RGB) most often look like.
        warning = (f"{info.path.name} labels {100 * share:.1f}% of the pixels of {out['frames']['images']} calibration "
                   "frames as one class: check --scale, --mean, --std and --channels against your stack's "
                   "preprocessing (the bundle is written; its threshold will mean little if they are wrong)")
        out["warning"] = warning  # calibrate prints it with its other warnings
    return out
