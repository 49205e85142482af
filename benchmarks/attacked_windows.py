"""Attacked windows in generated drives: an attack switched on at a known frame for a
stretch of frames, every frame checked by the bundle's guard (issue 25's detection delay).

Per drive (the clip `edge-guard generate --clips` makes for --split/--seed, rendered in
memory, --length frames at 15 frames/s) the frames onset .. onset + window - 1 are attacked
with DAG toward the demo's ``scene`` target (the drive's street as another, empty street: the
same target for the whole stretch), white-box, 8-bit, unbounded, in one of two ways:

- ``universal``: one perturbation, made on the onset frame (--first-iters steps), added to
  every frame of the window as it is: an attacker who owns the feed but not the time to
  attack each frame; it fits the later frames less as the scene moves;
- ``per-frame``: each frame attacked anew, starting from the previous frame's perturbation
  (--first-iters steps on the onset frame, --iters on each later one): an attacker who keeps
  up with the drive at a few gradient steps a frame.

Both the benign and the attacked frames are checked in order with the patch draw seeded per
drive. One JSON line per (drive, mode) is appended to --out: {"drive", "split", "seed",
"mode", "onset", "window", "benign" [length], "attacked" [window] (scores of the attacked
frames), "success" [window] (fraction of pixels on target), "linf", "l2" (0..255 levels, per
frame), "seconds"}. A window of W <= window frames is the benign drive with frames onset ..
onset + W - 1 replaced by the first W attacked scores (calibration.alarm.window_scores).

    python benchmarks/attacked_windows.py --split test --seed 32 --drives 4 --mode per-frame \\
        --out windows.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from edge_guard.calibration.alarm_calibrate import drive_verdicts
from edge_guard.calibration.data.layout import frame_seed
from edge_guard.errors import UserError, exit_status
from edge_guard.guard import Guard
from edge_guard.paths import DEFAULT_BUNDLE, DEFAULT_MODEL
from edge_guard.scenes import render_clip

STEP = 1.0 / 255  # the demo's DAG step


def _scores(guard, frames, scene_seed) -> list:
    return [round(float(v.score), 6) for v in drive_verdicts(guard, frames, scene_seed, rgb=True)]


def attack_window(segmenter, clip, seed, onset, window, mode, first_iters, iters):
    """[(adversarial RGB uint8, record)] for frames onset .. onset + window - 1 of ``clip``."""
    import torch

    from edge_guard.calibration.attacks import dag
    from edge_guard.calibration.demo_attack import demo_target

    def tensor(image):
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div(255)

    goal = demo_target("scene", clip[onset][1], seed)
    target = torch.from_numpy(goal.astype(np.int64))[None]
    valid = goal != 255
    out, delta = [], None
    for i in range(onset, onset + window):
        clean = clip[i][0].astype(np.int16)
        if delta is None or mode == "per-frame":
            start = clean if delta is None else np.clip(clean + delta, 0, 255)
            steps = first_iters if delta is None else iters
            res = dag(segmenter, tensor(start.astype(np.uint8)), target, gamma=STEP, max_iter=steps,
                      quantize=True)
            adv = (res.images[0].permute(1, 2, 0).numpy() * 255).round().astype(np.int16)
            delta = adv - clean
        adv = np.clip(clean + delta, 0, 255).astype(np.uint8)
        with torch.no_grad():
            pred = segmenter(tensor(adv)).max(1).indices[0].numpy()
        d = adv.astype(np.float64) - clean
        out.append((adv, {"success": float((pred[valid] == goal[valid]).mean()),
                          "linf": float(np.abs(d).max()), "l2": float(np.sqrt((d ** 2).mean()))}))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default=str(DEFAULT_BUNDLE))
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="the model attacked (the bundle's)")
    p.add_argument("--split", default="test")
    p.add_argument("--seed", type=int, default=32)
    p.add_argument("--drives", type=int, default=4)
    p.add_argument("--first", type=int, default=0, help="first drive index (default: 0)")
    p.add_argument("--length", type=int, default=130, help="frames per drive (default: 130)")
    p.add_argument("--onset", type=int, default=20, help="first attacked frame (default: 20)")
    p.add_argument("--window", type=int, default=100, help="attacked frames (default: 100)")
    p.add_argument("--mode", choices=("universal", "per-frame"), default="per-frame")
    p.add_argument("--first-iters", type=int, default=100, help="DAG steps on the onset frame")
    p.add_argument("--iters", type=int, default=10, help="per-frame: DAG steps on each later frame")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", required=True, help="JSON Lines file, appended to")
    args = p.parse_args(argv)

    def run():
        import torch

        from edge_guard.calibration.attacks.run import load_attack_model

        if not 0 <= args.onset < args.onset + args.window <= args.length:
            raise UserError(f"the window {args.onset}..{args.onset + args.window - 1} must lie inside "
                            f"the drive's {args.length} frames")
        if args.threads:
            torch.set_num_threads(args.threads)
        out = Path(args.out)
        done = set()
        if out.exists():
            done = {(r["drive"], r["mode"]) for r in map(json.loads, out.read_text().splitlines())}
        segmenter, _ = load_attack_model(args.model)
        with Guard.load(args.bundle, backend="onnxruntime", threads=args.threads) as guard:
            size = tuple(guard.bundle.frame_size)
            for drive in range(args.first, args.first + args.drives):
                if (drive, args.mode) in done:
                    continue
                t0 = time.perf_counter()
                seed = int(frame_seed(args.seed, args.split, drive))
                clip = render_clip(seed, args.length, size)
                benign = _scores(guard, [im for im, _ in clip], seed)
                attacked = attack_window(segmenter, clip, seed, args.onset, args.window, args.mode,
                                         args.first_iters, args.iters)
                frames = [im for im, _ in clip]
                frames[args.onset:args.onset + args.window] = [a for a, _ in attacked]
                scores = _scores(guard, frames, seed)[args.onset:args.onset + args.window]
                recs = [r for _, r in attacked]
                rec = {"drive": drive, "split": args.split, "seed": args.seed, "mode": args.mode,
                       "onset": args.onset, "window": args.window, "first_iters": args.first_iters,
                       "iters": args.iters, "benign": benign, "attacked": scores,
                       **{k: [round(r[k], 4) for r in recs] for k in ("success", "linf", "l2")},
                       "seconds": round(time.perf_counter() - t0, 1)}
                with out.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                print(f"drive {drive} {args.mode}: attacked scores {min(scores):.3f}..{max(scores):.3f}, "
                      f"success {np.mean(rec['success']):.0%}, {rec['seconds']:.0f} s", flush=True)
        return 0

    return exit_status(run, "attacked_windows.py")


if __name__ == "__main__":
    sys.exit(main())
