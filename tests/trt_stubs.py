"""TensorRT's Python API as the ``tensorrt-stubs`` package states it, vendored in ``typings/``.

Why vendored rather than an extra: every tensorrt-stubs release (10.8 to 10.13) requires
``tensorrt==<its version>``, which pulls TensorRT's multi-GB libraries from pypi.nvidia.com
(and would make ``import tensorrt`` succeed on CI's CPU machines); installed with
``--no-deps`` its ``tensorrt/__init__.pyi`` turns ``import tensorrt`` into an empty namespace
package, so the backend would think TensorRT is installed. And the stubs do not parse: they
name parameters ``in`` and put required parameters after defaulted ones (pybind11-stubgen
output), so mypy and ``ast`` both refuse them. ``refresh`` repairs those two things
mechanically and drops the docstrings (they are two thirds of the text and state no API);
nothing else is edited (five lines of 10.13 needed the repair).

Refresh after a new release (no TensorRT needed)::

    pip download tensorrt-stubs==<version> --no-deps -d /tmp/stubs
    python tests/trt_stubs.py /tmp/stubs/tensorrt_stubs-<version>-py3-none-any.whl

Reading the stubs (the drift test): ``load_api()`` -> module-level names and classes, each
class's members with their parameters, defaults, kind (method, property, attribute) and,
for enum members, the integer value stubgen wrote in a ``# value = <...: N>`` comment.
"""

from __future__ import annotations

import ast
import keyword
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TYPINGS = ROOT / "typings"
FILES = ("tensorrt/__init__.pyi", "tensorrt_bindings/__init__.pyi", "tensorrt_bindings/tensorrt.pyi")
_VALUE = re.compile(r"#\s*value\s*=\s*<[\w.]+:\s*(-?\d+)>")


# ---- repair ---------------------------------------------------------------------------------

def _split_params(text: str) -> list[str]:
    """A def's parameter list split on its top-level commas (annotations hold brackets)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _fix_def(line: str) -> str:
    """Rename keyword parameters (``in`` -> ``in_``); drop the defaults of parameters before a
    required one (pybind11 accepts that order, Python does not: they are all required then)."""
    head, sep, rest = line.partition("(")
    depth, end = 1, None
    for i, ch in enumerate(rest):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0:
            end = i
            break
    if not sep or end is None:
        return line
    params = _split_params(rest[:end])
    fixed = []
    for p in params:
        name, colon, tail = p.partition(":")
        if keyword.iskeyword(name.strip()):
            p = f"{name.strip()}_{colon}{tail}"
        fixed.append(p)
    last_required = max((i for i, p in enumerate(fixed)
                         if "=" not in p and not p.startswith("*")), default=-1)
    fixed = [p.split("=")[0].rstrip() if i < last_required and "=" in p else p
             for i, p in enumerate(fixed)]
    return f"{head}({', '.join(fixed)}{rest[end:]}"


def _strip_docstrings(text: str) -> str:
    lines = text.split("\n")
    drop: dict[int, str] = {}  # first line (0-based) -> indentation, for a body left empty
    spans = []
    for node in ast.walk(ast.parse(text)):
        body = getattr(node, "body", None)
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) or not body:
            continue
        first = body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                and isinstance(first.value.value, str):
            spans.append((first.lineno - 1, first.end_lineno or first.lineno))
            if len(body) == 1:
                drop[first.lineno - 1] = " " * first.col_offset
    keep = [True] * len(lines)
    for lo, hi in spans:
        for i in range(lo, hi):
            keep[i] = False
    return "\n".join(f"{drop[i]}..." if i in drop else line
                     for i, line in enumerate(lines) if keep[i] or i in drop)


def repair(text: str) -> str:
    """The stub text made valid Python, its docstrings dropped (API unchanged otherwise)."""
    lines = text.replace("\r\n", "\n").split("\n")
    for _ in range(len(lines)):
        try:
            ast.parse("\n".join(lines))
            break
        except SyntaxError as exc:
            i = (exc.lineno or 0) - 1
            fixed = _fix_def(lines[i]) if 0 <= i < len(lines) else lines[i]
            if fixed == lines[i]:
                raise
            lines[i] = fixed
    return _strip_docstrings("\n".join(lines))


def refresh(wheel: Path, out: Path = TYPINGS) -> str:
    """Write the repaired stubs of a tensorrt-stubs wheel into ``out``; returns its version."""
    version = re.match(r"tensorrt_stubs-([^-]+)-", wheel.name).group(1)
    with zipfile.ZipFile(wheel) as zf:
        for name in FILES:
            text = repair(zf.read(name).decode())
            header = (f"# tensorrt-stubs {version} (MIT licence: typings/LICENSE.tensorrt-stubs), "
                      "repaired by tests/trt_stubs.py\n")
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text(header + text.rstrip("\n") + "\n")
        lic = next(n for n in zf.namelist() if n.endswith("licenses/LICENSE"))
        (out / "LICENSE.tensorrt-stubs").write_bytes(zf.read(lic))
    return version


def stubs_version() -> str | None:
    path = TYPINGS / FILES[0]
    if not path.is_file():
        return None
    match = re.match(r"# tensorrt-stubs (\S+)", path.read_text())
    return match.group(1) if match else None


# ---- reading ----------------------------------------------------------------------------------

@dataclass
class Member:
    kind: str                     # "method", "property" or "attribute"
    signatures: list = field(default_factory=list)  # per overload: [(name, has_default)], self dropped
    value: int | None = None      # an enum member's value


def _params(fn: ast.FunctionDef) -> list[tuple[str, bool]]:
    a = fn.args
    positional = a.posonlyargs + a.args
    defaults = [False] * (len(positional) - len(a.defaults)) + [True] * len(a.defaults)
    out = list(zip([p.arg for p in positional], defaults))
    out += [(p.arg, d is not None) for p, d in zip(a.kwonlyargs, a.kw_defaults)]
    is_static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in fn.decorator_list)
    return out if is_static else out[1:]


def _members(cls: ast.ClassDef, lines: list[str]) -> dict[str, Member]:
    members: dict[str, Member] = {}
    for node in cls.body:
        if isinstance(node, ast.FunctionDef):
            decorators = {d.id if isinstance(d, ast.Name) else getattr(d, "attr", "")
                          for d in node.decorator_list}
            if "property" in decorators:
                members[node.name] = Member("property")
            elif "setter" not in decorators:
                members.setdefault(node.name, Member("method")).signatures.append(_params(node))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            match = _VALUE.search(lines[node.lineno - 1])
            members[node.target.id] = Member("attribute", value=int(match.group(1)) if match else None)
        elif isinstance(node, ast.ClassDef):
            members[node.name] = Member("attribute")
    return members


@dataclass
class Api:
    version: str
    names: set           # what ``import tensorrt`` offers at module level
    classes: dict        # class name -> {member name: Member}


def load_api(root: Path = TYPINGS) -> Api:
    classes: dict[str, dict[str, Member]] = {}
    text = (root / FILES[2]).read_text()
    lines = text.split("\n")
    for node in ast.parse(text).body:
        if isinstance(node, ast.ClassDef):
            classes[node.name] = _members(node, lines)
    names: set[str] = set()
    for node in ast.parse((root / FILES[0]).read_text()).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
    return Api(stubs_version() or "?", names, classes)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/trt_stubs.py tensorrt_stubs-<version>-py3-none-any.whl")
    print(f"typings/: tensorrt-stubs {refresh(Path(sys.argv[1]))}")
