"""`edge-guard bench`: the guard's time per stage and detector, against plain segmentation."""

import argparse
import json
from pathlib import Path

from edge_guard.cli._args import (K_HELP, at_most, bundle_folder, existing_path, frame_size,
                                  non_negative_int, thread_count)
from edge_guard.limits import MAX_ITERS, MAX_PAIRS
from edge_guard.writable import check_file

#: K values one bench run may time.
MAX_K_VALUES = 64

EXAMPLE = """\
examples:
  edge-guard bench                                   # shipped bundle, both detectors, K=1,5,10,50
  edge-guard bench --detector frame --k 5 --iters 200 --threads 2 --json bench.json
  edge-guard bench --bundle bundle-drn --frame 1024x2048 --k 5 --backend tensorrt

The vehicle segments every frame anyway; the guard's cost is what it adds. For each
detector (--detector: frame, pairs or both) and each K: warm-up frames, then N checks of
one street frame (the camera frame is --frame, resized by the guard to the bundle's frame
size), timed twice:
  guard                  check(frame, labels): the frame's labels given, so the vehicle's
                         own segmentation is not counted; the mean of each stage (resize,
                         sample, crop, infer, consistency), the total's mean, p50 and p99
                         in ms, and frames per second;
  segmentation + guard   check(frame): the one call that segments the frame and checks it.
Plain segmentation of the whole frame (the bundle's full-frame graph: model.frame_graph in
guard.json, or segment.onnx in export.json, written by `edge-guard export --frame HxW` and
by `calibrate`) is timed in the same run on the same backend, so the ratio guard /
segmentation is measured under the same load. Its floor is the pixel ratio: K s^2 / (H W)
for the frame detector, 2K s^2 / (H W) for pairs (1.25x at K=5 for the shipped bundle and
for the paper's s=512 on 1024x2048). Also printed: peak host memory and GPU memory in use
(--json adds every stage's p50/p99).

--bundle may also be an uncalibrated export folder (model.onnx + export.json): it is timed
with the paper's displacements scaled to its patch size; no threshold is needed to time.
The detector other than the bundle's is timed the same way, with the bundle's statistic.
Without a full-frame graph only the pairs detector is timed, without the baseline.
Speed is measured, never asserted: run on an idle machine, and compare ratios across
machines rather than milliseconds.
"""


def pair_list(text: str) -> list[int]:
    """'1,5,10' -> [1, 5, 10]."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of K values: write e.g. 1,5,10,50") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: K values (patches or pairs) must be positive integers")
    if max(values) > MAX_PAIRS:
        raise argparse.ArgumentTypeError(f"{text!r}: at most K={MAX_PAIRS} patches or pairs per frame")
    if len(values) > MAX_K_VALUES:
        raise argparse.ArgumentTypeError(f"{text!r}: at most {MAX_K_VALUES} K values in one run")
    return values


def register(sub) -> None:
    from edge_guard.backends import BACKENDS

    p = sub.add_parser("bench", help="time the guard per stage and against plain segmentation",
                       description=__doc__, epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=bundle_folder, default=None, metavar="DIR",
                   help="bundle or export folder (default: the shipped bundle)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="inference backend (default: auto, the fastest available; the choice is printed)")
    p.add_argument("--frame", type=frame_size, default=None, metavar="HxW",
                   help="camera frame size (default: the bundle's frame size)")
    p.add_argument("--detector", choices=("frame", "pairs", "both"), default="both",
                   help="the detector(s) to time (default: both; the frame detector needs a full-frame graph)")
    p.add_argument("--k", "--pairs", dest="pairs", type=pair_list, default=[1, 5, 10, 50], metavar="K,K,...",
                   help=f"K values to time: {K_HELP} per frame (default: 1,5,10,50)")
    p.add_argument("--iters", type=at_most(MAX_ITERS, "timed frames"), default=50, metavar="N",
                   help="timed frames per K (default: 50)")
    p.add_argument("--warmup", type=at_most(MAX_ITERS, "warm-up frames", minimum=0), default=5, metavar="N",
                   help="untimed frames first (default: 5)")
    p.add_argument("--threads", type=thread_count, default=None,
                   help="CPU threads of the backend, at most 4 per usable core (default: the backend's "
                        "choice, all cores)")
    p.add_argument("--precision", choices=("fp16", "int8", "fp32"), default=None,
                   help="TensorRT engine to run (default: the first valid of fp16, int8, fp32)")
    p.add_argument("--segment-engine", type=existing_path, default=None, metavar="ENGINE",
                   help="a TensorRT engine of the full-frame graph (e.g. built by trtexec) to segment with, "
                        "for the baseline and the guards (default: the graph opened as the guard opens it)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the patch draw (default: 0)")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="write every figure to FILE")
    p.set_defaults(func=run)


def run(args) -> int:
    from edge_guard.bench import run_bench

    if args.json:
        check_file(args.json, "--json")
    result = run_bench(args.bundle, backend=args.backend, frame=args.frame, pairs=args.pairs,
                       iters=args.iters, warmup=args.warmup, threads=args.threads,
                       precision=args.precision, segment_engine=args.segment_engine, seed=args.seed,
                       detectors=args.detector, log=lambda line: print(line, flush=True))
    doc = result.as_dict()
    first = doc["runs"][0]
    print(f"# backend {first['backend']} ({first['provider']}); choice: {first['selection']}")
    print(f"# peak host memory {max(r['host_peak_rss_mb'] for r in doc['runs']):.0f} MiB"
          + ("" if first["gpu_memory_mb"] is None else
             f", GPU memory in use {max(r['gpu_memory_mb'] for r in doc['runs']):.0f} MiB"))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0
