"""Latency of the guard for each detector, against plain segmentation on the same backend.

The vehicle segments every frame anyway; what the guard costs is its extra time. For each
detector ("frame": K patches against the frame's labels; "pairs": the paper's K overlapping
pairs) and each K: warm-up frames, then ``iters`` timed calls of

- ``check(frame, labels=...)``: the guard given the frame's labels, so the vehicle's own
  segmentation is not counted (the extra): per stage (guard.STAGES) mean, p50, p99 in ms,
  and its frames per second;
- ``check(frame)``: the one call that segments the frame and checks it (segmentation +
  guard): its stages and frames per second.

Plain segmentation (the bundle's full-frame graph: guard.json's model.frame_graph, or, in
bundles written before it, export.json's segment record; resize, channel swap, one
inference) is timed in the same run on the same backend, and is the graph the guard
segments with, so the ratio extra / segmentation is measured under the same load: it stays
meaningful on a noisy machine where absolute times do not. Its floor is the pixel ratio
patches x s^2 / (H W), with K patches (frame) or 2K (pairs).

No threshold is needed to time a model: the detector other than the bundle's, and a folder
with only model.onnx and export.json (an uncalibrated export), are timed through
:func:`~edge_guard.bundle.uncalibrated_bundle` (pairs with the paper's displacements scaled
to the patch size; :mod:`.bench_setup`). Without a full-frame graph only the pairs
detector's extra is timed.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter

import numpy as np

from .backends import FunctionRunner, Runner, open_runner
from .bench_setup import DETECTORS, camera_frame, check_settings, detector_bundles, open_bundle, open_segmenter
from .bundle import Bundle
from .errors import UserError
from .frames import resize, swap_rb
from .guard import STAGES, Guard


def summarise(samples_ms) -> dict:
    """mean / p50 / p99 (ms) of a list of timings."""
    a = np.asarray(samples_ms, np.float64)
    if a.size == 0:
        return {"mean": None, "p50": None, "p99": None}
    return {"mean": float(a.mean()), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99))}


def pixel_floor(k: int, patch: int, frame_size, per_k: int = 2) -> float:
    """per_k K s^2 / (H W): the patches' pixels over the frame's, the floor of the guard's
    extra over segmentation (``per_k``: 2 patches per pair, 1 for the frame detector)."""
    h, w = frame_size
    return per_k * k * patch * patch / (h * w)


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


@dataclass
class BenchResult:
    """Everything one bench run measured; ``as_dict`` is the --json document."""

    settings: dict
    machine: dict
    segmentation: dict | None
    segmentation_note: str
    runs: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"settings": self.settings, "machine": self.machine, "segmentation": self.segmentation,
                "segmentation_note": self.segmentation_note, "notes": self.notes, "runs": self.runs}


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


def time_guard(guard: Guard, frame: np.ndarray, iters: int, warmup: int, labels=None) -> dict:
    """``iters`` checks of ``frame`` (given ``labels``: the guard alone) after ``warmup``:
    per-stage summaries (ms) and fps."""
    samples = {}
    for i in range(warmup + iters):
        verdict = guard.check(frame, labels=labels)
        if i >= warmup:
            for stage, ms in verdict.timings_ms.items():
                samples.setdefault(stage, []).append(ms)
    stages = {stage: summarise(v) for stage, v in samples.items()}
    return {"stages": stages, "fps": 1e3 / stages["total"]["mean"]}


def _stage_timing(guard: Guard, on: bool) -> None:
    """Switch the GPU pipeline's per-stage syncs (it reads its own flag on every check)."""
    guard.stage_timing = on
    if hasattr(guard.pipeline, "stage_timing"):
        guard.pipeline.stage_timing = on


def time_extra(guard: Guard, frame: np.ndarray, iters: int, warmup: int, labels) -> dict:
    """The guard's extra time (:func:`time_guard` with the frame's labels given)."""
    if not guard.device_scoring:
        return time_guard(guard, frame, iters, warmup, labels)
    # The breakdown needs a sync per stage, which the real path does not pay: time the
    # stages apart, then the total and fps without the syncs.
    _stage_timing(guard, True)
    split = time_guard(guard, frame, iters, warmup, labels)
    _stage_timing(guard, False)
    run = time_guard(guard, frame, iters, warmup, labels)
    return {"stages": {**split["stages"], "total": run["stages"]["total"]}, "fps": run["fps"]}


