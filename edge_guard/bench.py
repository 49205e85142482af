"""Latency of the guard stage by stage, against plain segmentation on the same backend.

For each K: warm-up frames, then ``iters`` timed checks of one camera frame; per stage
(guard.STAGES) the mean, p50 and p99 in ms and the frames per second. In the same run the
bundle's ``segment.onnx`` (the net over the whole frame, written by ``edge-guard export
--frame`` and by ``calibrate``) is timed on the same backend, resize included, so the
overhead ratio guard / segmentation is measured under the same load: it stays meaningful
on a noisy machine where absolute times do not. Its floor for independent pairs is the
pixel ratio 2K s^2 / (H W).

No threshold is needed to time a model: a folder with only model.onnx and export.json
(an uncalibrated export) is benchmarked with the paper's geometry scaled to its patch size.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter

import numpy as np

from .backends import FunctionRunner, Runner, open_runner
from .bundle import (EXPORT_FILE, GUARD_FILE, Bundle, BundleError, check_model_section, load_bundle,
                     uncalibrated_bundle)
from .errors import UserError
from .frames import resize, swap_rb
from .guard import STAGES, Guard
from .patches import check_geometry, scaled_bounds
from .paths import ASSETS, DEFAULT_BUNDLE

DEMO_FRAME = ASSETS / "demo" / "clean_0017.png"


def summarise(samples_ms) -> dict:
    """mean / p50 / p99 (ms) of a list of timings."""
    a = np.asarray(samples_ms, np.float64)
    if a.size == 0:
        return {"mean": None, "p50": None, "p99": None}
    return {"mean": float(a.mean()), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99))}


def pixel_floor(k: int, patch: int, frame_size) -> float:
    """2K s^2 / (H W): the guard's pixels over the frame's, the overhead of independent pairs."""
    h, w = frame_size
    return 2 * k * patch * patch / (h * w)


def host_peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def gpu_memory_used_mb() -> float | None:
    """Memory in use on GPU 0, all processes (MiB); None without a usable GPU."""
    try:
        from edge_guard.kernels.device import check, driver, ensure_current, gpu_count

        if gpu_count() == 0:
            return None
        ensure_current(0)
        free, total = check(driver().cuMemGetInfo(), "cuMemGetInfo")
        return (int(total) - int(free)) / (1 << 20)
    except Exception:  # no cuda-python, no driver: the bench runs without the figure
        return None


def open_bundle(bundle_dir=None, frame=None) -> Bundle:
    """guard.json when the folder has one; else export.json's model with the paper's geometry
    scaled to its patch size, at ``frame`` (or segment.onnx's frame size): timing only."""
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
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(record, dict):
        raise BundleError(f"{path} must hold a JSON object: re-export the model (`edge-guard export`)")
    return record


def segment_graph(bundle: Bundle) -> tuple[Path | None, str]:
    """(path of the bundle's full-frame graph, why there is none)."""
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
    path = bundle.root / seg["file"]
    if not path.is_file():
        return None, f"{path} is missing"
    if [int(v) for v in seg["frame_size"]] != list(bundle.frame_size):
        return None, (f"segment.onnx takes {seg['frame_size'][0]}x{seg['frame_size'][1]} frames, the "
                      f"bundle checks {bundle.frame_size[0]}x{bundle.frame_size[1]}: re-export with --frame")
    return path, ""


def open_segmenter(bundle: Bundle, guard_runner: Runner, threads: int | None,
                   segment_engine=None) -> tuple[Runner | None, str]:
    """A runner of plain full-frame segmentation on the guard's backend, or why not.

    ONNX Runtime runs segment.onnx with the provider the guard's runner actually uses; for
    TensorRT the engine of segment.onnx is given (``segment_engine``, e.g. built by trtexec).
    """
    if guard_runner.name == "tensorrt" or segment_engine is not None:
        if segment_engine is None:
            return None, ("TensorRT: pass --segment-engine, an engine of segment.onnx (e.g. `trtexec "
                          "--onnx=BUNDLE/segment.onnx --saveEngine=segment.engine`), to time the baseline")
        from .backends.tensorrt import TrtRunner

        exe = TrtRunner(segment_engine)
        return FunctionRunner(exe, provider="TensorRT", name="tensorrt", on_close=exe.close).activate(), ""
    path, why = segment_graph(bundle)
    if path is None:
        return None, why
    from .backends.onnxruntime import CPU, OnnxRuntimeRunner

    provider = guard_runner.provider if guard_runner.name == "onnxruntime" else CPU
    providers = None if provider == CPU else [provider]
    return OnnxRuntimeRunner(path, providers=providers, threads=threads, output="labels").activate(), ""


def camera_frame(size) -> np.ndarray:
    """A BGR uint8 street frame of ``size`` (h, w): the shipped demo's clean frame, resized
    (a real scene, so the consistency step sees realistic class maps); noise without it."""
    import cv2

    h, w = size
    image = cv2.imread(str(DEMO_FRAME), cv2.IMREAD_COLOR) if DEMO_FRAME.is_file() else None
    if image is None:
        return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)


