"""The runtime (edge_guard/ and kernels/) must import without torch and without the offline tools."""

from blocked_imports import run_without

SCRIPT = """
    import importlib, pkgutil, sys

    import edge_guard, edge_guard.kernels
    names = []
    for pkg in (edge_guard, edge_guard.kernels):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            names.append(info.name)
    for name in names:
        if name.split(".")[1] in ("calibration", "export"):
            continue
        importlib.import_module(name)
    bad = sorted(m for m in sys.modules
                 if m == "torch" or m.startswith(("edge_guard.calibration", "edge_guard.export")))
    print(len(names), "modules")
    assert not bad, bad
    # The CLI must build its parser (every subcommand's --help) without torch too.
    from edge_guard.cli import build_parser
    build_parser()
    assert "torch" not in sys.modules
"""


def test_runtime_imports_without_torch():
    proc = run_without(["torch"], SCRIPT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert int(proc.stdout.split()[0]) >= 5


def test_offline_command_without_torch_names_the_extra(tmp_path):
    """With torch missing, an offline subcommand prints one line naming the extra, exit 2."""
    proc = run_without(["torch"], """
        import sys
        from edge_guard.cli import main
        sys.exit(main(sys.argv[1:]))
    """, args=["train", "--data", tmp_path, "--out", tmp_path / "m.pt"])
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "edge-guard[offline]" in err[0], proc.stderr
