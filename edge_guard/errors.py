"""Errors a user can fix. The CLI prints them as one line and exits with status 2."""

import contextlib
import os
import sys


class UserError(Exception):
    """A mistake in the user's input (bad path, value, file): one line, no traceback."""


class DataError(UserError):
    """A data folder or file that cannot be used as given."""


class MissingDependency(UserError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str, extra: str, purpose: str):
    """Import an optional heavy dependency, or raise MissingDependency naming the extra.

    Example: ``torch = require("torch", "offline", "training")``.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"{purpose} needs {module.split('.')[0]}, which is not installed: "
            f"pip install 'edge-guard[{extra}]'" + (
                " (install torch==2.13.0 first)" if module.startswith("torch") else "")
        ) from exc


def interrupted(prog: str) -> int:
    """End a command because of Ctrl-C: one line on stderr, status 130 (128 + SIGINT)."""
    from . import interrupts

    interrupts.take()
    with contextlib.suppress(OSError, ValueError):
        print(f"{prog}: interrupted", file=sys.stderr)
    return 130


def exit_status(run, prog: str) -> int:
    """Call ``run()`` as a command's body: its status, or 2 after one line on stderr for a
    UserError, or 130 when interrupted. The CLI and the benchmark scripts share it."""
    from . import interrupts

    try:
        status = int(run() or 0)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted(prog)
    except BrokenPipeError:  # the reader of our output left (`... | head`): not an error to report
        with contextlib.suppress(OSError, ValueError):  # keep the exit-time flush from failing too
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by it
    if interrupts.requested():  # pressed, swallowed by a C extension, and the command ran on
        return interrupted(prog)
    return status
