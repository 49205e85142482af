"""`edge-guard demo`: the whole story in one command, on the shipped model."""

import argparse
from pathlib import Path

from edge_guard.cli._args import (at_most, bundle_folder, existing_path, frame_size, k_count, non_negative_int,
                                  thread_count)
from edge_guard.limits import MAX_ITERS

EXAMPLE = """\
examples:
  edge-guard demo                              # under a minute: the default attack ships with the package
  edge-guard demo --out /tmp/demo --attacked 10-15 --iters 60
  edge-guard demo --shipped-attacks            # replay the shipped adversarial frames (fast)

what it does: renders a 40-frame drive (the procedural street generator); attacks a
stretch of it with DAG toward an empty road (by default another street's labels with every
person and vehicle removed, the paper's Scene target; 8-bit, white-box on the shipped
checkpoint, blind to the detector's patches); writes the clip as a lossless FFV1 video (a
lossy codec would wash much of the perturbation out); and runs the guard on that stream as
`edge-guard run --source clip.avi --events ... --save ...` does. It prints the attack's
pixel success, then benign frames flagged (false alarms), attacked frames flagged
(detections), the achieved frame rate and latency p50/p99, and where the files are:

  OUT/events.jsonl   the stream's events (JSON Lines, see `edge-guard run --help`)
  OUT/checked.mp4    the checked frames, annotated (verdict, score, the compared patches)
  OUT/strip.png      thumbnails of frames around the attack with their scores, over a
                     plot of every frame's score against the threshold
  OUT/clip.avi       the input clip (FFV1, lossless)
  OUT/attack/        the attacked frames as perturbations (a cache: a second run with the
                     same settings skips the attack)

without PyTorch (the vehicle install) the attack cannot run: the demo replays adversarial
frames shipped with the package, made once with the same attack on the shipped model, and
says so. They are of one clip, so --seed, --frames, --size and --attacked must then stay at
what they were made with.
"""


def _range(text: str):
    from edge_guard.demo import parse_range
    from edge_guard.errors import UserError

    try:
        return parse_range(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub) -> None:
    from edge_guard.backends import BACKENDS
    from edge_guard.demo import (DEFAULT_FRAMES, DEFAULT_ITERS, DEFAULT_OUT, DEFAULT_SEED, SHIPPED_FRAMES,
                                 TARGETS)
    from edge_guard.paths import DEFAULT_MODEL

    p = sub.add_parser("demo", help="the whole story in one command: a drive, an attack, the guard",
                       description=__doc__, epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                   help=f"folder for the clip, events, videos and strip (default: ./{DEFAULT_OUT})")
    p.add_argument("--frames", type=at_most(3600, "frames in the drive, held in memory"), default=None, metavar="N",
                   help=f"frames in the drive (default: {DEFAULT_FRAMES})")
    p.add_argument("--attacked", type=_range, default=None, metavar="A-B",
                   help="frames to attack, from 0, inclusive (default: 6 in the middle, 17-22 of 40)")
    p.add_argument("--size", type=frame_size, default=None, metavar="HxW",
                   help="frame size of the drive (default: the bundle's frame size, 512x1024 shipped)")
    p.add_argument("--bundle", type=lambda text: Path(bundle_folder(text)), default=None, metavar="DIR",
                   help="bundle folder (guard.json + model.onnx); default: the shipped bundle")
    # An explicit path must exist; the default may be missing (a vehicle install): then the
    # shipped frames are replayed.
    p.add_argument("--model", type=existing_path, default=DEFAULT_MODEL, metavar="CKPT",
                   help="checkpoint the attacker differentiates (default: the shipped model, the "
                        "one the shipped bundle was exported from)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="inference backend of the guard (default: auto)")
    p.add_argument("--k", "--pairs", dest="pairs", type=k_count, default=None, metavar="K",
                   help="patches (frame detector) or patch pairs (pairs detector) per frame "
                        "(default: the bundle's K)")
    p.add_argument("--threads", type=thread_count, default=None,
                   help="CPU threads for the attack and the guard (default: all)")
    p.add_argument("--seed", type=non_negative_int, default=None,
                   help=f"seed of the drive (default: {DEFAULT_SEED}); the patch draw stays unseeded")
    p.add_argument("--iters", type=at_most(MAX_ITERS, "steps"), default=None, metavar="N",
                   help=f"DAG's step limit per frame (default: {DEFAULT_ITERS}, the paper's). The frames "
                        "of the default attack on the default clip ship with the package and are "
                        "used like a cache; other settings attack live (200 steps on 6 frames: "
                        "about 11 min on 2 CPU cores)")
    p.add_argument("--target", choices=tuple(TARGETS), default=None,
                   help="what the attack makes the model see: scene = another street, empty (the "
                        "paper's Scene target; default), vanish = the same street with its people "
                        "and vehicles gone")
    p.add_argument("--no-attack-cache", dest="cache", action="store_false",
                   help="attack again even when OUT/attack holds frames made with the same settings")
    p.add_argument("--shipped-attacks", dest="shipped", action="store_true",
                   help="replay the adversarial frames shipped with the package instead of attacking "
                        "(what happens without PyTorch)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    # Tests point the shipped-frames folder elsewhere.
    p.add_argument("--shipped-dir", type=Path, default=SHIPPED_FRAMES, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args) -> int:
    from edge_guard.demo import DemoOptions, run_demo
    from edge_guard.demo_report import report
    from edge_guard.writable import check_folder

    check_folder(args.out, "--out")

    def say(text):
        print(text, flush=True)

    opts = DemoOptions(out=args.out, frames=args.frames, attacked=args.attacked, size=args.size,
                       seed=args.seed, iters=args.iters, target=args.target, bundle=args.bundle,
                       model=args.model,
                       backend=args.backend, pairs=args.pairs, threads=args.threads,
                       cache=args.cache, shipped=args.shipped, shipped_dir=args.shipped_dir,
                       progress=not args.quiet)
    result = run_demo(opts, say=say)
    say("")
    for line in report(result):
        say(line)
    return 0
