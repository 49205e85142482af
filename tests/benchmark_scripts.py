"""benchmarks/NAME.py loaded as a module: the scripts live beside the package, not in it."""

import importlib.util

import pytest

from edge_guard.paths import ASSETS


def load_benchmark(name: str):
    """The module of benchmarks/NAME.py; the test is skipped when the package was installed
    from a wheel (benchmarks/ is not beside it)."""
    path = ASSETS.parent.parent / "benchmarks" / f"{name}.py"
    if not path.is_file():
        pytest.skip("benchmarks/ is not beside the package (installed from a wheel)")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