def run_bench(bundle_dir=None, backend: str = "auto", frame=None, pairs=(1, 5, 10, 50), iters: int = 50,
              warmup: int = 5, threads: int | None = None, precision: str | None = None,
              segment_engine=None, seed: int = 0, runner_factory=None, segmenter=None,
              detectors=None, log=print) -> BenchResult:
    """Time plain segmentation and, for each detector and every K of ``pairs``, the guard's
    extra and segmentation + guard; see the module docstring.

    ``frame`` (h, w): the camera frame size (default: the bundle's; the guard resizes it).
    ``detectors``: "frame", "pairs", a list of them, or None / "both" (both; the frame
    detector is left out, with a note, when there is no full-frame graph).
    ``runner_factory(bundle, k) -> Runner`` and ``segmenter`` (an active full-frame Runner)
    replace the backend and the full-frame graph's runner: benchmarks use them for PyTorch
    CUDA, where TensorRT is absent.
    """
    ks = check_settings(iters, warmup, pairs, threads)
    base = open_bundle(bundle_dir, frame)  # a bad bundle is refused before any output
    bundles, skipped = detector_bundles(base, detectors)
    log(f"# edge-guard bench: {base.root}, {' and '.join(bundles)} detector, K={','.join(map(str, ks))}, "
        f"{iters} frames each after {warmup} warm-up (ms)")
    if skipped:
        log(f"note: {skipped}")
    camera = tuple(frame) if frame else base.frame_size
    image = camera_frame(camera)
    gpu_before = gpu_memory_used_mb()
    geometry = bundles["pairs"] if "pairs" in bundles else None
    settings = {"bundle": str(base.root), "calibrated": base.threshold > 0, "detectors": list(bundles),
                "architecture": base.model.get("architecture"), "patch_size": base.patch_size,
                "b_low": geometry and geometry.b_low, "b_high": geometry and geometry.b_high,
                "frame_size": list(base.frame_size), "camera_frame": list(camera), "pairs": ks,
                "iters": iters, "warmup": warmup, "threads": threads, "backend_requested": backend,
                "precision": precision, "seed": seed}
    result = BenchResult(settings=settings, machine=machine_info(), segmentation=None, segmentation_note="")
    if skipped:
        result.notes.append(skipped)
    bench = _Bench(backend, threads, precision, segment_engine, seed, runner_factory, segmenter, image,
                   iters, warmup, result, log)
    try:
        for bundle in bundles.values():
            for k in ks:
                run = bench.row(bundle, k)
                if run is None:  # the frame detector without a full-frame runner
                    break
                _derive(run, bundle, result.segmentation)
                run["host_peak_rss_mb"] = host_peak_rss_mb()
                gpu = gpu_memory_used_mb()
                run["gpu_memory_mb"] = None if gpu is None else gpu - (gpu_before or 0.0)
                result.runs.append(run)
                log(format_run(run))
    finally:
        bench.close()
    if not result.runs:
        raise UserError(f"nothing was timed: {result.notes[-1]}")
    result.settings["detectors"] = sorted({r["detector"] for r in result.runs}, key=DETECTORS.index)
    return result


@dataclass
class _Bench:
    """The settings of one bench run, and the full-frame runner when one is shared: the
    caller's ``segmenter`` or the ``segment_engine``'s (else each guard opens its own, as
    Guard.load does)."""

    backend: str
    threads: int | None
    precision: str | None
    segment_engine: object
    seed: int
    runner_factory: object
    segmenter: Runner | None
    image: np.ndarray
    iters: int
    warmup: int
    result: BenchResult
    log: object
    shared: Runner | None = None
    tried: bool = False

    def baseline(self, bundle: Bundle, k: int) -> None:
        """Time plain segmentation (first call only) with a full-frame runner opened for it."""
        if self.tried:
            return
        self.tried = True
        result = self.result
        if self.segmenter is not None:
            seg = self.shared = self.segmenter.activate()
        elif self.segment_engine is not None:
            self.shared, result.segmentation_note = open_segmenter(bundle, segment_engine=self.segment_engine)
            seg = self.shared
        else:
            seg, result.segmentation_note = open_segmenter(bundle, self.backend, self.threads, k, self.precision)
        if seg is None:
            self.log(f"note: no plain-segmentation baseline: {result.segmentation_note}")
            return
        try:
            swap = bundle.channels == "RGB"  # camera frames are BGR
            result.segmentation = {"backend": seg.name, "provider": seg.provider,
                                   **time_segmentation(seg, self.image, bundle.frame_size, swap, self.iters,
                                                       self.warmup)}
        finally:
            if seg is not self.shared:
                seg.close()
        h, w = bundle.frame_size
        self.log(f"plain segmentation {h}x{w}: {result.segmentation['total']['mean']:.1f} ms mean "
                 f"({result.segmentation['fps']:.1f} fps)")

    def frame_runner(self, bundle: Bundle, k: int) -> Runner | None:
        """The full-frame runner of one guard (which closes it), or None without one."""
        if self.shared is not None:  # a wrapper: closing it leaves the shared runner open
            return FunctionRunner(self.shared.infer, provider=self.shared.provider, name=self.shared.name)
        if self.result.segmentation is None:
            return None
        return open_segmenter(bundle, self.backend, self.threads, k, self.precision)[0]

    def row(self, bundle: Bundle, k: int) -> dict | None:
        """The guard of ``bundle``'s detector at K = ``k``; None when it cannot run."""
        self.baseline(bundle, k)
        frame = self.frame_runner(bundle, k)
        if frame is None and bundle.method == "frame":
            note = f"frame detector not timed: no full-frame runner ({self.result.segmentation_note})"
            self.result.notes.append(note)
            self.log(f"note: {note}")
            return None
        try:
            runner = (self.runner_factory(bundle, k) if self.runner_factory is not None else
                      open_runner(bundle, self.backend, threads=self.threads, pairs=k, precision=self.precision))
        except BaseException:
            if frame is not None:
                frame.close()
            raise
        try:
            guard = Guard(bundle, runner, seed=self.seed, pairs=k, segmenter=frame, segment=frame is not None)
        except BaseException:
            for r in (runner, frame):
                if r is not None:
                    r.close()
            raise
        with guard:
            run = {"detector": bundle.method, "statistic": bundle.statistic, "k": k,
                   "patches": bundle.patch_batch(k), "calibrated": bundle.threshold > 0,
                   "backend": guard.backend, "provider": guard.provider, "selection": guard.selection,
                   "device_scoring": guard.device_scoring}
            labels = guard.check(self.image).labels  # the vehicle's segmentation of the frame
            run.update(time_extra(guard, self.image, self.iters, self.warmup, labels))
            run["check"] = None if labels is None else time_guard(guard, self.image, self.iters, self.warmup)
        return run

    def close(self) -> None:
        if self.shared is not None and self.shared is not self.segmenter:  # the caller's is the caller's
            self.shared.close()


