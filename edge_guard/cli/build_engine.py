"""`edge-guard build-engine`: build (or reuse) a checked TensorRT engine for this GPU."""

import argparse

from edge_guard.cli._args import at_most, existing_path, k_count
from edge_guard.limits import MAX_BATCH

EXAMPLE = """\
example (on the vehicle, once per device and TensorRT version):
  edge-guard build-engine bundle --precision fp16
  edge-guard build-engine bundle --precision int8 --calib-frames camera_samples/
  edge-guard build-engine bundle --precision int8 --onnx-only     # workstation: no GPU needed

The precision lives in the ONNX graph (TensorRT 11 builds strongly typed networks only):
fp16 -> model.fp16.onnx, int8 -> model.int8.onnx (Q/DQ, calibrated on patches of the
calibration frames; generated street scenes without --calib-frames). Each is checked under
ONNX Runtime against the fp32 model (label agreement, spatial-score shift, false positives
at the bundle's threshold), then the engine is built and checked the same way on the GPU.
Only a passing engine is kept, as engines/model.<precision>.sm<XY>.trt<ver>.<gpu>.engine
with a sidecar JSON; a cached engine that still matches is reused. A bundle with a
full-frame graph (segment.onnx) gets engines/segment.<precision>...engine too, checked the
same way on the calibration frames (label agreement with the fp32 graph).
"""


def register(sub) -> None:
    p = sub.add_parser("build-engine", help="build a checked TensorRT engine from a bundle",
                       description=__doc__, epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=existing_path, metavar="BUNDLE_DIR", help="bundle folder (from export)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16",
                   help="engine precision (default: fp16)")
    p.add_argument("--calib-frames", type=existing_path, default=None, metavar="DIR",
                   help="folder of camera frames for int8 calibration and the checks "
                        "(default: generated street scenes)")
    p.add_argument("--calib-count", type=at_most(MAX_BATCH, "frames"), default=16, metavar="N",
                   help="calibration frames to use (default: 16)")
    p.add_argument("--calib-pairs", type=k_count, default=4, metavar="K",
                   help="patch pairs per calibration frame for the checks (default: 4)")
    p.add_argument("--calib-method", choices=("percentile", "minmax"), default="percentile",
                   help="int8 activation ranges: percentile of |x| (default) or full min/max")
    p.add_argument("--calib-percentile", type=float, default=99.9, metavar="P",
                   help="percentile for --calib-method percentile (default: 99.9)")
    p.add_argument("--max-pairs", type=k_count, default=50, metavar="K",
                   help="largest K the engine must run: profile max = 2K patches for pairs, K for the "
                        "frame detector (default: 50)")
    p.add_argument("--workspace", type=at_most(1 << 20, "MiB, 1 TiB"), default=None, metavar="MiB",
                   help="builder workspace limit in MiB (default: TensorRT's)")
    p.add_argument("--onnx-only", action="store_true",
                   help="make and check the fp16/int8 ONNX under ONNX Runtime only (no TensorRT)")
    p.add_argument("--force", action="store_true", help="rebuild even if a valid engine is cached")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration frames and pairs")
    p.set_defaults(func=run)


def run(args) -> int:
    from edge_guard.errors import require

    require("onnx", "gpu", "building engines")
    require("onnxruntime", "gpu", "checking engines")
    from edge_guard.engines.trt_build import build_engine

    summary = build_engine(args.bundle, args.precision, calib_frames=args.calib_frames,
                           calib_count=args.calib_count, calib_pairs=args.calib_pairs,
                           max_pairs=args.max_pairs, workspace_mib=args.workspace,
                           onnx_only=args.onnx_only, force=args.force, seed=args.seed,
                           calibration_method=args.calib_method, percentile=args.calib_percentile)
    print(f"ok: {summary.get('engine') or summary['onnx']}")
    if "frame" in summary:
        print(f"ok: {summary['frame'].get('engine') or summary['frame']['onnx']}")
    return 0
