"""``edge-guard build-engine``: a bundle's model as a checked TensorRT engine for this GPU.

One path for TensorRT 10.x (JetPack 6 on Orin) and 11.x, which dropped the FP16/INT8
builder flags and INT8 calibrators: the precision is in the ONNX file (precision.py) and
the network is strongly typed.

1. the graph for the precision: model.onnx (fp32), model.fp16.onnx, model.int8.onnx (Q/DQ
   calibrated on patches of the calibration frames), made when missing or stale;
2. the TensorRT-compatibility check on it;
3. ONNX Runtime (CPU) check of the fp16/int8 graph against the fp32 graph on the calibration
   frames: label agreement, spatial-score shift, false-positive rate at the bundle's
   threshold (TOLERANCES); refused -> EngineCheckError with the figures;
4. (unless --onnx-only) the engine: strongly typed network from the ONNX parser, one
   optimisation profile (1 / K / max_pairs units of 2 patches for pairs, 1 patch for the
   frame detector), workspace limit, timing cache in the bundle, ``build_serialized_network``;
5. the same check of the engine itself on the GPU; only then does the engine get its final
   name ``engines/model.<precision>.sm<XY>.trt<version>.<gpu>.engine`` and its sidecar
   (edge_guard.engine_cache). A cached engine that still validates is reused.

A bundle with a full-frame graph (segment.onnx) gets the same steps for it, at the same
precision (trt_frame.py): ``segment.<precision>.onnx``, checked on the calibration frames
themselves, and ``engines/segment.<precision>...engine`` for one frame of the bundle's size.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_guard.backends.trt_api import TensorRT
from edge_guard.engine_cache import (check_precision, current_device, engine_path, onnx_name,
                                     precision_record_path, profile_shapes, read_precision_record,
                                     sha256_file, timing_cache_path, validate_engine, write_sidecar)
from edge_guard.errors import MissingDependency, UserError, require

from .bundle_info import PAPER_K, BundleInfo, read_bundle
from .frames import check_frames_fit, default_frame_size, folder_frames, generated_frames
from .ort_predict import OrtPredictor
from .parity import Parity, compare_labels, draw_patch_sets, predict_sets
from .precision import DEFAULT_PERCENTILE, convert_fp16_auto, quantize_int8
from .trt_compat import check_trt_compat

# Acceptance of a lower-precision graph / an engine against the fp32 graph on the
# calibration frames. min_agreement: fraction of equal labels; max_score_shift: mean
# |score_fp32 - score| over frames; max_fpr_rise: allowed rise of the false-positive rate
# at the bundle's threshold, at least one frame (with n frames the rate moves by 1/n).
TOLERANCES = {
    "fp32": {"min_agreement": 0.999, "max_score_shift": 0.002, "max_fpr_rise": 0.0},
    "fp16": {"min_agreement": 0.99, "max_score_shift": 0.01, "max_fpr_rise": 0.01},
    "int8": {"min_agreement": 0.97, "max_score_shift": 0.03, "max_fpr_rise": 0.02},
}
MIN_TRT_MAJOR = 10


def _bar(total: int, desc: str):
    """A tqdm bar when tqdm is installed (offline extra), else nothing; close() either way."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="frame", leave=False)


@contextmanager
def _progress(total: int, desc: str):
    bar = _bar(total, desc)
    try:
        yield bar
    finally:
        if bar is not None:
            bar.close()


class EngineCheckError(UserError):
    """A low-precision graph or an engine is too far from the fp32 model (figures in the message)."""


@dataclass
class CalibrationSet:
    """Frames, their patch sets and the fp32 graph's labels on them (the reference)."""

    sets: list
    reference: list
    quant_patches: np.ndarray
    source: str
    frames: list


def judge(parity: Parity, precision: str, what: str) -> dict:
    """Figures + verdict; raises EngineCheckError when outside TOLERANCES[precision]."""
    tol = TOLERANCES[precision]
    failures = []
    if parity.label_agreement < tol["min_agreement"]:
        failures.append(f"labels agree on {100 * parity.label_agreement:.2f}% "
                        f"(need {100 * tol['min_agreement']:.1f}%)")
    if parity.score_shift > tol["max_score_shift"]:
        failures.append(f"mean score shift {parity.score_shift:.4f} (allowed {tol['max_score_shift']})")
    if parity.threshold is not None and parity.fpr_ref is not None and parity.fpr_test is not None:
        allowed = max(tol["max_fpr_rise"], 1.0 / max(parity.frames, 1))
        if parity.fpr_test - parity.fpr_ref > allowed + 1e-12:
            failures.append(f"false-positive rate at threshold {parity.threshold:.4f} rises "
                            f"{parity.fpr_ref:.3f} -> {parity.fpr_test:.3f} (allowed +{allowed:.3f})")
    figures = dict(parity.as_dict(), tolerances=tol, passed=not failures)
    if failures:
        raise EngineCheckError(f"{what} ({precision}) is refused against the fp32 model: "
                               + "; ".join(failures) + f" [{parity.summary()}]")
    return figures


