"""Time of the spatial-consistency scoring: GPU kernel vs its memory-bandwidth bound vs NumPy.

For K pairs of s x s int32 label patches (the engine's output) it times
- NumPy (the runtime's CPU path): edge_guard.consistency.pair_mious + mean_score;
- the CUDA path (memset + overlap_confusion + pair_miou + mean_score on one stream, timed
  with CUDA events), and compares it with the bound: the overlap labels it must read divided
  by the device's peak memory bandwidth (2 x memory clock x bus width, as CUDA's
  bandwidthTest computes it).
Without a GPU the GPU columns say "pending". Labels look like a segmentation (constant
blocks of random classes); pairs are drawn as in the paper (1024x2048 frame, b = [32, 64)).

    python benchmarks/kernel_bench.py                       # K = 1 5 10 50, s = 512, C = 19
    python benchmarks/kernel_bench.py --json kernel_bench.json --runs 50
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from edge_guard.consistency import mean_score, pair_mious
from edge_guard.errors import exit_status
from edge_guard.patches import overlap_boxes, sample_pairs


def labels_like_segmentation(n: int, s: int, c: int, rng) -> np.ndarray:
    block = 32
    base = rng.integers(0, c, (n, s // block + 1, s // block + 1))
    return np.repeat(np.repeat(base, block, 1), block, 2)[:, :s, :s].astype(np.int32)


def bytes_read(pairs: np.ndarray, s: int, itemsize: int = 4) -> int:
    """Label bytes the confusion kernel reads: both patches' overlap, once."""
    boxes = overlap_boxes(pairs, s)
    return int(2 * itemsize * (boxes[:, 4].astype(np.int64) * boxes[:, 5]).sum())


def time_cpu(labels, pairs, c, runs) -> np.ndarray:
    pair_mious(labels, pairs, c)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        mean_score(pair_mious(labels, pairs, c))
        times.append((time.perf_counter() - t0) * 1e3)
    return np.asarray(times)


class GpuTimer:
    """The kernel path on device 0, timed with CUDA events."""

    def __init__(self, c: int):
        from edge_guard.kernels import device
        from edge_guard.kernels.ops import OverlapConfusionKernel

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
        self.kernel = OverlapConfusionKernel(c, "int32")
        self.stream = device.new_stream()
        self.events = [device.check(drv.cuEventCreate(0), "cuEventCreate") for _ in range(2)]

    def time(self, labels, pairs, s, runs) -> tuple[np.ndarray, np.ndarray]:
        dev = self.device
        k = len(pairs)
        buf = dev.DeviceBuffer.from_array(labels)
        pairs_buf = dev.DeviceBuffer.from_array(np.ascontiguousarray(pairs, np.int32))
        out = dev.DeviceBuffer(4 * (k + 1))
        run = lambda: self.kernel(buf.ptr, pairs_buf.ptr, s, out.ptr, self.stream, k=k)  # noqa: E731
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, nargs="+", default=[1, 5, 10, 50], help="pair counts K")
    p.add_argument("--size", type=int, default=512, help="patch size s")
    p.add_argument("--classes", type=int, default=19, help="number of classes C")
    p.add_argument("--runs", type=int, default=20, help="timed runs per K")
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
    for k in args.k:
        labels = labels_like_segmentation(2 * k, args.size, args.classes, rng)
        pairs = sample_pairs(1024, 2048, args.size, 32, 64, k, rng)
        nbytes = bytes_read(pairs, args.size)
        cpu = time_cpu(labels, pairs, args.classes, args.runs)
        row = {"k": k, "bytes_read": nbytes,
               "cpu_ms_median": float(np.median(cpu)), "cpu_ms_p90": float(np.percentile(cpu, 90)),
               "cpu_gb_per_s": nbytes / (np.median(cpu) * 1e-3) / 1e9}
        if gpu is not None:
            times, values = gpu.time(labels, pairs, args.size, args.runs)
            expected = pair_mious(labels, pairs, args.classes)
            row.update({"gpu_ms_median": float(np.median(times)),
                        "gpu_ms_p90": float(np.percentile(times, 90)),
                        "gpu_gb_per_s": nbytes / (np.median(times) * 1e-3) / 1e9,
                        "gpu_equals_numpy": bool(np.array_equal(values[:k], expected)
                                                 and values[k] == np.float32(mean_score(expected)))})
            if gpu.peak_bw:
                bound = nbytes / gpu.peak_bw * 1e3
                row.update({"bound_ms": bound, "fraction_of_bound": bound / row["gpu_ms_median"]})
        rows.append(row)

    print(f"overlap confusion + mIoU, s={args.size}, C={args.classes}, int32 labels, "
          f"{args.runs} runs, median (p90)")
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"NumPy {np.__version__} (single-threaded)")
    print(f"GPU: {gpu_note}" + (f", peak {gpu.peak_bw / 1e9:.0f} GB/s" if gpu and gpu.peak_bw else ""))
    head = f"{'K':>4} {'MB read':>8} {'NumPy ms':>16} {'GPU ms':>16} {'bound ms':>9} {'of bound':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        cpu = f"{r['cpu_ms_median']:.2f} ({r['cpu_ms_p90']:.2f})"
        gpu_ms = (f"{r['gpu_ms_median']:.3f} ({r['gpu_ms_p90']:.3f})" if "gpu_ms_median" in r
                  else "pending")
        bound = f"{r['bound_ms']:.3f}" if "bound_ms" in r else "-"
        frac = f"{100 * r['fraction_of_bound']:.0f}%" if "fraction_of_bound" in r else "-"
        print(f"{r['k']:>4} {r['bytes_read'] / 1e6:>8.1f} {cpu:>16} {gpu_ms:>16} {bound:>9} {frac:>8}")
    if gpu is not None and not all(r["gpu_equals_numpy"] for r in rows):
        print("WARNING: GPU results differ from the NumPy reference", file=sys.stderr)
    if args.json:
        report = {"size": args.size, "classes": args.classes, "runs": args.runs,
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
