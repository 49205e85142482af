"""`edge-guard evaluate`: the paper's experiments (Xiao et al., ECCV 2018, §5) on any model and data.

Attacks the first --adversarial frames of the split with every method x target, plain and
adaptive (on the scale detector's blurs; on K_attack random patches of the spatial detector;
on the frame detector's patches), scores them and the first --benign frames with the three
detectors (scale, the paper's pairs, and the patch-vs-frame one), and writes OUT/results.json
(every number), OUT/report.md (read this first) and PNG figures: ROC curves, Table 1 with the
paper's numbers beside ours, Fig. 7 (defender K x attacker K_attack), Fig. 3 (vote-entropy
maps) and Fig. 8 (transferability between models: three of the same architecture trained
with different seeds, or any --transfer-models, other architectures included). Attacks and scores
are cached under OUT: run the same command again to resume.
"""

import argparse
from pathlib import Path

from edge_guard.cli._args import (add_model_option, add_statistic_options, at_most, frame_size, image_value,
                                  k_count, non_negative_int, positive_float, positive_int, side)
from edge_guard.cli._onnx_args import ONNX_HELP, add_onnx_options, model_or_onnx
from edge_guard.limits import MAX_BATCH, MAX_FRAMES

EXAMPLE = """\
examples:
  edge-guard evaluate --data scenes --out eval --quick          # a smoke run, minutes on a CPU
  edge-guard evaluate --data scenes --out eval --benign 100 --adversarial 50 --device cuda
  edge-guard evaluate --model drn_d_22.pth --arch drn_d_22 --data cityscapes --out eval \\
      --frame 1024x2048 --patch 512 --b-low 32 --b-high 64 --skip fig8
  edge-guard evaluate --data scenes --out eval --adversarial 10 --skip adaptive,fig8   # plain rows, CPU
  edge-guard evaluate --data scenes --out eval --quick --ray HEAD:6379   # frames on a Ray cluster

--quick runs a reduced grid unless a flag says otherwise: 8 benign and 4 adversarial frames
at 128x256, patch 96, b in [6, 12), DAG and Houdini on the pure target, K in {1,5},
K_attack in {0,1,5}, no pairs adversary, 20 attack iterations, no Fig. 8 (add --fig8 for it).
Fig. 8 trains three models of the evaluated architecture on the train split (--transfer-steps)
unless --transfer-models names checkpoints.

""" + ONNX_HELP + """
  edge-guard evaluate --onnx segformer.onnx --scale 1 --mean 123.675,116.28,103.53 \\
      --std 58.395,57.12,57.375 --data scenes --out eval --quick
"""

FULL = {"benign": 100, "adversarial": 50, "methods": "dag,houdini", "targets": "pure,emblem",
        "ks": "1,5,10,50", "stds": "0.5,3,5", "k_attack": "0,1,5,10,50", "k_pairs": "5", "k_frame": "5",
        "k_agree": "5", "frame": (512, 1024),
        "patch": 256, "b_low": 16, "b_high": 32, "max_iter": 200, "entropy_patches": 50,
        "transfer_steps": 2000, "transfer_crop": 512}
