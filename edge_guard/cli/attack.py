"""`edge-guard attack`: targeted DAG / Houdini / SegPGD / masked-CE PGD attacks on every frame of a split.

Writes the adversarial frames (8-bit PNG, the inputs' relative paths and names, as .png),
the targets (raw train ids and colourised) and OUT/manifest.json with every setting, a
summary and per-frame metrics: pixel success rate on the target (and before the attack),
mIoU of the prediction against the target, L2 (RMS on [0, 1] images), L-inf, iterations and
seconds. Success is measured on the saved 8-bit frames. Run the same command again to
resume (also from a copy of the data elsewhere); other settings into the same OUT are
refused, and so are options the chosen attack would ignore.
"""

import argparse
import sys
from pathlib import Path

from edge_guard.cli._args import (add_model_option, at_most, frame_size, image_value, non_negative_int,
                                  positive_float, positive_int, side)
from edge_guard.cli._onnx_args import add_onnx_options, model_or_onnx
from edge_guard.limits import MAX_BATCH, MAX_FRAMES, MAX_PAIRS

METHODS = ("dag", "houdini", "segpgd", "maskedce", "adv_lib.dag", "adv_lib.alma_prox")
TARGETS = ("pure", "emblem", "scene", "remap", "strip", "text")
ADAPTIVE = ("scale", "spatial", "spatial-pairs", "frame", "frame-agree")

EXAMPLE = """\
examples:
  edge-guard attack --data scenes --split val --method dag --target pure --out attacks/dag_pure
  edge-guard attack --data scenes --method houdini --target emblem --adaptive spatial \\
      --k-attack 10 --out attacks/houdini_emblem_adaptive10
  edge-guard attack --data scenes --method segpgd --target pure --linf 4/255 --out attacks/segpgd_pure_4

fixed-budget attacks (segpgd: SegPGD, ECCV 2022; maskedce: masked-CE PGD, ECCV 2024): every
--max-iter step (default 100) inside --linf (default 8/255; 4/255 is the other usual budget),
no early stop unless --threshold is given; --step is SegPGD's alpha (default linf/4) or
masked-CE's first, cosine-decayed step (default linf).

adv_lib's attacks (adv_lib.dag: its DAG, --step its gamma; adv_lib.alma_prox: its minimum-norm
L-inf ALMA prox, 500 steps, no --step): the model alone (no --adaptive), rounded to 8-bit once
they return; they need `pip install --no-deps adv-lib` (the crosscheck extra).

targets: pure (one random class), emblem (a cartoon face, the paper's "Kitty"), scene
(another frame's labels with people and vehicles removed), remap (the clean prediction
with classes permuted), strip (vertical stripes), text (--text, "ECCV 2018").
adaptive attacks (--adaptive; default --l2 0.06, as in the paper; K = --k-attack):
  scale          the frame and its Gaussian blurs (std --blur-stds) all reach the target
  spatial        plus K random patches of the pair detector, fresh each step (the paper's)
  spatial-pairs  plus K overlapping patch pairs, toward the target and agreeing on their overlap
  frame          plus K random patches of the frame detector, each segmented alone to the target
  frame-agree    the frame to the target; K random patches pushed to agree with its labels
"""


def register(sub) -> None:
    p = sub.add_parser("attack", help="targeted DAG / Houdini / SegPGD / masked-CE attacks on a split "
                                      "(adversarial set)",
                       description=__doc__, epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_option(p)
    p.set_defaults(model=None)  # model_or_onnx: the shipped model unless --model or --onnx
    add_onnx_options(p, "attacked white-box (converted to PyTorch by onnx2torch)")
    p.add_argument("--data", type=Path, required=True, metavar="DIR",
                   help="Cityscapes-layout, BDD100K or image folder")
    p.add_argument("--split", default=None,
                   help="split to attack (default: val); refused for a plain image folder, which has none")
    p.add_argument("--method", required=True,
                   help=", ".join(METHODS) + " (the adv_lib ones need `pip install --no-deps adv-lib`)")
    p.add_argument("--target", required=True, help=", ".join(TARGETS))
    p.add_argument("--text", default=None, help="string of --target text (default: ECCV 2018)")
    p.add_argument("--adaptive", default=None,
                   help="adaptive attack: " + ", ".join(ADAPTIVE) + " (default: none, the plain attack)")
    p.add_argument("--k-attack", type=at_most(MAX_PAIRS, "patches or pairs per frame", minimum=0), default=None,
                   metavar="K",
                   help="patches (spatial, frame, frame-agree) or pairs (spatial-pairs) per step; 0 = "
                        "the plain attack under the adaptive budget (default: 10; these attacks only)")
    p.add_argument("--patch-size", type=side, default=None,
                   help="the detector's patch size (default: frame height / 2, i.e. the paper's 512 "
                        "on 1024-high frames and the shipped bundle's 256 on 512-high frames; "
                        "spatial and frame attacks only)")
    p.add_argument("--b-low", type=non_negative_int, default=None,
                   help="pair displacement low (default: frame height / 32; spatial attacks only)")
    p.add_argument("--b-high", type=side, default=None,
                   help="pair displacement high (default: frame height / 16; spatial attacks only)")
    p.add_argument("--blur-stds", default=None, help="Gaussian stds of --adaptive scale (default: 0.5,3,5)")
    p.add_argument("--agree-weight", type=positive_float, default=None, metavar="W",
                   help="weight of the patches' agreement with the frame in --adaptive frame-agree (default: 1)")
    p.add_argument("--l2", type=image_value, default=None,
                   help="L2 budget as RMS on [0,1] images, at most 1 (default: 0.06 adaptive dag/houdini, "
                        "else none)")
    p.add_argument("--linf", type=image_value, default=None,
                   help="L-inf budget on [0,1] images, a number or a fraction such as 8/255, from 1/255 (one "
                        "8-bit level) to 1 (default: 8/255 segpgd/maskedce, else none)")
    p.add_argument("--max-iter", type=positive_int, default=None,
                   help="default: 200 dag/houdini (the paper's), 100 segpgd/maskedce")
    p.add_argument("--step", type=image_value, default=None,
                   help="DAG gamma / Houdini Adam rate / SegPGD alpha / masked-CE first step on [0,1] "
                        "images (default: 0.5/255, 1/255, linf/4, linf)")
    p.add_argument("--threshold", type=positive_float, default=None,
                   help="stop a frame at this fraction of pixels on target (default: 0.99 dag/houdini; "
                        "segpgd/maskedce: no early stop)")
    p.add_argument("--size", type=frame_size, default=None, metavar="HxW",
                   help="resize frames to this size before attacking (default: as stored)")
    p.add_argument("--limit", type=at_most(MAX_FRAMES, "frames"), default=None, help="first N frames only")
    p.add_argument("--batch", type=at_most(MAX_BATCH, "frames in a batch"), default=1,
                   help="frames attacked together (default: 1); 8-32 keep a GPU busy with a small "
                        "model. A frame's record then holds the batch's time until it stopped; the "
                        "seconds per frame printed share the batch's time among its frames")
    p.add_argument("--seed", type=non_negative_int, default=0, help="default: 0")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=run)