@dataclass
class BenchResult:
    """Everything one bench run measured; ``as_dict`` is the --json document."""

    settings: dict
    machine: dict
    segmentation: dict | None
    segmentation_note: str
    runs: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"settings": self.settings, "machine": self.machine, "segmentation": self.segmentation,
                "segmentation_note": self.segmentation_note, "runs": self.runs}


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info


def time_segmentation(runner: Runner, frame: np.ndarray, size, swap: bool, iters: int, warmup: int) -> dict:
    """Plain segmentation of ``frame``: resize to ``size`` (+ channel swap) and infer, ms per stage."""
    h, w = size
    resized = np.empty((h, w, 3), np.uint8)
    swapped = np.empty((h, w, 3), np.uint8)
    totals, infers = [], []
    for i in range(warmup + iters):
        t0 = perf_counter()
        image = resize(frame, size, out=resized)
        if swap:
            image = swap_rb(image, out=swapped)
        t1 = perf_counter()
        runner.infer(image[None])
        t2 = perf_counter()
        if i >= warmup:
            totals.append(1e3 * (t2 - t0))
            infers.append(1e3 * (t2 - t1))
    total = summarise(totals)
    return {"total": total, "infer": summarise(infers), "fps": 1e3 / total["mean"]}


def time_guard(guard: Guard, frame: np.ndarray, iters: int, warmup: int) -> dict:
    """``iters`` checks of ``frame`` after ``warmup``: per-stage summaries (ms) and fps."""
    samples = {}
    for i in range(warmup + iters):
        verdict = guard.check(frame)
        if i >= warmup:
            for stage, ms in verdict.timings_ms.items():
                samples.setdefault(stage, []).append(ms)
    stages = {stage: summarise(v) for stage, v in samples.items()}
    return {"stages": stages, "fps": 1e3 / stages["total"]["mean"]}


def run_bench(bundle_dir=None, backend: str = "auto", frame=None, pairs=(1, 5, 10, 50), iters: int = 50,
              warmup: int = 5, threads: int | None = None, precision: str | None = None,
              segment_engine=None, seed: int = 0, runner_factory=None, segmenter=None,
              log=print) -> BenchResult:
    """Time the guard at every K of ``pairs`` and plain segmentation; see the module docstring.

    ``frame`` (h, w): the camera frame size (default: the bundle's; the guard resizes it).
    ``runner_factory(bundle, k) -> Runner`` and ``segmenter`` (an active full-frame Runner)
    replace the backend and the baseline: benchmarks use them for PyTorch CUDA, where
    TensorRT is absent.
    """
    if iters < 1 or warmup < 0:
        raise UserError(f"--iters must be >= 1 and --warmup >= 0, got {iters} and {warmup}")
    ks = sorted({int(k) for k in pairs})
    if not ks or ks[0] < 1:
        raise UserError(f"pair counts must be positive integers, got {list(pairs)}")
    bundle = open_bundle(bundle_dir, frame)  # a bad bundle is refused before any output
    log(f"# edge-guard bench: {bundle.root}, K={','.join(map(str, ks))}, {iters} frames each after "
        f"{warmup} warm-up (ms)")
    camera = tuple(frame) if frame else bundle.frame_size
    image = camera_frame(camera)
    gpu_before = gpu_memory_used_mb()
    settings = {"bundle": str(bundle.root), "calibrated": bundle.threshold > 0,
                "architecture": bundle.model.get("architecture"), "patch_size": bundle.patch_size,
                "b_low": bundle.b_low, "b_high": bundle.b_high, "frame_size": list(bundle.frame_size),
                "camera_frame": list(camera), "pairs": ks, "iters": iters, "warmup": warmup,
                "threads": threads, "backend_requested": backend, "precision": precision, "seed": seed}
    result = BenchResult(settings=settings, machine=machine_info(), segmentation=None, segmentation_note="")
    seg_runner = None
    try:
        for k in ks:
            runner = (runner_factory(bundle, k) if runner_factory is not None else
                       open_runner(bundle, backend, threads=threads, pairs=k, precision=precision))
            with Guard(bundle, runner, seed=seed, pairs=k) as guard:
                if seg_runner is None and not result.segmentation_note:
                    if segmenter is not None:
                        seg_runner = segmenter.activate()
                    else:
                        seg_runner, result.segmentation_note = open_segmenter(bundle, guard.runner, threads,
                                                                              segment_engine)
                    if seg_runner is not None:
                        swap = bundle.channels == "RGB"  # camera frames are BGR
                        result.segmentation = {"backend": seg_runner.name, "provider": seg_runner.provider,
                                               **time_segmentation(seg_runner, image, bundle.frame_size, swap,
                                                                   iters, warmup)}
                        log(f"plain segmentation {bundle.frame_size[0]}x{bundle.frame_size[1]}: "
                            f"{result.segmentation['total']['mean']:.1f} ms mean "
                            f"({result.segmentation['fps']:.1f} fps)")
                    else:
                        log(f"note: no plain-segmentation baseline: {result.segmentation_note}")
                run = {"k": k, "backend": guard.backend, "provider": guard.provider,
                       "selection": guard.selection, "device_scoring": guard.device_scoring}
                if guard.device_scoring:
                    # The breakdown needs a sync per stage, which the real path does not pay:
                    # time the stages apart, then the total and fps without the syncs.
                    guard.stage_timing = True
                    split = time_guard(guard, image, iters, warmup)
                    guard.stage_timing = False
                    run.update(time_guard(guard, image, iters, warmup))
                    run["stages"] = {**split["stages"], "total": run["stages"]["total"]}
                else:
                    run.update(time_guard(guard, image, iters, warmup))
            _derive(run, bundle, result.segmentation)
            run["host_peak_rss_mb"] = host_peak_rss_mb()
            gpu = gpu_memory_used_mb()
            run["gpu_memory_mb"] = None if gpu is None else gpu - (gpu_before or 0.0)
            result.runs.append(run)
            log(format_run(run))
    finally:
        if seg_runner is not None:
            seg_runner.close()
    return result