QUICK = {**FULL, "benign": 8, "adversarial": 4, "targets": "pure", "ks": "1,5", "k_attack": "0,1,5",
         "k_pairs": "0", "k_frame": "5", "k_agree": "0", "frame": (128, 256), "patch": 96, "b_low": 6, "b_high": 12, "max_iter": 20,
         "entropy_patches": 16, "transfer_steps": 30, "transfer_crop": 128}


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="the paper's experiments: Table 1, Fig. 3, 7, 8 (report)",
                       description=__doc__, epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_option(p)  # --model and --arch
    p.set_defaults(model=None)  # model_or_onnx: the shipped model unless --model or --onnx
    add_onnx_options(p, "attacked white-box (converted to PyTorch by onnx2torch) and scored")
    p.add_argument("--data", type=Path, required=True, metavar="DIR",
                   help="Cityscapes-layout, BDD100K or image folder")
    p.add_argument("--split", default="val", help="split to evaluate on (default: val)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (resumable)")
    p.add_argument("--quick", action="store_true", help="a reduced grid (see below)")
    p.add_argument("--benign", type=at_most(MAX_FRAMES, "frames"), default=None, metavar="N",
                   help="benign frames: the first N of the split (default: 100)")
    p.add_argument("--adversarial", type=at_most(MAX_FRAMES, "frames"), default=None, metavar="N",
                   help="frames attacked per setting: the first N of the split (default: 50)")
    p.add_argument("--methods", default=None,
                   help="attacks, comma-separated: dag, houdini, segpgd, maskedce (fixed budget, one cell per "
                        "--linf), adv_lib.dag, adv_lib.alma_prox (plain only; pip install --no-deps adv-lib) "
                        "(default: dag,houdini)")
    p.add_argument("--linf", default="8/255", metavar="BUDGETS",
                   help="L-inf budgets of segpgd and maskedce, comma-separated, e.g. 4/255,8/255: cells "
                        "segpgd4, segpgd8, ... (default: 8/255)")
    p.add_argument("--plan", action="store_true",
                   help="print the grid's plan (cells, frames left to attack, measured seconds per step, "
                        "estimated hours) and stop; evaluate always prints it before it starts")
    p.add_argument("--targets", default=None,
                   help="targets, comma-separated: pure, emblem (the paper's Kitty), scene, remap, "
                        "strip, text (default: pure,emblem)")
    p.add_argument("--ks", default=None, help="defender's pair counts K (default: 1,5,10,50)")
    p.add_argument("--stds", default=None, help="scale detector's blur stds (default: 0.5,3,5)")
    p.add_argument("--k-attack", default=None,
                   help="adaptive attacker's patch counts, 0 = the plain attack (default: 0,1,5,10,50)")
    p.add_argument("--k-pairs", default=None,
                   help="our own adaptive adversary against the spatial detector: K overlapping "
                        "patch pairs per step, each patch toward the target and the two consistent "
                        "on their overlap; its pair counts, 0 = not run (default: 5; --quick 0)")
    p.add_argument("--k-frame", default=None,
                   help="adaptive attack on the frame detector: the frame and K random patches (drawn "
                        "as that detector draws them) pushed to the target together; its patch "
                        "counts, 0 = not run (default: 5)")
    p.add_argument("--k-agree", default=None,
                   help="adaptive attack on the frame detector: the frame pushed to the target while K "
                        "random patches are made to agree with its prediction; 0 = not run "
                        "(default: 5; --quick 0)")
    add_statistic_options(p, "the frame detector scores per patch")
    p.add_argument("--frame", type=frame_size, default=None, metavar="HxW",
                   help="frames are resized to this before attack and scoring (default: 512x1024)")
    p.add_argument("--patch", type=side, default=None, help="patch side s (default: 256)")
    p.add_argument("--b-low", type=non_negative_int, default=None, help="pair displacement low (default: 16)")
    p.add_argument("--b-high", type=side, default=None, help="pair displacement high (default: 32)")
    p.add_argument("--max-iter", type=positive_int, default=None, help="attack iterations (default: 200)")
    p.add_argument("--attack-stop", type=positive_float, default=0.99, metavar="FRACTION",
                   help="an attack stops once this fraction of a frame's pixels is on target "
                        "(default: 0.99; 1 runs to every pixel, the strongest adaptive attack on "
                        "the scale detector, whose mIoU counts the last stray pixels)")
    p.add_argument("--batch", type=at_most(MAX_BATCH, "frames in a batch"), default=1,
                   help="frames attacked together (default: 1; 8-32 on a GPU)")
    p.add_argument("--entropy-patches", type=k_count, default=None,
                   help="random patches of the Fig. 3 entropy maps (default: 50)")
    p.add_argument("--skip", default="",
                   help="parts to skip, comma-separated: fig3, fig7, fig8, adaptive (no adaptive "
                        "attack, so no Fig. 7: Table 1's plain rows, a first reading on a CPU) and "
                        "scale-adaptive (only the scale detector's adaptive attack, 4x a plain one)")
    p.add_argument("--fig8", action="store_true", help="run Fig. 8 with --quick too")
    p.add_argument("--transfer-models", default=None, metavar="[ARCH=]CKPT,...",
                   help="Fig. 8's models (default: train three with different seeds); ARCH= names the "
                        "architecture of an official checkpoint, e.g. dla34=dla34.pth, to mix architectures")
    p.add_argument("--transfer-steps", type=positive_int, default=None,
                   help="training steps of each Fig. 8 model (default: 2000; --quick 30)")
    p.add_argument("--transfer-crop", type=side, default=None,
                   help="square training crop of each Fig. 8 model in pixels (default: 512; --quick 128)")
    p.add_argument("--transfer-split", default="train", help="split Fig. 8's models train on (default: train)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="default: 0")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--cached-only", action="store_true",
                   help="attack and score nothing: rebuild results.json and report.md from the "
                        "manifests and scores under --out (e.g. several GPU runs' outputs unpacked "
                        "into one folder without their adversarial images); --data still names the "
                        "frames. Fig. 3 and Fig. 8 need the images (an earlier Fig. 3 is kept)")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="attack each cell's frames in parallel as Ray tasks (pip install 'edge-guard[cluster]'): "
                        "alone, on a local Ray using this machine's cores; with a running cluster's address "
                        "(auto, HOST:6379, ray://HOST:10001), on its machines. This process prepares the "
                        "frames and writes every result into --out (the cache: resumable as ever); tasks "
                        "only attack, on CPUs, so workers need edge-guard and torch installed but neither "
                        "the data nor --out. Cells still run one after another (docs/cluster.md)")
    p.add_argument("--ray-cpus-per-task", type=positive_int, default=1, metavar="N",
                   help="CPUs (and torch threads) per Ray task, one frame batch each (default: 1)")
    p.set_defaults(func=run)


