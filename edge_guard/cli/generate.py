"""`edge-guard generate`: write procedural street scenes as a Cityscapes-layout folder.

Frames are labelled with the 19 Cityscapes train ids (255 = void) and are the same for the
same --seed on every machine. Needs only NumPy and OpenCV (no PyTorch).
"""

import argparse

from edge_guard.cli._args import at_most, cpu_count_type, frame_size, non_negative_int
from edge_guard.limits import MAX_FRAMES, MAX_RENDER_BYTES

#: Frames of one clip (a clip is rendered whole in memory).
MAX_CLIP_LENGTH = 3600

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
    p.add_argument("--frames", type=at_most(MAX_FRAMES, "frames", minimum=0), default=100,
                   help="still frames, each a new street (default: 100)")
    p.add_argument("--size", type=frame_size, default=(512, 1024), metavar="HxW",
                   help="frame size in pixels (default: 512x1024, Cityscapes' aspect)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="default: 0")
    p.add_argument("--clips", type=at_most(MAX_FRAMES, "clips", minimum=0), default=0,
                   help="driving clips to add, each one sequence of frames (default: 0)")
    p.add_argument("--clip-length", type=at_most(MAX_CLIP_LENGTH, "frames per clip"), default=30, metavar="N",
                   help="frames per clip, 15 frames/s (default: 30)")
    p.add_argument("--workers", type=cpu_count_type("worker processes"), default=1,
                   help="processes rendering in parallel (default: 1)")
    p.set_defaults(func=run)


def run(args) -> int:
    from edge_guard.calibration.data.layout import write_split
    from edge_guard.errors import UserError

    if args.frames == 0 and args.clips == 0:
        raise UserError("nothing to write: give --frames and/or --clips greater than 0")
    h, w = args.size
    # A clip is rendered whole (image and labels: 4 bytes a pixel) in each worker at once.
    held = (args.clip_length if args.clips else 1) * h * w * 4 * min(args.workers, args.frames + args.clips)
    if held > MAX_RENDER_BYTES:
        raise UserError(f"{h}x{w} frames{f', {args.clip_length} per clip' if args.clips else ''}, "
                        f"in {args.workers} worker(s) at once, would hold {held / 2**30:.1f} GiB: at most "
                        f"{MAX_RENDER_BYTES / 2**30:.0f} GiB; use a smaller --size, --clip-length or --workers")
    from edge_guard.writable import check_folder

    check_folder(args.out, "--out")
    paths = write_split(args.out, split=args.split, frames=args.frames, size=args.size,
                        seed=args.seed, clips=args.clips, clip_length=args.clip_length,
                        workers=args.workers, progress=True)
    clips = f" and {args.clips} clips of {args.clip_length} frames" if args.clips else ""
    print(f"wrote {len(paths)} {h}x{w} frames ({args.frames} stills{clips}) with labels "
          f"to {args.out} (split {args.split})")
    return 0
