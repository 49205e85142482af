"""The ``edge-guard`` command: one argparse parser, one module per subcommand.

Every module in COMMANDS defines ``register(subparsers)``, which adds its parser and sets
``func``. Offline subcommands import torch inside ``func``, never at module level, so
``edge-guard --help`` and the runtime commands work without it.
"""

import argparse
import importlib
import sys

from edge_guard import __version__, interrupts
from edge_guard.errors import exit_status, interrupted

# Order is the order of `edge-guard --help`.
COMMANDS = [
    "demo",
    "generate",
    "train",
    "evaluate_seg",
    "attack",
    "export",
    "calibrate",
    "evaluate",
    "build_engine",
    "check",
    "run",
    "bench",
]

DESCRIPTION = """\
Detect adversarial camera frames for semantic segmentation at frame rate, with the
spatial-consistency idea of Xiao et al. (ECCV 2018): segment the frame and K random patches
of it alone, and flag the frame when the patches disagree with its labels (the paper's own
detector, K pairs of overlapping patches compared on their overlap: --detector pairs).

Start with `edge-guard demo`: the whole story on the shipped model in one command.
On the vehicle (numpy, opencv, onnxruntime or TensorRT): check, run, build-engine, bench.
Offline (the `offline` extra, i.e. PyTorch): generate, train, evaluate-seg, attack,
export, calibrate, evaluate. Every --model option defaults to the small model shipped with the
package, every --bundle option to the calibrated bundle shipped beside it.
`edge-guard COMMAND --help` explains each command with an example.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-guard", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"edge-guard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"edge_guard.cli.{name}").register(sub)
    return parser


def main(argv=None) -> int:
    # First, before the subcommands' imports: a Ctrl-C at any moment ends with 130, no traceback.
    previous = interrupts.install()
    try:
        return _main(argv)
    except KeyboardInterrupt:  # while building the parser or parsing, before exit_status's guard
        return interrupted("edge-guard")
    finally:
        interrupts.restore(previous)


def _main(argv) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage and a one-line error
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return exit_status(lambda: args.func(args), f"edge-guard {args.command}")


if __name__ == "__main__":
    sys.exit(main())
