"""`edge-guard export`: the segmentation net as a verified ONNX graph for batches of patches."""

import argparse

from edge_guard.cli._args import add_model_option, at_most, frame_size, k_count, side
from edge_guard.limits import MAX_FRAMES

EXAMPLE = """\
example (the shipped model, 256px patches as the shipped bundle; DRN-D-22 at the paper's 512):
  edge-guard export --out bundle
  edge-guard export --model runs/drn.pt --arch drn_d_22 --out bundle-drn --patch 512 --frame 1024x2048

The graph takes uint8 RGB patches [batch, s, s, 3] (name "image", dynamic batch) and
normalises inside; it outputs int32 labels [batch, s, s] (or float32 logits with
--output logits). Before model.onnx is written the export checks itself: onnx.checker,
ONNX Runtime against PyTorch on generated street frames (>= 99.9% equal labels, mean
pair mIoU within 1e-3) and the TensorRT 10 compatibility check; the figures are printed
and kept in export.json with the model section for guard.json.
"""


def register(sub) -> None:
    p = sub.add_parser("export", help="export the segmentation net to a verified ONNX graph",
                       description=__doc__, epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_option(p)
    p.add_argument("--out", required=True, metavar="BUNDLE_DIR",
                   help="bundle folder to write model.onnx and export.json into (created)")
    p.add_argument("--patch", type=side, default=256,
                   help="patch side s in pixels, fixed in the graph (default: 256, as calibrate and the "
                        "shipped bundle: the paper's 512 on 1024x2048 frames, at half resolution)")
    p.add_argument("--output", choices=("labels", "logits"), default="labels",
                   help="labels: in-graph ArgMax, int32 [batch,s,s] (default); logits: float32 [batch,C,s,s]")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 17..20 (default: 17)")
    p.add_argument("--verify-frames", type=at_most(MAX_FRAMES, "frames"), default=2, metavar="N",
                   help="generated frames for the ONNX Runtime vs PyTorch check (default: 2)")
    p.add_argument("--verify-pairs", type=k_count, default=8, metavar="K",
                   help="patch pairs per verification frame (default: 8)")
    p.add_argument("--verify-size", type=frame_size, default=None, metavar="HxW",
                   help="verification frame size (default: room for every pair displacement)")
    p.add_argument("--frame", type=frame_size, default=None, metavar="HxW",
                   help="also write segment.onnx, the net over whole HxW frames: the plain-segmentation "
                        "baseline `edge-guard bench` compares the guard with (calibrate writes it at its "
                        "frame size)")
    p.add_argument("--seed", type=int, default=0, help="seed of the verification frames and pairs")
    p.add_argument("--allow-non-trt", action="store_true",
                   help="write the graph even if the TensorRT 10 check fails (ONNX Runtime only)")
    p.set_defaults(func=run)


def run(args) -> int:
    from edge_guard.cli._offline import require_export_tools
    from edge_guard.writable import check_folder, removed_if_left_empty

    require_export_tools("export")  # all of them before the model loads
    check_folder(args.out, "--out")
    from edge_guard.export.exporter import export_bundle

    with removed_if_left_empty(args.out):
        record = export_bundle(args.model, args.out, patch=args.patch, output=args.output,
                               opset=args.opset, arch=args.arch, frames=args.verify_frames,
                               pairs=args.verify_pairs, seed=args.seed, frame_size=args.verify_size,
                               require_trt=not args.allow_non_trt, segment_frame=args.frame)
    model = record["model"]
    print(f"wrote {args.out}/{model['file']} (sha256 {model['sha256'][:16]}..., "
          f"{model['output']['kind']} output, {model['patch_size']}px patches) and {args.out}/export.json")
    return 0