def _list(text: str, option: str, kind=str) -> tuple:
    from edge_guard.errors import UserError

    try:
        values = tuple(kind(v.strip()) for v in str(text).split(",") if v.strip())
    except (ValueError, argparse.ArgumentTypeError):  # image_value's: not a number or a fraction
        raise UserError(f"{option} {text!r} is not a comma-separated list of numbers") from None
    if not values:
        raise UserError(f"{option} is empty")
    return values


def _counts(text: str, option: str, kind) -> tuple:
    """A numeric list, ascending and without repeats: tables and figures run from small to large.
    Integer lists are K values (patches or pairs per frame): at most MAX_PAIRS."""
    from edge_guard.errors import UserError
    from edge_guard.limits import MAX_PAIRS

    values = tuple(sorted(set(_list(text, option, kind))))
    if kind is int and values[-1] > MAX_PAIRS:
        raise UserError(f"{option}: at most K={MAX_PAIRS} patches or pairs per frame, got {values[-1]}")
    return values


def settings_from_args(args):
    """EvalSettings from the parsed arguments: an explicit flag wins over --quick's preset."""
    from edge_guard.calibration.evaluate import EvalSettings

    preset = QUICK if args.quick else FULL

    def pick(name):
        value = getattr(args, name)
        return preset[name] if value is None else value

    skip = set(_list(args.skip, "--skip")) if args.skip else set()
    if args.quick and not args.fig8:
        skip.add("fig8")
    transfer = _list(args.transfer_models, "--transfer-models") if args.transfer_models else ()
    model, onnx = model_or_onnx(args)
    return EvalSettings(
        data=str(args.data), out=str(args.out), model=str(model), arch=args.arch, split=args.split, onnx=onnx,
        benign=pick("benign"), adversarial=pick("adversarial"),
        methods=_list(pick("methods"), "--methods"), targets=_list(pick("targets"), "--targets"),
        linf=tuple(sorted(set(_list(args.linf, "--linf", image_value)))),
        ks=_counts(pick("ks"), "--ks", int), stds=_counts(pick("stds"), "--stds", float),
        k_attack=_counts(pick("k_attack"), "--k-attack", int), k_pairs=_counts(pick("k_pairs"), "--k-pairs", int),
        k_frame=_counts(pick("k_frame"), "--k-frame", int), k_agree=_counts(pick("k_agree"), "--k-agree", int),
        statistic=args.statistic, min_pixels=args.min_pixels,
        frame=tuple(pick("frame")),
        patch=pick("patch"), b_low=pick("b_low"), b_high=pick("b_high"), max_iter=pick("max_iter"),
        attack_stop=args.attack_stop, batch=args.batch, seed=args.seed,
        entropy_patches=pick("entropy_patches"), skip=tuple(sorted(skip)),
        transfer_models=transfer, transfer_steps=pick("transfer_steps"),
        transfer_split=args.transfer_split, transfer_crop=pick("transfer_crop"), quick=bool(args.quick))


def run(args) -> int:
    from edge_guard.cli._offline import pick_device, require_torch
    from edge_guard.errors import require

    require_torch("evaluate")
    require("sklearn", "offline", "evaluate (ROC AUC)")
    require("matplotlib", "offline", "evaluate (figures)")
    from edge_guard.writable import check_folder

    check_folder(args.out, "--out")
    from edge_guard.calibration.evaluate import evaluate

    settings = settings_from_args(args)
    settings.check()  # one-line errors before the device or the data are touched
    if settings.onnx is not None:
        from edge_guard.calibration.models.onnx_model import check_onnx

        check_onnx(settings.model, settings.onnx)
    device = pick_device("cpu" if args.ray is not None and args.device == "auto" else args.device)
    pool = None
    if args.ray is not None and not args.cached_only:
        if device != "cpu":
            from edge_guard.errors import UserError

            raise UserError(f"--ray attacks on the workers' CPUs: drop --device {args.device} "
                            "(or pass --device cpu)")
        from edge_guard.calibration.attacks.ray_pool import RayPool

        pool = RayPool(address=None if args.ray == "local" else args.ray, cpus_per_task=args.ray_cpus_per_task)
    try:
        results = evaluate(settings, device=device, progress=not args.quiet,
                           log=print if args.plan or not args.quiet else (lambda *a: None),
                           cached_only=args.cached_only, plan_only=args.plan, pool=pool)
    finally:
        if pool is not None:
            pool.close()
    if args.plan:
        return 0
    print(f"wrote {Path(args.out) / 'report.md'} and results.json ({results['seconds']:.0f} s)")
    from edge_guard.calibration.report import reading

    print("\n".join(reading(results)))
    return 0
