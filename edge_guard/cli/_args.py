"""argparse value types shared by the subcommands; each rejects bad input in one line."""

import argparse
from pathlib import Path

from edge_guard.limits import MAX_PAIRS, MAX_SIDE, thread_count_error


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
    if h > MAX_SIDE or w > MAX_SIDE:
        raise argparse.ArgumentTypeError(f"{text!r} is too large: at most {MAX_SIDE} pixels a side")
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


def at_most(maximum: int, what: str = "", minimum: int = 1):
    """An argparse type: an integer in [``minimum``, ``maximum``]; ``what`` names the bound."""
    def parse(text: str) -> int:
        value = non_negative_int(text) if minimum == 0 else positive_int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be >= {minimum}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"{text!r} is too large: at most {maximum}"
                                             + (f" ({what})" if what else ""))
        return value
    parse.__name__ = f"integer <= {maximum}"
    return parse


#: K of one check: patches or pairs per frame.
k_count = at_most(MAX_PAIRS, "patches or pairs per frame")
#: A patch side in pixels.
side = at_most(MAX_SIDE, "pixels a side")


def cpu_count_type(what: str = "threads", minimum: int = 1):
    """An argparse type: a count of threads or worker processes, at most a few per usable
    core (:func:`edge_guard.limits.max_threads`); 0 allowed when ``minimum`` is 0."""
    def parse(text: str) -> int:
        value = non_negative_int(text) if minimum == 0 else positive_int(text)
        why = thread_count_error(value, what) if value else None
        if why is not None:
            raise argparse.ArgumentTypeError(why)
        return value
    parse.__name__ = f"count of {what}"
    return parse


thread_count = cpu_count_type("threads")


def bundle_folder(text: str) -> str:
    """A --bundle value: an empty one is a mistake (it would mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty --bundle: give a bundle folder, or leave the "
                                         "option out for the shipped bundle")
    return text


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


def image_value(text: str) -> float:
    """A value on [0, 1] images: a number (0.0314) or a fraction of two (8/255)."""
    num, slash, den = text.partition("/")
    if not slash:
        return positive_float(text)
    try:
        return positive_float(num) / positive_float(den)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or a fraction of two positive "
                                         "numbers such as 8/255") from None


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

    parser.add_argument("--bundle", type=bundle_folder, default=None, metavar="DIR",
                        help="bundle folder (guard.json + model.onnx); default: the shipped bundle")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="inference backend (default: auto: TensorRT with an engine built for this "
                             "GPU, else ONNX Runtime CUDA, else ONNX Runtime CPU)")
    parser.add_argument("--k", "--pairs", dest="pairs", type=k_count, default=None, metavar="K",
                        help=f"{K_HELP} per {unit} (default: the bundle's K; its threshold was set for "
                             "that K, so another K changes the false-positive rate)")
    parser.add_argument("--threads", type=thread_count, default=None,
                        help="CPU threads of the backend, at most 4 per usable core (default: the "
                             "backend's choice)")
    parser.add_argument("--precision", choices=("fp16", "int8", "fp32"), default=None,
                        help="TensorRT engine to run (built by `edge-guard build-engine`; default: "
                             "the first valid of fp16, int8, fp32)")


def add_budget_options(parser: argparse.ArgumentParser, unit: str = "frame") -> None:
    """--fps and --budget-ms (one of them): a frame-rate budget that picks K, shared by the
    commands that run a Guard on a stream of frames."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--fps", type=positive_float, default=None, metavar="F",
                       help=f"frame-rate budget: time each K the bundle holds a threshold for on the first "
                            f"{unit} and run the largest whose check keeps up with F {unit}s/s on this "
                            "device and backend (not with --k)")
    group.add_argument("--budget-ms", type=positive_float, default=None, metavar="MS",
                       help=f"the same budget as a time: MS milliseconds per {unit}")


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
