"""Latency of edge_small under ONNX Runtime on the CPU, and the size of every model.

Exports edge_small (random weights: latency does not depend on them) to ONNX opset 17, times batch-1
inference at --size with 1 and 2 intra-op threads, and prints parameters / GFLOPs of
edge_small, drn_d_22 and dla34 at the same size.

    python benchmarks/model_latency.py                      # 512x512, 1 and 2 threads
    python benchmarks/model_latency.py --width 96 --runs 100
"""

import argparse
import inspect
import warnings
import os
import sys
import tempfile
import time

import numpy as np
import torch

from edge_guard.calibration.models import create_model, list_models
from edge_guard.calibration.models.complexity import count_macs, count_parameters
from edge_guard.errors import exit_status


def export_onnx(net: torch.nn.Module, path: str, size) -> None:
    net.eval()
    x = torch.rand(1, 3, *size)
    with warnings.catch_warnings(), torch.no_grad():
        # The legacy (TorchScript) exporter warns that it is deprecated; it exists on every
        # torch we support and gives a plain opset-17 graph.
        warnings.simplefilter("ignore", DeprecationWarning)
        # torch >= 2.5 defaults to the torch.export-based exporter; ask for the legacy one
        # where the switch exists (older torch has only the legacy exporter).
        legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
        torch.onnx.export(net, (x,), path, opset_version=17, input_names=["input"],
                          output_names=["logits"], **legacy)


def time_session(path: str, size, threads: int, runs: int, warmup: int) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, *size), dtype=np.float32)
    for _ in range(warmup):
        sess.run(None, {"input": x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {"input": x})
        times.append((time.perf_counter() - t0) * 1e3)
    return np.asarray(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--threads", type=int, nargs="+", default=(1, 2))
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--width", type=int, default=None, help="edge_small width (default: the model's)")
    parser.add_argument("--skip-sizes", action="store_true", help="time only, do not count all models")
    args = parser.parse_args(argv)
    size = tuple(args.size)
    torch.manual_seed(0)
    kwargs = {} if args.width is None else {"width": args.width}
    net = create_model("edge_small", **kwargs)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "edge_small.onnx")
        export_onnx(net, path, size)
        print(f"edge_small {kwargs or '(defaults)'} ONNX opset 17, {os.path.getsize(path) / 1e6:.2f} MB, "
              f"input 1x3x{size[0]}x{size[1]}, onnxruntime CPU, {args.runs} runs after {args.warmup} warm-up")
        for threads in args.threads:
            t = time_session(path, size, threads, args.runs, args.warmup)
            print(f"  intra_op_num_threads={threads}: mean {t.mean():.1f} ms  p50 {np.percentile(t, 50):.1f} ms  "
                  f"p99 {np.percentile(t, 99):.1f} ms")

    if not args.skip_sizes:
        print(f"\nmodel        params        GMACs  GFLOPs  (at {size[0]}x{size[1]}, 19 classes; "
              "convs only, GFLOPs = 2 x GMACs)")
        for name in list_models():
            m = create_model(name, **(kwargs if name == "edge_small" else {}))
            macs = count_macs(m, size)
            print(f"{name:<12} {count_parameters(m):>10,}  {macs / 1e9:>8.2f}  {2 * macs / 1e9:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main, "model_latency.py"))
