"""Make the adversarial frames that ``edge-guard demo`` replays when PyTorch is missing.

Run once the shipped model and bundle exist (from the repository root)::

    python benchmarks/make_demo_frames.py            # -> edge_guard/assets/demo/

It renders the demo's default clip, attacks the demo's default stretch with the demo's DAG
settings on the shipped checkpoint, and stores each frame's perturbation (adversarial -
clean + 128, xz-compressed) with a manifest. `edge-guard demo` takes them like a cache hit when
its settings are these (the defaults). Check the printed size: the default 200-step attack of
6 frames makes 3.2 MB (its perturbations are noise-like, ~0.5 MB a frame); keep it under 5 MB.
"""

import argparse
import sys
import time
from pathlib import Path

from edge_guard.demo import (DEFAULT_FRAMES, DEFAULT_ITERS, DEFAULT_SEED, DEFAULT_TARGET, SHIPPED_FRAMES,
                             default_attacked, parse_range)
from edge_guard.errors import exit_status
from edge_guard.paths import DEFAULT_BUNDLE, DEFAULT_MODEL


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    p.add_argument("--out", type=Path, default=SHIPPED_FRAMES)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    p.add_argument("--attacked", type=parse_range, default=None, help="default: the demo's")
    p.add_argument("--iters", type=int, default=DEFAULT_ITERS)
    p.add_argument("--target", default=DEFAULT_TARGET, choices=("scene", "vanish"))
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    from edge_guard.calibration.demo_attack import write_demo_frames

    attacked = args.attacked or default_attacked(args.frames)
    t0 = time.perf_counter()
    frames = write_demo_frames(args.model, args.bundle, args.out, seed=args.seed, frames=args.frames,
                               attacked=attacked, iters=args.iters, target=args.target,
                               threads=args.threads)
    size = sum(f.stat().st_size for f in args.out.iterdir() if f.is_file())
    for i, rec in sorted(frames.items(), key=lambda kv: int(kv[0])):
        print(f"frame {i}: {rec['success']:.1%} on target, L-inf {rec['linf']:.0f}, "
              f"RMS {rec['l2']:.2f} (0..255), {rec['iterations']} steps")
    print(f"{args.out}: {len(frames)} frames, {size / 1e6:.2f} MB, {time.perf_counter() - t0:.0f} s"
          + ("  WARNING: over 5 MB, use fewer frames or steps" if size > 5e6 else ""))


if __name__ == "__main__":
    sys.exit(exit_status(main, "make_demo_frames.py"))
