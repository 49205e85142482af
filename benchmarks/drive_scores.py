"""Score benign generated drives frame by frame with a bundle's guard: the data the stream
alarms are calibrated and judged on (issue 25).

Each drive is rendered in memory (edge_guard.scenes.render_clip, the seeds `edge-guard
generate --clips` uses for --split/--seed, so drive i here is clip i there) and every frame is
checked in order. One JSON line per drive is appended to --out as it finishes (a killed run
resumes where it stopped): {"split", "seed", "drive", "frames", "k", "scores" [frames],
"patch_scores" [frames][K], "seconds"}. The patch draw is seeded per drive, so a drive's
scores do not depend on which drives ran before it.

    python benchmarks/drive_scores.py --split val --seed 31 --drives 60 --out cal.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from edge_guard.calibration.alarm_calibrate import drive_verdicts
from edge_guard.calibration.data.layout import frame_seed  # the generator's own drive seeds
from edge_guard.errors import UserError, exit_status
from edge_guard.guard import Guard
from edge_guard.paths import DEFAULT_BUNDLE
from edge_guard.scenes import render_clip


def score_drive(guard: Guard, scene_seed: int, length: int, size) -> dict:
    """Render one drive and check its frames in order: per-frame and per-patch scores."""
    scores, patches = [], []
    for v in drive_verdicts(guard, (image for image, _ in render_clip(scene_seed, length, size)),
                            scene_seed, rgb=True):
        scores.append(round(float(v.score), 6))
        patches.append([round(float(s), 6) for s in v.scores])
    return {"scores": scores, "patch_scores": patches}


def done_drives(out: Path) -> set:
    if not out.exists():
        return set()
    return {json.loads(line)["drive"] for line in out.read_text().splitlines() if line.strip()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default=str(DEFAULT_BUNDLE))
    p.add_argument("--split", default="val")
    p.add_argument("--seed", type=int, default=31)
    p.add_argument("--drives", type=int, default=20)
    p.add_argument("--first", type=int, default=0, help="first drive index (default: 0)")
    p.add_argument("--length", type=int, default=90, help="frames per drive (15 frames/s)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", required=True, help="JSON Lines file, appended to")
    args = p.parse_args(argv)

    def run():
        out = Path(args.out)
        done = done_drives(out)
        with Guard.load(args.bundle, backend="onnxruntime", threads=args.threads) as guard:
            size = tuple(guard.bundle.frame_size)
            for drive in range(args.first, args.first + args.drives):
                if drive in done:
                    continue
                t0 = time.perf_counter()
                rec = score_drive(guard, frame_seed(args.seed, args.split, drive), args.length, size)
                rec = {"split": args.split, "seed": args.seed, "drive": drive, "frames": args.length,
                       "k": guard.k, **rec, "seconds": round(time.perf_counter() - t0, 2)}
                with out.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                low = min(rec["scores"])
                print(f"drive {drive}: {args.length} frames in {rec['seconds']:.0f} s, lowest {low:.3f}",
                      flush=True)
        return 0

    if args.drives < 1 or args.length < 1:
        raise SystemExit("--drives and --length must be at least 1")
    return exit_status(run, "drive_scores.py")


if __name__ == "__main__":
    sys.exit(main())
