"""`edge-guard calibrate`: export the model and choose the detector's threshold on benign frames.

Exports the checkpoint into BUNDLE_DIR (model.onnx for patches and segment.onnx for whole
frames, both verified against PyTorch), scores the first --calib-frames frames of the split
with the runtime's own code for the chosen detector (--detector frame: each patch against the
frame's own labels, the default; pairs: the paper's overlapping pairs), picks the threshold
so that it also holds under daily camera conditions (--conditions: dusk, night, glare, noise,
compression, blur), checks it on the next --holdout-frames frames and on adversarial sets
(--adversarial, repeatable), and writes BUNDLE_DIR/guard.json with the whole record.
Every K of --ks gets its own threshold by the same rule (for `run --fps`); --extend adds
thresholds for more K to a bundle already calibrated, without recalibrating it.
"""

import argparse
from pathlib import Path

from edge_guard.bundle_schema import METHODS
from edge_guard.cli._onnx_args import ONNX_HELP, add_onnx_options, model_or_onnx
from edge_guard.cli._args import (add_model_option, add_statistic_options, at_most, frame_size, k_count,
                                  non_negative_int, positive_float, side)
from edge_guard.limits import MAX_FRAMES

frame_count = at_most(MAX_FRAMES, "frames")

EXAMPLE = """\
examples (the shipped bundle):
  edge-guard generate --out scenes --split val --frames 300 --seed 11
  edge-guard calibrate --data scenes --split val --out bundle
  edge-guard calibrate --data drive.mp4 --every 5 --out bundle   # every 5th frame of a benign drive
  edge-guard calibrate --onnx seg.onnx --scale 1 --mean 123.675,116.28,103.53 \\
      --std 58.395,57.12,57.375 --data frames/ --out bundle        # your own model (mmsegmentation)
  edge-guard calibrate --data scenes --out bundle --adversarial attacks/dag_pure \\
      --adversarial attacks/houdini_emblem
  edge-guard calibrate --out bundle --extend --ks 1,2,3,8     # thresholds for more K, same frames
  edge-guard generate --out drives --split val --frames 0 --clips 60 --clip-length 90 --seed 31
  edge-guard calibrate --out bundle --extend --clips drives   # the sequential alarm, 1 an hour

threshold rules (a frame is adversarial when its score < threshold):
  fpr         the largest threshold whose false-positive rate on the N calibration frames
              is <= --fpr: the (m+1)-th smallest benign score, m = floor(fpr * N). Needs
              N >= 1/fpr frames; below 10/fpr it warns (too few frames in the tail).
  min-benign  the smallest benign score (the paper's "lower bound"): no calibration frame
              is flagged.

several K (--ks): each K is scored on the same frames with the same patch streams as a
calibration with only that K, and gets its threshold by the same rule; the bundle's own K
(--k) keeps exactly the threshold it gets alone. `edge-guard run --fps F` picks among them.
--extend reads the settings, frames and seed from the bundle's guard.json, rescores its own
K as a check (it must reproduce the recorded threshold exactly, or nothing is written) and
adds the new K; the bundle's own threshold does not change.

the sequential alarm (--clips): every frame of every clip is checked in order with the bundle's
guard; the CUSUM's level h is set for --alarm-rate false alarms per hour at --alarm-fps, from
a model of benign scores fitted to the clips (minutes of driving cannot show one alarm an
hour; docs/streams.md). It holds for the bundle's K; runs at another K use 3/5.

defaults: the frame detector, K = 5 patches, scoring the mIoU over classes of at least 0.1% of
a patch (the paper's mIoU without the classes of a few stray pixels). The paper used s=512,
b in [32,64) on 1024x2048 Cityscapes frames; at half that resolution (--frame 512x1024, the
generated scenes' size) that is --patch 256, --b-low 16, --b-high 32 (pairs only).
"""


