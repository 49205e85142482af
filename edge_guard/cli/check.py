"""`edge-guard check`: is each still image adversarial? One verdict per image."""

import argparse
import json
import sys

from edge_guard.cli._args import add_runtime_options, non_negative_int

EXAMPLE = """\
examples:
  edge-guard check street.png                       # the shipped bundle, fastest backend
  edge-guard check frames/*.png --bundle bundle --pairs 50 --json > verdicts.jsonl

Each image is resized to the bundle's frame size; K random pairs of overlapping patches
are segmented and the frame is flagged when the mean mIoU of their overlaps falls below
the bundle's threshold. --json prints one JSON object per image (score, threshold,
adversarial, pair_mious, pairs, timings_ms, ...).

exit status: 0 every image benign, 1 at least one adversarial, 2 an error (an unreadable
image is reported on one line and the others are still checked).
"""


def register(sub) -> None:
    p = sub.add_parser("check", help="check still images for adversarial perturbations",
                       description=__doc__, epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (anything OpenCV reads)")
    add_runtime_options(p, unit="image")
    p.add_argument("--seed", type=non_negative_int, default=None,
                   help="seed the patch draw (reproducible, but predictable: tests only)")
    p.add_argument("--json", action="store_true", help="print one JSON object per image")
    p.set_defaults(func=run)


def _read(path: str):
    """(image BGR uint8, None) or (None, why it cannot be read)."""
    import os

    import cv2

    if not os.path.isfile(path):  # before OpenCV, which would print a warning of its own
        return None, "no such file" if not os.path.exists(path) else "not a file"
    image = cv2.imread(path, cv2.IMREAD_COLOR)  # BGR uint8; grey and 16-bit are converted
    if image is None or image.size == 0:
        return None, "cannot read it as an image"
    return image, None


def run(args) -> int:
    from edge_guard.guard import Guard

    guard = Guard.load(args.bundle, backend=args.backend, seed=args.seed, pairs=args.pairs,
                       threads=args.threads, precision=args.precision)
    status = 0
    errors = 0
    with guard:
        if not args.json:
            h, w = guard.bundle.frame_size
            print(f"# {guard.bundle.root} | backend {guard.backend} ({guard.provider}) | "
                  f"frame {h}x{w}, {guard.k_text}, threshold {guard.threshold:.4f}")
            print(f"# backend choice: {guard.selection}")
            print(f"{'verdict':<12} {'score':>7} {'min pair':>8} {'ms':>8}  image")
        for path in args.images:
            image, why = _read(path)
            if image is None:
                print(f"edge-guard check: error: {path}: {why}", file=sys.stderr)
                errors += 1
                continue
            verdict = guard.check(image)
            if verdict.adversarial:
                status = 1
            if args.json:
                print(json.dumps({"image": path, **verdict.as_dict()}), flush=True)
            else:
                label = "ADVERSARIAL" if verdict.adversarial else "benign"
                print(f"{label:<12} {verdict.score:7.4f} {min(verdict.pair_mious):8.4f} "
                      f"{verdict.timings_ms['total']:8.1f}  {path}", flush=True)
    return 2 if errors else status
