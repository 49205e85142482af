"""Issue 4's attack table: every method x target (and the adaptive attacks), N frames each,
filled in rounds so that an interrupted run leaves every cell with about as many frames.

    python benchmarks/attack_table.py --data scenes --out eval              # attack, then print
    python benchmarks/attack_table.py --data scenes --out eval --report-only
    python benchmarks/attack_table.py --data scenes --out eval --adaptive scale,spatial --targets pure
    python benchmarks/attack_table.py --data scenes --out eval --adaptive frame,frame-agree --targets pure

The folders are `edge-guard evaluate`'s (OUT/attacks/<setting key>/; give the same --frame,
--patch, --b-low, --b-high, --max-iter and --attack-stop as the evaluation, and for adaptive
cells the same --batch), so what this fills an evaluation reuses, and the reverse. Each round
raises every cell's frame count by --round; a cell resumes where it stopped (a plain attack at
any --batch, on any device, with the data folder anywhere: frames are matched by sha256).

Columns: pixel success (mean fraction of valid pixels on target after 8-bit rounding),
frames whose success reached the stop threshold (--attack-stop, 99%), L2 as RMS on [0, 1]
images, L-inf in 1/255, iterations, attack seconds per frame and image-iterations per second
(iterations / seconds per frame: at --batch 1 the attack's steps per second).
"""

import argparse
import json
import sys
from pathlib import Path

from edge_guard.calibration.attacks import ATTACKS
from edge_guard.calibration.attacks.run import detector_geometry, run_attacks, summarize
from edge_guard.calibration.attacks.views import ADAPTIVE, PATCH_ADAPTIVE
from edge_guard.calibration.evaluate import AttackSet, EvalSettings, attack_settings, setting_key
from edge_guard.calibration.targets import TARGETS
from edge_guard.cli._args import existing_path, frame_size, positive_int
from edge_guard.engine_cache import sha256_file
from edge_guard.errors import UserError, exit_status
from edge_guard.paths import DEFAULT_MODEL


def _names(text: str, known, option: str) -> list:
    names = [v for v in text.split(",") if v]
    unknown = [v for v in names if v not in known]
    if unknown or not names:
        raise UserError(f"{option} {text!r}: choose among {', '.join(known)}, comma-separated")
    return names


def cells(args) -> list:
    methods = _names(args.methods, ATTACKS, "--methods")
    targets = _names(args.targets, TARGETS, "--targets")
    out = []
    for kind in _names(args.adaptive, ("plain", *ADAPTIVE), "--adaptive"):
        for target in targets:
            for method in methods:
                out.append(AttackSet(method, target, kind, args.k_attack if kind in PATCH_ADAPTIVE else 0))
    return out


def label(a: AttackSet) -> str:
    kind = f"{a.kind} K_attack={a.k_attack}" if a.kind in PATCH_ADAPTIVE else a.kind
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
    p.add_argument("--data", default=None, help="data root (generated scenes or Cityscapes); not needed with --report-only")
    p.add_argument("--split", default="val")
    p.add_argument("--out", required=True, help="an `edge-guard evaluate` output folder")
    p.add_argument("--model", type=existing_path, default=DEFAULT_MODEL, help="checkpoint (default: the shipped model)")
    p.add_argument("--frames", type=positive_int, default=50, help="frames per cell (default 50)")
    p.add_argument("--round", type=positive_int, default=5, help="frames added to every cell per round")
    p.add_argument("--methods", default="dag,houdini")
    p.add_argument("--targets", default=",".join(TARGETS))
    p.add_argument("--adaptive", default="plain",
                   help=f"comma-separated kinds among plain, {', '.join(ADAPTIVE)} (default plain)")
    p.add_argument("--k-attack", type=positive_int, default=5,
                   help="patches (spatial, frame, frame-agree) or patch pairs (spatial-pairs) per step of an "
                        "adaptive attack")
    p.add_argument("--frame", type=frame_size, default=(512, 1024), help="HxW every frame is resized to (evaluate's --frame)")
    p.add_argument("--patch", type=int, default=None, help="patch side s (default: half the frame height)")
    p.add_argument("--b-low", type=int, default=None, help="default: frame height / 32")
    p.add_argument("--b-high", type=int, default=None, help="default: frame height / 16")
    p.add_argument("--max-iter", type=int, default=200)
    p.add_argument("--attack-stop", type=float, default=0.99,
                   help="fraction of pixels on target at which an attack stops (evaluate's --attack-stop)")
    p.add_argument("--batch", type=positive_int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--report-only", action="store_true", help="attack nothing; print the table")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.data is None and not args.report_only:
        p.error("--data is needed to attack (or pass --report-only)")

    model = args.model
    h, w = args.frame
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
    data = f"data {args.data} {args.split}" if args.data else f"attacks in {args.out}"
    print(f"model {model} (sha256 {sha[:12]}), {data}, frames {h}x{w}, "
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
