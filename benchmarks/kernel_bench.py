"""Time of the spatial-consistency scoring: GPU kernels vs their memory-bandwidth bound vs NumPy.

Two kernels, one table each (``--kernels``):
- ``overlap`` (pairs): K pairs of s x s int32 label patches (the engine's output); NumPy is
  edge_guard.consistency.pair_mious + mean_score, the CUDA path memset + overlap_confusion +
  confusion_score + mean_score on one stream;
- ``frame`` (patch vs frame): K s x s int32 label patches against the frame's int32 labels
  (already on the GPU, as the full-frame engine leaves them); NumPy is frame_scores +
  mean_score, the CUDA path memset + frame_confusion + confusion_score + mean_score.
Both score the paper's mIoU. The GPU path is timed with CUDA events and compared with the
bound: the labels it must read divided by the device's peak memory bandwidth (2 x memory
clock x bus width, as CUDA's bandwidthTest computes it). Without a GPU the GPU columns say
"pending". Labels look like a segmentation (constant blocks of random classes) on a
1024x2048 frame; pairs are drawn as in the paper (b = [32, 64)), patches uniformly.

    python benchmarks/kernel_bench.py                       # K = 1 5 10 50, s = 512, C = 19
    python benchmarks/kernel_bench.py --json kernel_bench.json --runs 50 --kernels frame
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from edge_guard.consistency import frame_scores, mean_score, pair_mious
from edge_guard.errors import exit_status
from edge_guard.patches import overlap_boxes, sample_pairs, sample_patches

FRAME = (1024, 2048)


def labels_like_segmentation(n: int, s: int, c: int, rng) -> np.ndarray:
    block = 32
    base = rng.integers(0, c, (n, s // block + 1, s // block + 1))
    return np.repeat(np.repeat(base, block, 1), block, 2)[:, :s, :s].astype(np.int32)


def bytes_read(pairs: np.ndarray, s: int, itemsize: int = 4) -> int:
    """Label bytes the overlap kernel reads: both patches' overlap, once."""
    boxes = overlap_boxes(pairs, s)
    return int(2 * itemsize * (boxes[:, 4].astype(np.int64) * boxes[:, 5]).sum())


def time_cpu(score, runs) -> np.ndarray:
    """ms of ``score()`` (the NumPy path, returning the K scores) and their mean, per run."""
    score()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        mean_score(score())
        times.append((time.perf_counter() - t0) * 1e3)
    return np.asarray(times)


class Case:
    """One kernel at one K: its inputs, its NumPy scores and the label bytes it reads."""

    def __init__(self, kernel: str, k: int, s: int, c: int, rng):
        self.kernel, self.k, self.s, self.c = kernel, k, s, c
        if kernel == "overlap":
            self.labels = labels_like_segmentation(2 * k, s, c, rng)
            self.rows = sample_pairs(*FRAME, s, 32, 64, k, rng)
            self.bytes = bytes_read(self.rows, s)
            self.frame = None
        else:
            self.labels = labels_like_segmentation(k, s, c, rng)
            self.frame = labels_like_segmentation(1, max(FRAME), c, rng)[0, :FRAME[0], :FRAME[1]].copy()
            self.rows = sample_patches(*FRAME, s, k, rng)
            self.bytes = int(2 * 4 * k * s * s)  # every patch pixel and the frame's under it

    def numpy(self) -> np.ndarray:
        if self.kernel == "overlap":
            return pair_mious(self.labels, self.rows, self.c)
        return frame_scores(self.labels, self.frame, self.rows, self.c)


class GpuTimer:
    """The kernel paths on device 0, timed with CUDA events."""

    def __init__(self, c: int):
        from edge_guard.kernels import device
        from edge_guard.kernels.ops import FrameConfusionKernel, OverlapConfusionKernel

        self.device = device
        drv = device.driver()
        self.drv = drv
        device.context(0)
        self.name = drv.cuDeviceGetName(256, device.ensure_current(0))[1].split(b"\0")[0].decode()
        self.arch = device.device_arch(0)
        self.sm_count = device.attribute("MULTIPROCESSOR_COUNT")
        try:  # kHz and bits; some drivers report 0 for integrated memory
            clock_khz = device.attribute("MEMORY_CLOCK_RATE")
            bus_bits = device.attribute("GLOBAL_MEMORY_BUS_WIDTH")
            self.peak_bw = 2.0 * clock_khz * 1e3 * bus_bits / 8 or None
        except Exception:
            self.peak_bw = None
        self.kernels = {"overlap": OverlapConfusionKernel(c, "int32"), "frame": FrameConfusionKernel(c, "int32")}
        self.stream = device.new_stream()
        self.events = [device.check(drv.cuEventCreate(0), "cuEventCreate") for _ in range(2)]

    def time(self, case: Case, runs) -> tuple[np.ndarray, np.ndarray]:
        dev = self.device
        k, s, kernel = case.k, case.s, self.kernels[case.kernel]
        buf = dev.DeviceBuffer.from_array(case.labels)
        rows_buf = dev.DeviceBuffer.from_array(np.ascontiguousarray(case.rows, np.int32))
        out = dev.DeviceBuffer(4 * (k + 1))
        if case.kernel == "overlap":
            run = lambda: kernel(buf.ptr, rows_buf.ptr, s, out.ptr, self.stream, k=k)  # noqa: E731
        else:
            frame_buf = dev.DeviceBuffer.from_array(case.frame)
            h, w = case.frame.shape
            run = lambda: kernel(buf.ptr, frame_buf.ptr, h, w, rows_buf.ptr, s, out.ptr,  # noqa: E731
                                 self.stream, k=k)
        for _ in range(3):
            run()
        dev.synchronize(self.stream)
        times = []
        start, end = self.events
        for _ in range(runs):
            dev.check(self.drv.cuEventRecord(start, self.stream), "cuEventRecord")
            run()
            dev.check(self.drv.cuEventRecord(end, self.stream), "cuEventRecord")
            dev.check(self.drv.cuEventSynchronize(end), "cuEventSynchronize")
            times.append(dev.check(self.drv.cuEventElapsedTime(start, end), "cuEventElapsedTime"))
        values = out.to_numpy((k + 1,), np.float32, self.stream)
        return np.asarray(times, dtype=np.float64), values


