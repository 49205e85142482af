"""argparse value types shared by the subcommands; each rejects bad input in one line."""

import argparse
from pathlib import Path


#: What K counts, for every option that sets it (--k, alias --pairs).
K_HELP = "patches (frame detector) or pairs (pairs detector)"


def frame_size(text: str) -> tuple[int, int]:
    """'512x1024' -> (height, width)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size: write HEIGHTxWIDTH, e.g. 512x1024") from None
    if h < 16 or w < 16:
        raise argparse.ArgumentTypeError(f"{text!r} is too small: at least 16x16")
    return h, w


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def at_least(minimum: int):
    """An argparse type: an integer >= ``minimum``."""
    def parse(text: str) -> int:
        value = positive_int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be >= {minimum}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


def positive_float(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return value


def probability(text: str) -> float:
    """A number in [0, 1]."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a probability in [0, 1]")
    return value


def existing_path(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    return path


def check_writable(path, option: str) -> None:
    """UserError now, not after a long run, when ``path`` cannot be written; creates nothing."""
    import os

    from edge_guard.errors import UserError

    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder: give a file name, e.g. {path / 'results.json'}")
    parent = path.parent if str(path.parent) else Path(".")
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UserError(f"cannot write {option} {path}: {existing or parent} is not a writable folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"cannot write {option} {path}: the file is read-only")


def add_model_option(parser: argparse.ArgumentParser) -> None:
    """--model CKPT (default: the shipped small model) and --arch for official checkpoints."""
    from edge_guard.paths import DEFAULT_MODEL

    parser.add_argument(
        "--model", type=existing_path, default=DEFAULT_MODEL, metavar="CKPT",
        help="model checkpoint (.pt from `edge-guard train`, or an official DRN/DLA "
             "checkpoint with --arch); default: the shipped small model")
    parser.add_argument(
        "--arch", default=None,
        help="architecture of an official checkpoint (drn_d_22, dla34); not needed for ours")


def add_runtime_options(parser: argparse.ArgumentParser, unit: str = "frame") -> None:
    """--bundle, --backend, --k (alias --pairs), --threads and --precision, shared by the
    commands that run a Guard."""
    from edge_guard.backends import BACKENDS

    parser.add_argument("--bundle", default=None, metavar="DIR",
                        help="bundle folder (guard.json + model.onnx); default: the shipped bundle")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="inference backend (default: auto: TensorRT with an engine built for this "
                             "GPU, else ONNX Runtime CUDA, else ONNX Runtime CPU)")
    parser.add_argument("--k", "--pairs", dest="pairs", type=positive_int, default=None, metavar="K",
                        help=f"{K_HELP} per {unit} (default: the bundle's K; its threshold was set for "
                             "that K, so another K changes the false-positive rate)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads of the backend (default: the backend's choice)")
    parser.add_argument("--precision", choices=("fp16", "int8", "fp32"), default=None,
                        help="TensorRT engine to run (built by `edge-guard build-engine`; default: "
                             "the first valid of fp16, int8, fp32)")


def add_statistic_options(parser: argparse.ArgumentParser, what: str = "a comparison scores") -> None:
    """--statistic and --min-pixels (miou-min's class size), shared by calibrate and evaluate."""
    from edge_guard.consistency import DEFAULT_STATISTIC, STATISTICS

    parser.add_argument("--statistic", choices=STATISTICS, default=DEFAULT_STATISTIC,
                        help=f"what {what}: miou-min (mIoU over classes with at least --min-pixels "
                             "pixels in either region; default), miou (the paper's: every class), "
                             "agreement (the fraction of pixels labelled alike)")
    parser.add_argument("--min-pixels", type=non_negative_int, default=None,
                        help="for miou-min: classes below this many pixels in both regions are left "
                             "out (default: 0.1%% of a patch, 64 px at --patch 256)")
