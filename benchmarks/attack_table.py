"""Issue 4's attack table: every method x target (and the adaptive attacks), N frames each,
filled in rounds so that an interrupted run leaves every cell with about as many frames.

    python benchmarks/attack_table.py --data scenes --out eval              # attack, then print
    python benchmarks/attack_table.py --data scenes --out eval --report-only
    python benchmarks/attack_table.py --data scenes --out eval --adaptive scale,spatial --targets pure

The folders are `edge-guard evaluate`'s (OUT/attacks/<setting key>/; give the same --frame,
--patch, --b-low, --b-high, --max-iter and --attack-stop as the evaluation), so what this
fills an evaluation reuses, and the reverse. Each round raises every cell's frame count by --round;
a cell resumes where it stopped (a plain attack at any --batch, on any device).

Columns: pixel success (mean fraction of valid pixels on target after 8-bit rounding),
frames whose success reached the stop threshold (--attack-stop, 99%), L2 as RMS on [0, 1]
images, L-inf in 1/255, iterations, attack seconds per frame and image-iterations per second
(iterations / seconds per frame: at --batch 1 the attack's steps per second).
"""

import argparse
import json
import sys
from pathlib import Path

from edge_guard.calibration.attacks.run import detector_geometry, run_attacks, summarize
from edge_guard.calibration.evaluate import AttackSet, EvalSettings, attack_settings, setting_key
from edge_guard.calibration.targets import TARGETS
from edge_guard.engine_cache import sha256_file
from edge_guard.errors import exit_status
from edge_guard.paths import DEFAULT_MODEL


def cells(args) -> list:
    kinds = [k for k in args.adaptive.split(",") if k]
    out = []
    for kind in kinds:
        for target in args.targets.split(","):
            for method in args.methods.split(","):
                out.append(AttackSet(method, target, kind, args.k_attack if kind.startswith("spatial") else 0))
    return out


def label(a: AttackSet) -> str:
    kind = f"{a.kind} K_attack={a.k_attack}" if a.kind.startswith("spatial") else a.kind
    return f"| {a.method} | {a.target} | {kind} |"


def row(a: AttackSet, manifest, frames: int) -> str:
    recs = list(manifest["images"].values())[:frames] if manifest else []
    if not recs:
        return f"{label(a)} 0 | not run |" + " |" * 6
    summary = summarize(recs, manifest["settings"]["threshold"])
    mean, seconds = summary["mean"], summary["seconds_per_frame"]
    return (f"{label(a)} {len(recs)} | {mean['success']:.3f} | {summary['reached_threshold']} | "
            f"{mean['l2']:.4f} | {mean['linf'] * 255:.0f} | {mean['iterations']:.0f} | {seconds:.1f} | "
            f"{mean['iterations'] / seconds:.2f} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="data root (generated scenes or Cityscapes)")
    p.add_argument("--split", default="val")
    p.add_argument("--out", required=True, help="an `edge-guard evaluate` output folder")
    p.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    p.add_argument("--frames", type=int, default=50, help="frames per cell (default 50)")
    p.add_argument("--round", type=int, default=5, help="frames added to every cell per round")
    p.add_argument("--methods", default="dag,houdini")
    p.add_argument("--targets", default=",".join(TARGETS))
    p.add_argument("--adaptive", default="plain",
                   help="comma-separated kinds among plain, scale, spatial, spatial-pairs (default plain)")
    p.add_argument("--k-attack", type=int, default=5,
                   help="patches (spatial) or patch pairs (spatial-pairs) per step of an adaptive attack")
    p.add_argument("--frame", default="512x1024", help="HxW every frame is resized to (evaluate's --frame)")
    p.add_argument("--patch", type=int, default=None, help="patch side s (default: half the frame height)")
    p.add_argument("--b-low", type=int, default=None, help="default: frame height / 32")
    p.add_argument("--b-high", type=int, default=None, help="default: frame height / 16")
    p.add_argument("--max-iter", type=int, default=200)
    p.add_argument("--attack-stop", type=float, default=0.99,
                   help="fraction of pixels on target at which an attack stops (evaluate's --attack-stop)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--report-only", action="store_true", help="attack nothing; print the table")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)

    model = Path(args.model or DEFAULT_MODEL)
    h, w = (int(v) for v in args.frame.split("x"))
    patch, b_low, b_high = detector_geometry(h, args.patch, args.b_low, args.b_high)
    s = EvalSettings(data=args.data, out=args.out, model=str(model), frame=(h, w), patch=patch,
                     b_low=b_low, b_high=b_high, max_iter=args.max_iter, attack_stop=args.attack_stop,
                     batch=args.batch)
    s.check()  # evaluate's own checks of these settings (one line through exit_status)
    sha = sha256_file(model)
    plan = [(a, attack_settings(s, a)) for a in cells(args)]
    folders = [Path(args.out) / "attacks" / setting_key(a, st, sha) for a, st in plan]
    if not args.report_only:
        for limit in range(args.round, args.frames + args.round, args.round):
            for (a, st), folder in zip(plan, folders):
                print(f"round {min(limit, args.frames)}: {a.name} -> {folder}", file=sys.stderr, flush=True)
                run_attacks(model, args.data, args.split, st, folder, limit=min(limit, args.frames),
                            device=args.device, progress=not args.quiet)
    print(f"model {model} (sha256 {sha[:12]}), data {args.data} {args.split}, frames {h}x{w}, "
          f"up to {args.frames} per cell")
    print(f"| method | target | attack | frames | pixel success | frames >= {args.attack_stop:.0%} | L2 (RMS) "
          "| L-inf (/255) | iterations | s / frame | it/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (a, _), folder in zip(plan, folders):
        path = folder / "manifest.json"
        print(row(a, json.loads(path.read_text()) if path.is_file() else None, args.frames))
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main, "attack_table.py"))