def _derive(run: dict, bundle: Bundle, seg: dict | None) -> None:
    """The row's ratios: extra / segmentation and its floor, consistency's share, the fps
    of segmentation + guard (the one call, measured)."""
    total = run["stages"]["total"]["mean"]
    consistency = (run["stages"].get("consistency") or {}).get("mean")
    run["consistency_share"] = None if consistency is None else consistency / total
    run["pixel_floor"] = pixel_floor(run["k"], bundle.patch_size, bundle.frame_size,
                                     per_k=bundle.patch_batch(1))
    run["overhead"] = None if seg is None else total / seg["total"]["mean"]
    run["combined_fps"] = None if run.get("check") is None else run["check"]["fps"]


def format_run(run: dict) -> str:
    """One line per detector and K: the guard's stage means (labels given), its total
    mean/p50/p99 and fps, extra / segmentation and its floor, segmentation + guard."""
    stages = run["stages"]
    parts = " ".join(f"{s} {stages[s]['mean']:.2f}" for s in STAGES[:-1] if s in stages)
    extra = [f"{s} {v['mean']:.2f}" for s, v in stages.items() if s not in STAGES]
    total = stages["total"]
    line = (f"{run['detector']:<6} K={run['k']:<3} {parts}{' ' + ' '.join(extra) if extra else ''} | guard "
            f"mean {total['mean']:.1f} p50 {total['p50']:.1f} p99 {total['p99']:.1f} ms, {run['fps']:.1f} fps")
    if run.get("overhead") is not None:
        line += f" | {run['overhead']:.2f}x segmentation (floor {run['pixel_floor']:.2f}x)"
    if run.get("check") is not None:
        line += (f" | segmentation + guard {run['check']['stages']['total']['mean']:.1f} ms, "
                 f"{run['combined_fps']:.1f} fps")
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
                    f"{seg['total']['mean']:.1f} ms mean, p99 {seg['total']['p99']:.1f} ms, {seg['fps']:.1f} fps. "
                    "Guard: `check(frame, labels)`, the extra over the vehicle's own segmentation; "
                    "segmentation + guard: `check(frame)`.")
        rows.append("")
    rows.append("| detector | K | backend | crop ms | infer ms | consistency ms | guard mean ms | p50 | p99 "
                "| guard fps | guard / segmentation (floor) | segmentation + guard ms | segmentation + guard fps "
                "| consistency share |")
    rows.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in doc["runs"]:
        st = r["stages"]
        cell = lambda name: f"{st[name]['mean']:.2f}" if name in st else "-"  # noqa: E731
        over = (f"{r['overhead']:.2f}x ({r['pixel_floor']:.2f}x)" if r.get("overhead") is not None
                else f"- ({r['pixel_floor']:.2f}x)")
        both = r.get("check")
        both_ms = f"{both['stages']['total']['mean']:.1f}" if both else "-"
        both_fps = f"{both['fps']:.1f}" if both else "-"
        share = f"{100 * r['consistency_share']:.1f}%" if r.get("consistency_share") is not None else "-"
        rows.append(f"| {r.get('detector', 'pairs')} ({r.get('statistic', 'miou')}) | {r['k']} | "
                    f"{r['backend']} ({r['provider']}) | {cell('crop')} | {cell('infer')} | {cell('consistency')} | "
                    f"{st['total']['mean']:.1f} | {st['total']['p50']:.1f} | {st['total']['p99']:.1f} | "
                    f"{r['fps']:.1f} | {over} | {both_ms} | {both_fps} | {share} |")
    return "\n".join(rows) + "\n"
