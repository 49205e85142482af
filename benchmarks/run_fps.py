"""Frames per second and latency of `edge-guard run` on a generated 512x1024 driving clip.

Renders a clip with the street generator (deterministic by --seed), writes it as a lossless
video, then for every K runs the stream runner on it exactly as
``edge-guard run --source clip.avi --k K --events events.jsonl`` does (every frame of a file
is checked in order, decoding overlapped with checking) and prints the summary figures:
checked frames per second, latency capture-to-verdict p50/p99 and the check time p50/p99.
The bundle's detector runs (K patches for "frame", K pairs for "pairs"); when the guard
segments the frame (a full-frame graph in the bundle), the check includes it: the figures
are then those of segmentation + guard, the vehicle's one call.

    python benchmarks/run_fps.py                          # 60 frames, K = 1 5 10, shipped bundle
    python benchmarks/run_fps.py --frames 120 --k 5 --backend onnxruntime --json run_fps.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2

from edge_guard.errors import exit_status
from edge_guard.events import EventWriter
from edge_guard.guard import Guard
from edge_guard.sources import parse_source
from edge_guard.stream import Stream


def write_clip(path: Path, seed: int, frames: int, size) -> Path:
    from edge_guard.scenes import render_clip

    h, w = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 15.0, (w, h))
    for image, _ in render_clip(seed, frames, (h, w)):
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default=None, help="bundle folder (default: the shipped bundle)")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--k", "--pairs", dest="pairs", type=int, nargs="+", default=[1, 5, 10],
                        help="K values: patches (frame detector) or pairs (pairs detector)")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", type=int, nargs=2, default=(512, 1024), metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_clip(Path(tmp) / "clip.avi", args.seed, args.frames, args.size)
        print(f"clip: {args.frames} generated frames {args.size[0]}x{args.size[1]} (seed {args.seed}), FFV1")
        for k in args.pairs:
            events = Path(tmp) / f"events_k{k}.jsonl"
            with Guard.load(args.bundle, backend=args.backend, pairs=k, threads=args.threads) as guard:
                writer = EventWriter(events)
                try:
                    summary = Stream(guard, parse_source(source=str(clip)), events=writer).run()
                finally:
                    writer.close()
                row = {"detector": guard.method, "statistic": guard.bundle.statistic,
                       "segments": guard.segmenter is not None, "k": k,
                       "backend": guard.backend, "provider": guard.provider,
                       "frames_checked": summary["frames_checked"], "fps_checked": summary["fps_checked"],
                       "latency_ms": summary["latency_ms"], "check_ms": summary["check_ms"],
                       "frames_flagged": summary["frames_flagged"]}
            rows.append(row)
            what = "segmentation + guard" if row["segments"] else "guard"
            print(f"{row['detector']} K={k:<3} {row['backend']} ({row['provider']}), {what}: "
                  f"{row['fps_checked']:.1f} frames/s, "
                  f"latency p50 {row['latency_ms']['p50']:.1f} p99 {row['latency_ms']['p99']:.1f} ms, "
                  f"check p50 {row['check_ms']['p50']:.1f} p99 {row['check_ms']['p99']:.1f} ms, "
                  f"{row['frames_flagged']}/{row['frames_checked']} benign frames flagged", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main, "run_fps.py"))
