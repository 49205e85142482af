"""The options that describe a user's segmentation ONNX (calibrate --onnx, evaluate --onnx).

Only argparse here: the conventions are judged by ``edge_guard.export.onnx_conventions``
(offline), so the runtime's CLI does not import it to print --help.
"""

from pathlib import Path

ONNX_HELP = """\
your own model (--onnx MODEL.onnx): the graph's input is fed as
    (pixel / SCALE - MEAN) / STD, in --channels order, laid out as --layout
with mean and std in that channel order. Options win over the graph's metadata_props
(keys layout, channels, scale, mean, std, output, upsample, class_names), which win over the
defaults. Logits below the input's resolution are upsampled before the argmax (--upsample);
labels by nearest neighbour. torchvision: --scale 255 --mean 0.485,0.456,0.406
--std 0.229,0.224,0.225. mmsegmentation/mmdeploy: --scale 1 --mean 123.675,116.28,103.53
--std 58.395,57.12,57.375 (docs/your-model.md)."""


def add_onnx_options(p, what: str) -> None:
    """--onnx and the conventions of the graph; ``what`` says what the graph is used for."""
    g = p.add_argument_group("your own model as ONNX (instead of --model)")
    g.add_argument("--onnx", type=Path, default=None, metavar="MODEL.onnx",
                   help=f"a segmentation graph exported by your own stack, {what}")
    g.add_argument("--layout", choices=("NCHW", "NHWC"), default=None,
                   help="the graph's input layout (default: NCHW, or the graph's metadata)")
    g.add_argument("--channels", choices=("RGB", "BGR"), default=None,
                   help="the graph's channel order (default: RGB)")
    g.add_argument("--scale", type=float, default=None,
                   help="pixels are divided by this first: 255 for a 0-1 input, 1 for 0-255 (default: 255)")
    g.add_argument("--mean", default=None, metavar="M1,M2,M3",
                   help="subtracted after --scale, in the graph's channel order (default: 0,0,0)")
    g.add_argument("--std", default=None, metavar="S1,S2,S3",
                   help="divided by after --mean, in the graph's channel order (default: 1,1,1)")
    g.add_argument("--output", choices=("auto", "logits", "labels"), default=None,
                   help="what the graph gives: logits (N, C, h, w) or class ids; auto (default) "
                        "reads it from the output's type: integers are labels")
    g.add_argument("--upsample", choices=("bilinear", "bilinear-align-corners", "nearest"), default=None,
                   help="how logits below the input's size are brought up to it: bilinear (default; "
                        "PyTorch's align_corners=False, as mmsegmentation and torchvision), "
                        "bilinear-align-corners, nearest")
    g.add_argument("--output-name", default=None, metavar="NAME",
                   help="the graph output that holds the segmentation, when it has several "
                        "(default: the first)")
    g.add_argument("--classes", default=None, metavar="FILE|N",
                   help="class names, one per line in a text file, or a class count N (default: "
                        "the logits' channel count, Cityscapes names for 19)")


def onnx_options(args) -> dict:
    """{field: value or None} of the convention options, for onnx_conventions.resolve."""
    return {"layout": args.layout, "channels": args.channels, "scale": args.scale, "mean": args.mean,
            "std": args.std, "output": args.output, "upsample": args.upsample,
            "output_name": args.output_name}


def model_or_onnx(args) -> tuple:
    """(checkpoint path, None) for --model (the shipped model when neither is given), or
    (ONNX path, {convention options, "classes"}) for --onnx. The parser's --model default must
    be None (``p.set_defaults(model=None)``) so that a given --model is seen. UserError for
    both at once, --arch with --onnx, or convention options without --onnx."""
    from edge_guard.errors import UserError
    from edge_guard.paths import DEFAULT_MODEL

    options = {**onnx_options(args), "classes": args.classes}
    if args.onnx is None:
        given = [k for k, v in options.items() if v is not None]
        if given:
            raise UserError(f"--{given[0].replace('_', '-')} describes an ONNX graph: it needs --onnx MODEL.onnx")
        return (DEFAULT_MODEL if args.model is None else args.model), None
    if args.model is not None:
        raise UserError("--onnx and --model are exclusive: give your ONNX graph or a checkpoint")
    if getattr(args, "arch", None) is not None:
        raise UserError("--arch names an official checkpoint's architecture: an ONNX graph needs none")
    return args.onnx, options
