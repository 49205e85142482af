"""Run the edge-guard CLI in-process and capture what it prints (shared by the CLI tests)."""

import contextlib
import io

from edge_guard.cli import main


def run_cli(argv):
    """(exit status, stdout, stderr) of ``edge-guard ARGV``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()
