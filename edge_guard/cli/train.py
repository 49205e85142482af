"""`edge-guard train`: train a registered segmentation model on a Cityscapes-layout folder."""

import argparse
import json
import sys
from pathlib import Path

from edge_guard.cli._args import (at_least, at_most, cpu_count_type, existing_path, non_negative_int, positive_float,
                                  positive_int, probability, side, thread_count)
from edge_guard.limits import MAX_BATCH

EXAMPLE = """\
examples (docs/model.md has the shipped model's exact recipe):
  edge-guard generate --out scenes --split train --frames 1500 --seed 1 --workers 8
  edge-guard train --data scenes --out runs/edge_small.pt --steps 3000 --crop 256 --threads 1
  edge-guard train --data scenes --out runs/tuned.pt --init edge_guard/assets/edge_small.pt \\
      --steps 5000 --batch-size 16 --crop 512 --lr 1e-3 --workers 8 --preload --device cuda

Checkpoints are written every --save-every steps; run the same command with --resume to go
on after an interruption. Augmentation follows the paper: random rescale 0.5x..2x and
random square crops (--crop, capped to the frame), cross-entropy ignoring label 255.
"""


def _crop(text: str) -> int:
    value = side(text)
    return at_least(32)(text) if value < 32 else value


def register(sub) -> None:
    p = sub.add_parser("train", help="train a segmentation model on a labelled folder",
                       description=__doc__, epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=existing_path, required=True, metavar="DIR",
                   help="Cityscapes-layout folder (generated or real) or BDD100K folder")
    p.add_argument("--split", default="train", help="split to train on (default: train)")
    p.add_argument("--arch", default="edge_small",
                   help="registered model name: edge_small (default), drn_d_22, dla34")
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint to write (.pt)")
    p.add_argument("--steps", type=positive_int, default=3000, help="optimiser steps (default: 3000)")
    p.add_argument("--batch-size", type=at_most(MAX_BATCH, "crops in a batch"), default=8, help="default: 8")
    p.add_argument("--crop", type=_crop, default=512, help="crop side in pixels, >= 32 (default: 512)")
    p.add_argument("--lr", type=positive_float, default=3e-3, help="peak AdamW learning rate (default: 3e-3)")
    p.add_argument("--width", type=at_most(1024, "channels"), default=None,
                   help="base width of edge_small (default: the model's own)")
    p.add_argument("--class-weights", choices=("enet", "none"), default="enet",
                   help="per-class loss weights: enet = 1/ln(1.02+frequency), which lifts rare thin "
                        "classes (poles, lights, bicycles) that mIoU counts as much as road; the "
                        "checkpoint then adds -log(weight) to each class's logits so that the "
                        "weights shape learning without making the model over-predict rare "
                        "classes (default: enet)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="default: 0")
    p.add_argument("--workers", type=cpu_count_type("worker processes", minimum=0), default=2,
                   help="data-loading processes (default: 2; 0 loads in the training process)")
    p.add_argument("--threads", type=thread_count, default=None,
                   help="CPU threads for PyTorch (default: PyTorch's choice; 1 on a busy machine "
                        "avoids stalls from oversubscription)")
    p.add_argument("--save-every", type=positive_int, default=250, help="checkpoint period in steps")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint at --out")
    p.add_argument("--overwrite", action="store_true",
                   help="train afresh even if --out exists (without it, an existing --out is refused)")
    p.add_argument("--init", type=existing_path, metavar="CKPT", default=None,
                   help="start from the weights of this checkpoint (e.g. the shipped model) with a "
                        "fresh optimiser and schedule; the checkpoint records it")
    p.add_argument("--photometric", type=probability, default=0.0, metavar="P",
                   help="camera conditions as augmentation: each crop gets a random exposure "
                        "(0.2x..1.6x), sensor noise, motion blur and JPEG compression, each with "
                        "probability P (default: 0, off; 0.5 made the shipped model hold up at dusk)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--preload", action="store_true",
                   help="decode every frame into memory once (about 2 MB per 512x1024 frame); keeps "
                        "a GPU fed, where decoding PNGs in the loaders would be the bottleneck")
    p.set_defaults(func=run)


def run(args) -> int:
    from edge_guard.cli._offline import require_torch

    from edge_guard.cli._offline import pick_device
    from edge_guard.errors import UserError

    torch = require_torch("training")
    from edge_guard.writable import check_file

    check_file(args.out, "--out")
    if args.init and args.resume:
        raise UserError("--init and --resume exclude each other: --resume continues --out, --init starts anew from CKPT")
    out = Path(args.out).expanduser()
    if out.is_file() and not args.resume and not args.overwrite:
        # Hours of training are one forgotten flag away from the first save's overwrite.
        raise UserError(f"--out {out} exists: --resume continues it, --overwrite trains afresh over it")
    if args.resume and not out.exists():
        print(f"edge-guard train: no checkpoint at {out} yet: starting at step 0", file=sys.stderr)
    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    from edge_guard.calibration.train import TrainConfig, train

    kwargs = {"width": args.width} if args.width else {}
    cfg = TrainConfig(data=str(args.data), out=args.out, arch=args.arch, split=args.split,
                      steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr,
                      seed=args.seed, workers=args.workers, class_weights=args.class_weights, save_every=args.save_every,
                      model_kwargs=kwargs, init=str(args.init) if args.init else None,
                      preload=args.preload, photometric=args.photometric)
    summary = train(cfg, resume=args.resume, device=device)
    print(json.dumps(summary))
    return 0