def register(sub) -> None:
    p = sub.add_parser("calibrate", help="export the model and calibrate the detector threshold (bundle)",
                       description=__doc__, epilog=EXAMPLE + "\n" + ONNX_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_option(p)
    p.add_argument("--data", type=Path, default=None, metavar="DIR|VIDEO",
                   help="benign frames: Cityscapes-layout, BDD100K or image folder, or a video of benign "
                        "driving that OpenCV reads (.mp4, .avi, .mkv, .mov, ...; frames 0, N, 2N, ... with "
                        "--every N) (required; with --extend: default the data the bundle was calibrated on)")
    p.add_argument("--split", default="val", help="split to calibrate on (default: val)")
    p.add_argument("--every", type=int, default=None, metavar="N",
                   help="with a video --data: calibrate on its every N-th frame from the start, frames "
                        "0, N, 2N, ... (default: 1, every frame; not for folders)")
    p.add_argument("--out", type=Path, required=True, metavar="BUNDLE_DIR",
                   help="bundle folder: model.onnx, export.json and guard.json are written here")
    p.add_argument("--frame", type=frame_size, default=(512, 1024), metavar="HxW",
                   help="frames are resized to this before patching, here and on the vehicle "
                        "(default: 512x1024)")
    p.add_argument("--patch", type=side, default=256,
                   help="patch side s in pixels (default: 256 = the paper's 512 at half resolution)")
    p.add_argument("--detector", choices=METHODS, default="frame",
                   help="frame: K patches, each compared with the frame's own labels (default); "
                        "pairs: the paper's K overlapping pairs, compared on their overlaps")
    add_statistic_options(p)
    p.add_argument("--b-low", type=non_negative_int, default=16,
                   help="pairs: smallest displacement of a pair's second patch, per axis (default: 16)")
    p.add_argument("--b-high", type=side, default=32,
                   help="pairs: displacements are drawn from [b_low, b_high) (default: 32)")
    p.add_argument("--k", "--pairs", dest="pairs", type=k_count, default=5, metavar="K",
                   help="patches (frame detector) or overlapping pairs (pairs detector) per frame "
                        "(default: 5)")
    p.add_argument("--ks", type=_ks, default=None, metavar="LIST",
                   help="every K to calibrate a threshold for, e.g. 1,2,3,5,8 (the --k is always "
                        "among them; default: 1, 2, 3, 5, 8, ... up to twice --k; 'none': --k alone)")
    p.add_argument("--extend", action="store_true",
                   help="add thresholds for --ks to the bundle --out, already calibrated, from the frames "
                        "and settings its guard.json records (its own threshold is checked, not changed)")
    p.add_argument("--rule", default="fpr", help="threshold rule: fpr (default) or min-benign")
    p.add_argument("--fpr", type=float, default=0.01,
                   help="target false-positive rate of the fpr rule, in (0, 1) (default: 0.01)")
    p.add_argument("--calib-frames", type=frame_count, default=200, metavar="N",
                   help="benign frames the threshold is chosen on: the first N of the split (default: 200)")
    p.add_argument("--holdout-frames", type=at_most(MAX_FRAMES, "frames", minimum=0), default=100, metavar="M",
                   help="the next M frames check the threshold; 0 skips the check (default: 100)")
    p.add_argument("--conditions", default="all", metavar="LIST",
                   help="camera conditions the threshold must also hold under: the first "
                        "--condition-frames frames are scored under each (JPEG 30, noise, dusk, night, "
                        "glare, motion blur) and the threshold is the lowest of the rule's thresholds "
                        "on the clean frames and on each condition; all (default), none, or a "
                        "comma-separated list of jpeg30, noise8, dark0.4, dark0.25, bright1.5, blur7")
    p.add_argument("--condition-frames", type=frame_count, default=None, metavar="N",
                   help="calibration frames scored under each condition (default: all of them; "
                        "fewer make each condition's 1%% tail a noisier estimate)")
    p.add_argument("--adversarial", type=Path, action="append", default=[], metavar="DIR",
                   help="adversarial frames (an `edge-guard attack` folder) to measure detection "
                        "rate and AUC on; repeatable")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the patch pairs (and the export's check frames) (default: 0)")
    p.add_argument("--clips", type=Path, default=None, metavar="DIR",
                   help="benign driving clips (a `generate --clips` folder, or a folder of videos, one "
                        "drive each): calibrate the sequential alarm on them for --alarm-rate and store "
                        "it in guard.json (with --extend: added to the bundle as it is)")
    p.add_argument("--clips-split", default="val", metavar="SPLIT",
                   help="split of a generated --clips folder (default: val)")
    p.add_argument("--alarm-rate", type=positive_float, default=1.0, metavar="PER_HOUR",
                   help="false alarms per hour of driving the alarm may raise (default: 1)")
    p.add_argument("--alarm-fps", type=positive_float, default=15.0, metavar="FPS",
                   help="checked frames per second of the streams it will watch (default: 15)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default) for the PyTorch model")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_onnx_options(p, "wrapped, unchanged inside, into the bundle instead of exporting --model "
                        "(docs/your-model.md)")
    p.set_defaults(model=None)  # model_or_onnx: the shipped model unless --model or --onnx
    p.add_argument("--allow-non-trt", action="store_true",
                   help="with --onnx: write the bundle even when the graph fails the TensorRT-compatibility "
                        "check (it then runs on ONNX Runtime only)")
    p.set_defaults(func=run)
    _DEFAULTS.update({dest: p.get_default(dest) for dest in _SETTINGS})


#: Options that set what --extend reads from the bundle instead (refused with it).
_SETTINGS = ("split", "frame", "patch", "detector", "statistic", "min_pixels", "b_low", "b_high", "pairs",
             "rule", "fpr", "calib_frames", "holdout_frames", "conditions", "condition_frames", "adversarial",
             "seed", "every")
_DEFAULTS: dict = {}


def _ks(text: str):
    """--ks: 'none' (K alone) or comma-separated K values."""
    if text.strip() == "none":
        return ()
    from edge_guard.calibration.k_thresholds import parse_ks
    from edge_guard.errors import UserError

    try:
        return parse_ks(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _summary(result) -> list:
    doc = result.doc
    det, ev = doc["detector"], doc["provenance"]["evaluation"]
    rule = det["threshold_rule"]
    h, w = doc["frame"]["height"], doc["frame"]["width"]
    target = f" (target FPR {rule['target_fpr']:g})" if rule.get("target_fpr") is not None else ""
    geometry = f"b=[{det['b_low']},{det['b_high']}), " if "b_low" in det else ""
    lines = [f"wrote {result.bundle}/guard.json: {det['method']} detector ({det.get('statistic', 'miou')}), "
             f"frame {h}x{w}, s={det['patch_size']}, {geometry}K={det['k']}",
             f"threshold {det['threshold']:.4f} by rule {rule['rule']}{target}",
             f"  calibration: {rule['benign_frames']} benign frames, FPR {rule['achieved_fpr']:.4f}, "
             f"score min {ev['calibration']['min']:.4f} median {ev['calibration']['quantiles']['0.5']:.4f}"]
    for name, c in (rule.get("conditions") or {}).items():
        lines.append(f"  {name + ':':<12} {c['frames']} frames, its own threshold {c['threshold']:.4f}, "
                     f"FPR {c['achieved_fpr']:.4f} at the bundle's")
    if "holdout" in ev:
        hold = ev["holdout"]
        lines.append(f"  held out:    {hold['frames']} benign frames, FPR {hold['achieved_fpr']:.4f}, "
                     f"score min {hold['min']:.4f} median {hold['quantiles']['0.5']:.4f}")
    for name, adv in (ev.get("adversarial") or {}).items():
        lines.append(f"  {name}: {adv['frames']} adversarial frames, detection rate "
                     f"{adv['detection_rate']:.4f}, AUC {adv['auc']:.4f}, mean score {adv['mean']:.4f}")
    return lines + _ks_lines(doc)


def _ks_lines(doc: dict) -> list:
    """One line per K of detector.thresholds_by_k, with its calibration and held-out FPR."""
    table = doc["detector"].get("thresholds_by_k")
    if not table:
        return []
    by_k = (doc["provenance"].get("thresholds_by_k") or {}).get("by_k", {})
    lines = [f"thresholds for {len(table)} K (for `edge-guard run --fps`):"]
    for k, t in table.items():
        rec = by_k.get(k, {})
        fprs = ", ".join(f"{what} FPR {rec[key]:.4f}" for what, key in (("calibration", "calibration_fpr"),
                                                                       ("held-out", "holdout_fpr")) if key in rec)
        own = " (the bundle's K)" if int(k) == doc["detector"]["k"] else ""
        lines.append(f"  K={k:<4} threshold {t:.4f}{own}" + (f", {fprs}" if fprs else ""))
    return lines


def _extend(args) -> int:
    """--extend: thresholds for more K added to the bundle --out."""
    from edge_guard.cli._offline import pick_device
    from edge_guard.errors import UserError

    given = [dest for dest in _SETTINGS if getattr(args, dest) != _DEFAULTS[dest]]
    if given:
        option = {"pairs": "k"}.get(given[0], given[0]).replace("_", "-")
        raise UserError(f"--extend reads the calibration settings from {args.out}/guard.json: leave out "
                        f"--{option} (or recalibrate without --extend)")
    if args.clips is not None:
        from edge_guard.calibration.data.clips import clip_paths

        clip_paths(args.clips, args.clips_split)  # one-line error before any scoring
    if args.clips is None or args.ks is not None:
        from edge_guard.calibration.extend_ks import extend_bundle

        doc = extend_bundle(args.out, args.ks, model_or_onnx(args)[0], data=args.data, arch=args.arch,
                            device=pick_device(args.device), progress=not args.quiet)
        print(f"{args.out}/guard.json: K={doc['detector']['k']} keeps threshold {doc['detector']['threshold']!r}")
        print("\n".join(_ks_lines(doc)))
    _add_alarm(args)
    return 0


def _add_alarm(args) -> None:
    """--clips: the sequential alarm calibrated on them, written into guard.json."""
    if args.clips is None:
        return
    from edge_guard.calibration.alarm_calibrate import add_alarm

    s = add_alarm(args.out, args.clips, split=args.clips_split, per_hour=args.alarm_rate, fps=args.alarm_fps,
                  progress=not args.quiet)
    cal = s["calibration"]
    print(f"{args.out}/guard.json: sequential alarm (CUSUM) h={s['h']:.3f} for {s['target_per_hour']:g} false "
          f"alarms an hour at {s['fps']:g} frames/s and K={s['k']}, from {cal['benign_frames']} benign frames "
          f"in {cal['clips']} clips ({cal['extrapolation']} extrapolation; {cal['benign_false_alarms']} alarms "
          "on the clips themselves)")


def _model(args):
    """The checkpoint path, or the user's ONNX with its conventions (--onnx)."""
    model, options = model_or_onnx(args)
    if options is None:
        return model
    from edge_guard.calibration.model_source import OnnxModel

    classes = options.pop("classes")
    return OnnxModel(model, options, classes, require_trt=not args.allow_non_trt)


def _check_onnx_args(args) -> None:
    """--onnx and --model/--arch exclusive; convention options only with --onnx."""
    from edge_guard.errors import UserError

    model_or_onnx(args)
    if args.allow_non_trt and args.onnx is None:
        raise UserError("--allow-non-trt is for your own ONNX model (--onnx MODEL.onnx): an exported "
                        "checkpoint must pass the TensorRT check")
    if args.extend and args.onnx is not None:
        raise UserError("--extend reads the model from the bundle: leave out --onnx")


def run(args) -> int:
    import sys

    from edge_guard.cli._offline import pick_device, require_export_tools
    from edge_guard.errors import UserError, require
    from edge_guard.writable import check_folder, removed_if_left_empty

    require_export_tools("calibrate")  # all of them before the model or the data load
    require("sklearn", "offline", "calibrate (AUC)")
    _check_onnx_args(args)
    if args.extend:
        return _extend(args)
    if args.data is None:
        raise UserError("--data DIR is required: the benign frames to calibrate on (only --extend "
                        "can read them from the bundle)")
    check_folder(args.out, "--out")
    if args.clips is not None:
        from edge_guard.calibration.data.clips import clip_paths

        clip_paths(args.clips, args.clips_split)  # one-line error before the long calibration
    from edge_guard.calibration.calibrate import CalibrationSettings, calibrate
    from edge_guard.calibration.k_thresholds import default_ks

    if args.rule not in ("fpr", "min-benign"):
        raise UserError(f"unknown --rule {args.rule!r}: choose fpr or min-benign")
    from edge_guard.calibration.data.conditions import CONDITIONS

    conditions = {"all": tuple(CONDITIONS), "none": ()}.get(
        args.conditions, tuple(c.strip() for c in args.conditions.split(",") if c.strip()))
    settings = CalibrationSettings(
        conditions=conditions, condition_frames=args.condition_frames,
        method=args.detector, statistic=args.statistic, min_pixels=args.min_pixels, frame_size=args.frame, patch=args.patch, b_low=args.b_low, b_high=args.b_high, k=args.pairs,
        rule=args.rule, fpr=args.fpr if args.rule == "fpr" else None, calib_frames=args.calib_frames,
        holdout_frames=args.holdout_frames, split=args.split, every=args.every, seed=args.seed,
        ks=default_ks(args.pairs) if args.ks is None else args.ks)
    settings.check()  # one-line errors before the device or the data are touched
    with removed_if_left_empty(args.out):
        result = calibrate(_model(args), args.data, args.out, settings, adversarial=args.adversarial,
                           arch=args.arch, device=pick_device(args.device), progress=not args.quiet)
    for warning in result.warnings:
        print(f"edge-guard calibrate: warning: {warning}", file=sys.stderr)
    print("\n".join(_summary(result)))
    _add_alarm(args)
    return 0
