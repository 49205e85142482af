"""Run Python in a subprocess where some top-level modules cannot be imported.

The runtime must work without torch (vehicles), the kernels without cuda-python: these tests
run the code in a fresh interpreter whose import system refuses those modules, as if they
were not installed.
"""

import subprocess
import sys
import textwrap


def blocker(*modules: str) -> str:
    """Python source that makes ``modules`` (dotted names allowed: ``edge_guard.export``) and
    their submodules raise ImportError."""
    return textwrap.dedent(f"""
        import importlib.abc, sys

        class _Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if any(name == m or name.startswith(m + ".") for m in {tuple(modules)!r}):
                    raise ImportError(name + " is blocked in this test")
                return None

        sys.meta_path.insert(0, _Block())
    """)


def run_without(modules, body: str, args=(), **kwargs) -> subprocess.CompletedProcess:
    """Run ``body`` (Python source) with ``modules`` blocked; extra kwargs go to subprocess.run."""
    script = blocker(*modules) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True,
                          text=True, **kwargs)