def _stds(text: str) -> tuple:
    from edge_guard.errors import UserError

    try:
        stds = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"--blur-stds {text!r} is not a comma-separated list of numbers") from None
    if not stds or not all(0 < v < 1e4 for v in stds):  # also refuses nan and inf
        raise UserError(f"--blur-stds {text!r} needs positive numbers, e.g. 0.5,3,5")
    return stds


def run(args) -> int:
    from edge_guard.cli._offline import pick_device, require_torch
    from edge_guard.errors import UserError

    require_torch("attacks")
    from edge_guard.writable import check_folder

    check_folder(args.out, "--out")
    from edge_guard.calibration.attacks.run import AttackSettings, run_attacks, unused_settings

    if args.threshold is not None and args.threshold > 1:
        raise UserError(f"--threshold {args.threshold} must be at most 1")
    defaults = AttackSettings(method=args.method, target=args.target)
    settings = AttackSettings(
        method=args.method, target=args.target, adaptive=args.adaptive,
        k_attack=defaults.k_attack if args.k_attack is None else args.k_attack,
        patch_size=args.patch_size, b_low=args.b_low, b_high=args.b_high,
        blur_stds=defaults.blur_stds if args.blur_stds is None else _stds(args.blur_stds),
        agree_weight=defaults.agree_weight if args.agree_weight is None else args.agree_weight,
        l2=args.l2, linf=args.linf, max_iter=args.max_iter,
        step=args.step, threshold=args.threshold, seed=args.seed, size=args.size,
        text=defaults.text if args.text is None else args.text, batch=args.batch)
    _check_applies(args, unused_settings(settings.resolved()))
    split = args.split
    if split is None:
        split = "val"
    elif args.data.is_dir() and _is_image_folder(args.data):
        raise UserError(f"--split {split}: {args.data} is a plain image folder, which has no splits; leave it out")
    model, onnx = model_or_onnx(args)
    if onnx is not None:
        from edge_guard.calibration.models.onnx_model import check_onnx

        check_onnx(model, onnx)
    summary = run_attacks(model, args.data, split, settings, args.out, arch=args.arch,
                          limit=args.limit, device=pick_device(args.device), onnx=onnx, log=print)
    if summary["attacked"] == 0:
        print(f"nothing left to attack: {args.out} has every frame asked for", file=sys.stderr)
    if summary["images"]:
        m = summary["mean"]
        print(f"{_frames(summary['images'])} in {args.out} ({summary['attacked']} attacked now): "
              f"success {m['success']:.3f}, mIoU {m['miou']:.3f}, "
              f"L2 {m['l2']:.4f}, Linf {m['linf']:.4f}, {m['iterations']:.0f} iterations, "
              f"{summary['seconds_per_frame']:.2f} s of attack per frame")
    return 0


def _frames(n: int) -> str:
    return f"{n} frame" if n == 1 else f"{n} frames"


def _is_image_folder(root: Path) -> bool:
    from edge_guard.calibration.data.folders import detect

    return detect(root) == "images"


def _check_applies(args, unused: set) -> None:
    """Options that the chosen attack would ignore (``unused``: the runner's own list) are
    refused: silently ignored, they would still be recorded, and a later run without them
    would be refused as other settings."""
    from edge_guard.errors import UserError

    patch_attacks = "--adaptive spatial, spatial-pairs, frame or frame-agree"
    pairs = "--adaptive spatial or spatial-pairs with --k-attack above 0"
    options = {"k_attack": ("--k-attack", args.k_attack, patch_attacks),
               "patch_size": ("--patch-size", args.patch_size, f"{patch_attacks} with --k-attack above 0"),
               "b_low": ("--b-low", args.b_low, pairs),
               "b_high": ("--b-high", args.b_high, pairs),
               "blur_stds": ("--blur-stds", args.blur_stds, "--adaptive scale"),
               "agree_weight": ("--agree-weight", args.agree_weight, "--adaptive frame-agree with --k-attack above 0"),
               "text": ("--text", args.text, "--target text")}
    for field, (option, value, needs) in options.items():
        if value is not None and field in unused:
            raise UserError(f"{option} applies only to {needs}: leave it out")