def _derive(run: dict, bundle: Bundle, seg: dict | None) -> None:
    total = run["stages"]["total"]["mean"]
    consistency = (run["stages"].get("consistency") or {}).get("mean")
    run["consistency_share"] = None if consistency is None else consistency / total
    run["pixel_floor"] = pixel_floor(run["k"], bundle.patch_size, bundle.frame_size)
    run["overhead"] = None if seg is None else total / seg["total"]["mean"]


def format_run(run: dict) -> str:
    """One line per K: the stage means, total p50/p99, fps, overhead and its floor."""
    stages = run["stages"]
    parts = " ".join(f"{s} {stages[s]['mean']:.2f}" for s in STAGES[:-1] if s in stages)
    extra = [f"{s} {v['mean']:.2f}" for s, v in stages.items() if s not in STAGES]
    total = stages["total"]
    line = (f"K={run['k']:<3} {parts}{' ' + ' '.join(extra) if extra else ''} | total mean {total['mean']:.1f} "
            f"p50 {total['p50']:.1f} p99 {total['p99']:.1f} ms | {run['fps']:.1f} fps")
    if run.get("overhead") is not None:
        line += f" | {run['overhead']:.2f}x segmentation (floor {run['pixel_floor']:.2f}x)"
    if run.get("consistency_share") is not None:
        line += f" | consistency {100 * run['consistency_share']:.1f}%"
    return line


def markdown_table(doc: dict) -> str:
    """A Markdown table of one bench document (as_dict), for the README and reports."""
    s, m = doc["settings"], doc["machine"]
    seg = doc.get("segmentation")
    rows = [f"Bundle `{Path(s['bundle']).name}` ({s['architecture']}, s={s['patch_size']}, "
            f"frame {s['frame_size'][0]}x{s['frame_size'][1]}), {s['iters']} frames after {s['warmup']} "
            f"warm-up, threads {s['threads'] or 'default'}; {m['cpu']}, {m['cores']} cores.", ""]
    if seg:
        rows.append(f"Plain segmentation of the frame ({seg['backend']}, {seg['provider']}): "
                    f"{seg['total']['mean']:.1f} ms mean, p99 {seg['total']['p99']:.1f} ms, {seg['fps']:.1f} fps.")
        rows.append("")
    rows.append("| K | backend | crop ms | infer ms | consistency ms | total mean ms | p50 | p99 | fps "
                "| overhead (floor) | consistency share |")
    rows.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in doc["runs"]:
        st = r["stages"]
        cell = lambda name: f"{st[name]['mean']:.2f}" if name in st else "-"  # noqa: E731
        over = (f"{r['overhead']:.2f}x ({r['pixel_floor']:.2f}x)" if r.get("overhead") is not None
                else f"- ({r['pixel_floor']:.2f}x)")
        share = f"{100 * r['consistency_share']:.1f}%" if r.get("consistency_share") is not None else "-"
        rows.append(f"| {r['k']} | {r['backend']} ({r['provider']}) | {cell('crop')} | {cell('infer')} | "
                    f"{cell('consistency')} | {st['total']['mean']:.1f} | {st['total']['p50']:.1f} | "
                    f"{st['total']['p99']:.1f} | {r['fps']:.1f} | {over} | {share} |")
    return "\n".join(rows) + "\n"
