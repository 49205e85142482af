"""argparse value types shared by the subcommands; each rejects bad input in one line."""

import argparse
from pathlib import Path


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


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def existing_path(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    return path


def add_model_option(parser: argparse.ArgumentParser) -> None:
    """--model CKPT, defaulting to the shipped small model."""
    from edge_guard.paths import DEFAULT_MODEL

    parser.add_argument(
        "--model", type=existing_path, default=DEFAULT_MODEL, metavar="CKPT",
        help="model checkpoint (.pt from `edge-guard train`, or an official DRN/DLA "
             "checkpoint with --arch); default: the shipped small model")