TITLES = {"overlap": "overlap confusion + mIoU (pairs)", "frame": "frame confusion + mIoU (patch vs frame)"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, nargs="+", default=[1, 5, 10, 50], help="pair / patch counts K")
    p.add_argument("--size", type=int, default=512, help="patch size s")
    p.add_argument("--classes", type=int, default=19, help="number of classes C")
    p.add_argument("--runs", type=int, default=20, help="timed runs per K")
    p.add_argument("--kernels", nargs="+", choices=tuple(TITLES), default=list(TITLES),
                   help="which kernels to time (default: both)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    args = p.parse_args(argv)

    from edge_guard.kernels.device import gpu_count

    gpu = None
    gpu_note = "pending: no CUDA device on this machine"
    if gpu_count() > 0:
        gpu = GpuTimer(args.classes)
        gpu_note = f"{gpu.name} ({gpu.arch}, {gpu.sm_count} SMs)"
    rng = np.random.default_rng(args.seed)
    rows = []
    for kernel in args.kernels:
        for k in args.k:
            case = Case(kernel, k, args.size, args.classes, rng)
            cpu = time_cpu(case.numpy, args.runs)
            row = {"kernel": kernel, "k": k, "bytes_read": case.bytes,
                   "cpu_ms_median": float(np.median(cpu)), "cpu_ms_p90": float(np.percentile(cpu, 90)),
                   "cpu_gb_per_s": case.bytes / (np.median(cpu) * 1e-3) / 1e9}
            if gpu is not None:
                times, values = gpu.time(case, args.runs)
                expected = case.numpy()
                row.update({"gpu_ms_median": float(np.median(times)),
                            "gpu_ms_p90": float(np.percentile(times, 90)),
                            "gpu_gb_per_s": case.bytes / (np.median(times) * 1e-3) / 1e9,
                            "gpu_equals_numpy": bool(np.array_equal(values[:k], expected)
                                                     and values[k] == np.float32(mean_score(expected)))})
                if gpu.peak_bw:
                    bound = case.bytes / gpu.peak_bw * 1e3
                    row.update({"bound_ms": bound, "fraction_of_bound": bound / row["gpu_ms_median"]})
            rows.append(row)

    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"NumPy {np.__version__} (single-threaded)")
    print(f"GPU: {gpu_note}" + (f", peak {gpu.peak_bw / 1e9:.0f} GB/s" if gpu and gpu.peak_bw else ""))
    for kernel in args.kernels:
        print(f"\n{TITLES[kernel]}, s={args.size}, C={args.classes}, int32 labels, {args.runs} runs, "
              f"median (p90)")
        head = f"{'K':>4} {'MB read':>8} {'NumPy ms':>16} {'GPU ms':>16} {'bound ms':>9} {'of bound':>8}"
        print(head)
        print("-" * len(head))
        for r in (r for r in rows if r["kernel"] == kernel):
            cpu = f"{r['cpu_ms_median']:.2f} ({r['cpu_ms_p90']:.2f})"
            gpu_ms = (f"{r['gpu_ms_median']:.3f} ({r['gpu_ms_p90']:.3f})" if "gpu_ms_median" in r
                      else "pending")
            bound = f"{r['bound_ms']:.3f}" if "bound_ms" in r else "-"
            frac = f"{100 * r['fraction_of_bound']:.0f}%" if "fraction_of_bound" in r else "-"
            print(f"{r['k']:>4} {r['bytes_read'] / 1e6:>8.1f} {cpu:>16} {gpu_ms:>16} {bound:>9} {frac:>8}")
    if gpu is not None and not all(r["gpu_equals_numpy"] for r in rows):
        print("WARNING: GPU results differ from the NumPy reference", file=sys.stderr)
    if args.json:
        report = {"size": args.size, "classes": args.classes, "runs": args.runs, "frame": list(FRAME),
                  "cpu": {"processor": platform.processor() or platform.machine(),
                          "cores": os.cpu_count(), "numpy": np.__version__},
                  "gpu": None if gpu is None else {"name": gpu.name, "arch": gpu.arch,
                                                   "sm_count": gpu.sm_count,
                                                   "peak_bytes_per_s": gpu.peak_bw},
                  "gpu_status": gpu_note, "rows": rows,
                  "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main, "kernel_bench.py"))
