"""`edge-guard generate`: write procedural street scenes as a Cityscapes-layout folder.

Frames are labelled with the 19 Cityscapes train ids (255 = void) and are the same for the
same --seed on every machine. Needs only NumPy and OpenCV (no PyTorch).
"""

import argparse

from edge_guard.cli._args import frame_size, non_negative_int, positive_int

EXAMPLE = """\
examples:
  edge-guard generate --out scenes --split train --frames 400 --seed 1
  edge-guard generate --out scenes --split val --frames 100 --seed 1
  edge-guard generate --out drives --split val --frames 0 --clips 4 --clip-length 30

writes  DIR/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png  (RGB)
and     DIR/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png
Train and val drawn with the same --seed hold different frames.
"""


def register(sub) -> None:
    p = sub.add_parser("generate", help="write procedural street scenes (Cityscapes layout)",
                       description=__doc__, epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--split", default="train", choices=("train", "val", "test"),
                   help="split to write (default: train)")
    p.add_argument("--frames", type=non_negative_int, default=100,
                   help="still frames, each a new street (default: 100)")
    p.add_argument("--size", type=frame_size, default=(512, 1024), metavar="HxW",
                   help="frame size in pixels (default: 512x1024, Cityscapes' aspect)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="default: 0")
    p.add_argument("--clips", type=non_negative_int, default=0,
                   help="driving clips to add, each one sequence of frames (default: 0)")
    p.add_argument("--clip-length", type=positive_int, default=30, metavar="N",
                   help="frames per clip, 15 frames/s (default: 30)")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="processes rendering in parallel (default: 1)")
    p.set_defaults(func=run)


def run(args) -> int:
    from edge_guard.calibration.data.layout import write_split
    from edge_guard.errors import UserError

    if args.frames == 0 and args.clips == 0:
        raise UserError("nothing to write: give --frames and/or --clips greater than 0")
    paths = write_split(args.out, split=args.split, frames=args.frames, size=args.size,
                        seed=args.seed, clips=args.clips, clip_length=args.clip_length,
                        workers=args.workers, progress=True)
    h, w = args.size
    clips = f" and {args.clips} clips of {args.clip_length} frames" if args.clips else ""
    print(f"wrote {len(paths)} {h}x{w} frames ({args.frames} stills{clips}) with labels "
          f"to {args.out} (split {args.split})")
    return 0
