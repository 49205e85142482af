"""`edge-guard evaluate-seg`: per-class IoU and mIoU of a model on a labelled split."""

import argparse
import json
from pathlib import Path

from edge_guard.cli._args import add_model_option, at_most, existing_path
from edge_guard.writable import check_file
from edge_guard.limits import MAX_FRAMES

EXAMPLE = """\
example (the shipped model on a fresh generated validation split):
  edge-guard generate --out scenes --split val --frames 100 --seed 7
  edge-guard evaluate-seg --data scenes --split val

mIoU is the mean IoU over the classes present in the ground truth or the prediction (a class
predicted where the ground truth has none scores 0), as cityscapesScripts computes it; when
the two sets differ, the mean over the ground truth's classes alone is printed below it.
"""


def register(sub) -> None:
    p = sub.add_parser("evaluate-seg", help="per-class IoU and mIoU of a model on a labelled split",
                       description=__doc__, epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_option(p)
    p.add_argument("--data", type=existing_path, required=True, metavar="DIR", help="labelled folder")
    p.add_argument("--split", default="val", help="split to evaluate (default: val)")
    p.add_argument("--limit", type=at_most(MAX_FRAMES, "frames"), default=None, help="first N frames only")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from edge_guard.cli._offline import pick_device, require_torch

    require_torch("evaluation")
    from edge_guard.calibration.data.folders import open_dataset
    from edge_guard.calibration.models.checkpoint import load_segmenter
    from edge_guard.calibration.segeval import evaluate_segmentation, format_table
    from edge_guard.errors import UserError

    if args.json:
        check_file(args.json, "--json")
    device = pick_device(args.device)
    segmenter, _ = load_segmenter(args.model, arch=args.arch)
    frames = open_dataset(args.data, args.split)
    if getattr(frames, "labeled", True) is False:
        raise UserError(f"{args.data} has no labels for split {args.split!r}: evaluate-seg needs labels")
    table = evaluate_segmentation(segmenter, frames, limit=args.limit, device=device)
    print(f"model {args.model} on {args.data} [{args.split}]")
    print(format_table(table))
    if args.json:
        Path(args.json).expanduser().parent.mkdir(parents=True, exist_ok=True)
        with open(Path(args.json).expanduser(), "w") as f:
            json.dump(table, f, indent=2)
    return 0