def calibration_set(info: BundleInfo, calib_dir=None, count: int = 16, pairs: int = 4,
                    seed: int = 0, log=print) -> CalibrationSet:
    """Frames (folder or generated), K pairs per frame, fp32 ONNX Runtime labels on them."""
    low, high = info.bounds()
    size = info.frame_size or default_frame_size(info.patch, high)
    if calib_dir is not None:
        frames = folder_frames(calib_dir, info.frame_size, limit=count)
        source = f"{len(frames)} frames from {calib_dir}"
    else:
        frames = generated_frames(count, size, seed=10_000 + seed)
        source = f"{len(frames)} generated {size[0]}x{size[1]} frames"
    check_frames_fit(frames, info.patch, low)
    sets = draw_patch_sets(frames, info.patch, low, high, pairs, seed)
    # int8 calibrates on other patches of the same frames than the ones it is checked on.
    quant = np.concatenate([ps.patches for ps in draw_patch_sets(frames, info.patch, low, high,
                                                                 max(1, pairs // 2), seed + 1)])
    log(f"calibration: {source}, {pairs} pairs each; fp32 reference under ONNX Runtime...")
    with _progress(len(sets), "fp32 reference") as bar:
        reference = predict_sets(OrtPredictor(info.onnx_path), sets, batch=8, progress=bar)
    return CalibrationSet(sets, reference, quant, f"{source}, seed {seed}", frames)


def ensure_precision_onnx(info: BundleInfo, precision: str, calib: CalibrationSet,
                          calibration_method: str = "percentile",
                          percentile: float = DEFAULT_PERCENTILE, log=print, source: Path | None = None,
                          quant_data: np.ndarray | None = None) -> Path:
    """The ONNX file for ``precision``: made (and recorded) unless fresh for its fp32 graph.

    ``source``: the fp32 graph (default: the patch graph, whose derived files are
    model.<precision>.onnx); ``quant_data``: what int8 calibrates on (default: patches).
    """
    source = info.onnx_path if source is None else Path(source)
    if precision == "fp32":
        return source
    path = info.root / onnx_name(precision, "model.onnx" if source == info.onnx_path else source.name)
    prov_path = precision_record_path(path)
    source_sha = sha256_file(source)
    # int8 scales depend on the calibration data: other frames or method -> recalibrate.
    calib_key = (f"{calib.source}, {calibration_method}"
                 + (f" {percentile}" if calibration_method == "percentile" else "")
                 if precision == "int8" else None)
    if path.is_file():
        prov = read_precision_record(path)
        if prov.get("source_sha256") == source_sha and prov.get("sha256") == sha256_file(path) \
                and prov.get("calibration_key") == calib_key:
            log(f"{path.name} is up to date (made from this {source.name})")
            return path
    partial = path.with_name(f".{path.name}.partial")
    try:
        if precision == "fp16":
            details = {"method": convert_fp16_auto(source, partial, log=lambda *_: None)}
        else:
            with _quiet_root_logger():
                details = quantize_int8(source, partial,
                                        calib.quant_patches if quant_data is None else quant_data,
                                        method=calibration_method, percentile=percentile,
                                        log=lambda *_: None)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    prov = {"source_file": source.name, "source_sha256": source_sha, "file": path.name,
            "sha256": sha256_file(path), "precision": precision, "calibration_key": calib_key,
            **details}
    prov_path.write_text(json.dumps(prov, indent=1))
    log(f"wrote {path.name} ({', '.join(f'{k}={v}' for k, v in details.items())})")
    return path


def read_only_hint(root: Path) -> str:
    """One line for a bundle folder that engines cannot be cached in."""
    return (f"cannot write into {root}: engines are built and cached beside model.onnx; copy the "
            f"bundle to a writable folder (e.g. cp -r {root} ~/edge-guard-bundle) and pass --bundle")


@contextmanager
def _quiet_root_logger():
    # onnxruntime.quantization advises pre-processing through the root logger on every call.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def trt_major(trt: TensorRT) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except (AttributeError, ValueError):
        raise UserError("cannot tell the TensorRT version (tensorrt.__version__)") from None


def build_serialized(trt: TensorRT, onnx_path: Path, input_name: str, profile: dict, precision: str,
                     workspace_mib: int | None = None, timing_cache: bytes = b"", log=print):
    """Parse ``onnx_path`` into a strongly typed network and build it -> (engine, timing cache) bytes."""
    major = trt_major(trt)
    if major < MIN_TRT_MAJOR:
        raise UserError(f"TensorRT {trt.__version__} is too old: edge-guard needs 10.x or later "
                        "(strongly typed networks, named I/O tensors)")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    # 10.x: strong typing is opt-in (EXPLICIT_BATCH is implied and deprecated, so not set);
    # 11.x: always strongly typed, the flag is deprecated and ignored.
    if major < 11:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise UserError(f"TensorRT's ONNX parser rejects {onnx_path.name}: "
                        f"{errors[0] if errors else 'no reason given'}"
                        + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    if names != [input_name]:
        raise UserError(f"{onnx_path.name} has inputs {names}, expected [{input_name!r}]")
    config = builder.create_builder_config()
    if workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: no TF32 matmuls/convs
    opt = builder.create_optimization_profile()
    lo, mid, hi = (tuple(profile[k]) for k in ("min", "opt", "max"))
    # TensorRT converts tuples to Dims (Dims' own documentation); its stub types only Dims.
    opt.set_shape(input_name, lo, mid, hi)  # type: ignore[arg-type]
    config.add_optimization_profile(opt)
    cache = config.create_timing_cache(timing_cache or b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    log(f"building the {precision} engine (TensorRT {trt.__version__}, profile "
        f"{profile['min'][0]}/{profile['opt'][0]}/{profile['max'][0]} patches)...")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError("TensorRT could not build the engine (its log above says why); "
                        "a larger --workspace may help")
    return bytes(serialized), bytes(config.get_timing_cache().serialize())


def build_engine(bundle, precision: str = "fp16", calib_frames=None, calib_count: int = 16,
                 calib_pairs: int = 4, max_pairs: int = 50, workspace_mib: int | None = None,
                 onnx_only: bool = False, force: bool = False, seed: int = 0,
                 calibration_method: str = "percentile", percentile: float = DEFAULT_PERCENTILE,
                 trt: TensorRT | None = None, runner_factory=None,
                 device=None, log=print) -> dict:
    """See the module docstring. Returns a summary dict (paths and figures; the full-frame
    graph's under "frame").

    ``trt``, ``runner_factory(engine_path, trt) -> predictor`` and ``device`` are injectable
    so everything but TensorRT itself can be tested without a GPU.
    """
    check_precision(precision)
    info = read_bundle(bundle)
    if info.k is not None and max_pairs < info.k:
        raise UserError(f"--max-pairs {max_pairs} is below the bundle's K = {info.k}")
    if not os.access(info.root, os.W_OK):  # before minutes of building, not after
        raise UserError(read_only_hint(info.root))
    if not onnx_only and trt is None:  # before the calibration frames and the ONNX checks
        try:
            trt = require("tensorrt", "gpu", "building TensorRT engines")
        except MissingDependency as exc:
            raise MissingDependency(f"{exc} (or --onnx-only to make and check the {precision} ONNX "
                                    "graph without TensorRT)") from None
    calib = calibration_set(info, calib_frames, calib_count, calib_pairs, seed, log)
    quant = dict(calibration_method=calibration_method, percentile=percentile, log=log)
    onnx_path = ensure_precision_onnx(info, precision, calib, **quant)
    check_compatible(onnx_path, log)
    summary: dict = {"precision": precision, "onnx": str(onnx_path)}
    if precision != "fp32":
        with _progress(len(calib.sets), f"{precision} under ONNX Runtime") as bar:
            test = predict_sets(OrtPredictor(onnx_path), calib.sets, 8, progress=bar)
        parity = compare_labels(calib.reference, test, calib.sets, info.num_classes, info.threshold)
        log(f"ONNX Runtime {precision} vs fp32: {parity.summary()}")
        try:
            summary["onnx_check"] = judge(parity, precision, onnx_path.name)
        except EngineCheckError:
            _record_check(onnx_path, dict(parity.as_dict(), passed=False))
            raise
        _record_check(onnx_path, summary["onnx_check"])
    frame = None
    if info.frame_graph is not None:
        from .trt_frame import FrameGraph

        frame = FrameGraph(info, calib, log)
        summary["frame"] = frame.prepare(precision, quant)
    if onnx_only:
        return summary

    trt = trt or require("tensorrt", "gpu", "building TensorRT engines")
    device = device or current_device(trt.__version__)
    if runner_factory is None:
        from edge_guard.backends.trt_engine import TrtRunner

        runner_factory = lambda p, t: TrtRunner(p, trt=t)  # noqa: E731
    builder = EngineBuilder(info, trt, device, precision, workspace_mib, force, runner_factory, log)
    k_opt = min(info.k or PAPER_K, max_pairs)
    per_k = info.per_k
    profile = profile_shapes(info.patch, max_pairs, k_opt, per_k)

    def check(runner):
        with _progress(len(calib.sets), f"{precision} engine") as bar:
            test = predict_sets(runner, calib.sets, batch=per_k * max_pairs, progress=bar)
        parity = compare_labels(calib.reference, test, calib.sets, info.num_classes, info.threshold)
        log(f"TensorRT {precision} engine vs fp32 ONNX: {parity.summary()}")
        return judge(parity, precision, "the TensorRT engine")

    summary.update(builder.build(onnx_path, "patch", profile, check,
                                 dict(batch=per_k * max_pairs, patch=info.patch)))
    if frame is not None:
        summary["frame"].update(frame.build(builder))
    return summary


def check_compatible(onnx_path: Path, log=print) -> None:
    """Step 2: refuse a graph TensorRT cannot build (one line naming the first problems)."""
    compat = check_trt_compat(onnx_path)
    log(f"{onnx_path.name}: {compat.verdict()}")
    if not compat.ok:
        raise UserError(f"{onnx_path.name} is not TensorRT-compatible: {'; '.join(compat.problems[:3])}")


class EngineBuilder:
    """Steps 4-5 for one graph: reuse a valid cached engine, else build it, check it on the
    GPU with ``check(runner) -> figures`` and only then name it and write its sidecar."""

    def __init__(self, info: BundleInfo, trt: TensorRT, device, precision: str, workspace_mib, force: bool,
                 runner_factory, log=print):
        self.info, self.trt, self.device, self.precision = info, trt, device, precision
        self.workspace_mib, self.force, self.runner_factory, self.log = workspace_mib, force, runner_factory, log

    def build(self, onnx_path: Path, graph: str, profile: dict, check, validate_kw: dict) -> dict:
        """-> {"engine", "cached", "engine_check"[, "sidecar"]}; ``validate_kw``: the batch and
        patch (or frame) size the cached engine must take."""
        info, device, precision, log = self.info, self.device, self.precision, self.log
        path = engine_path(info.root, precision, device, graph)
        existing = validate_engine(path, onnx_path, device, precision, **validate_kw)
        if existing.ok and not self.force:
            log(f"{path.name} is cached and valid: not rebuilt (--force rebuilds)")
            return {"engine": str(path), "cached": True,
                    "engine_check": (existing.sidecar or {}).get("verification")}
        if path.exists():
            log(f"rebuilding {path.name}: {existing.reason}")
        cache_file = timing_cache_path(info.root, device)
        engine_bytes, timing = build_serialized(
            self.trt, onnx_path, info.input_name, profile, precision, self.workspace_mib,
            cache_file.read_bytes() if cache_file.is_file() else b"", log)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(engine_bytes)
        try:
            runner = self.runner_factory(partial, self.trt)
            try:
                figures = check(runner)
            finally:
                getattr(runner, "close", lambda: None)()
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        sidecar = write_sidecar(path, onnx_path=onnx_path, precision=precision, device=device,
                                input_name=info.input_name, profile=profile, verification=figures, graph=graph)
        tmp = cache_file.with_name(cache_file.name + ".partial")
        tmp.write_bytes(timing)
        os.replace(tmp, cache_file)
        log(f"wrote {path} ({sidecar['engine_size'] / 1e6:.1f} MB) and its sidecar")
        return {"engine": str(path), "cached": False, "engine_check": figures, "sidecar": sidecar}


def _record_check(onnx_path: Path, figures: dict) -> None:
    prov = read_precision_record(onnx_path)
    prov["onnxruntime_check"] = figures
    precision_record_path(onnx_path).write_text(json.dumps(prov, indent=1))
