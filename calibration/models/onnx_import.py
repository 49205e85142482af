"""Import onnx2torch where PyPI's torchvision cannot be imported beside the CPU torch build.

onnx2torch imports torchvision when it is imported, only for its NonMaxSuppression and
RoiAlign converters. On the project's machines PyPI's torchvision wheel does not load beside
torch's CPU build (``RuntimeError: operator torchvision::nms does not exist``) and no
matching CPU wheel can be installed. Segmentation graphs use neither op, so when torchvision
is missing or broken, onnx2torch is imported against a placeholder ``torchvision`` whose
``ops.nms``, ``ops.roi_align`` and ``ops.box_convert`` raise a UserError if a graph ever
reaches them. The placeholder is in ``sys.modules`` only while onnx2torch is imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import warnings

from edge_guard.errors import MissingDependency, UserError, require

#: What the user reads when a converted graph calls one of the placeholder's ops.
WHY = ("the graph uses torchvision.ops.{op} (an NMS or RoiAlign node), but torchvision cannot be "
       "imported here ({reason}); a segmentation graph does not need it: export the graph "
       "without that node, or install a torchvision that matches this torch")


def import_onnx2torch():
    """The onnx2torch module; a MissingDependency naming the ``onnx-eval`` extra without it."""
    if "onnx2torch" in sys.modules:
        return sys.modules["onnx2torch"]
    require("onnx", "onnx-eval", "evaluating an ONNX model")
    try:
        found = importlib.util.find_spec("onnx2torch") is not None
    except (ImportError, ValueError):  # blocked, or a None entry in sys.modules
        found = False
    if not found:
        raise MissingDependency("white-box attacks on an ONNX model need onnx2torch, which is not "
                                "installed: pip install 'edge-guard[onnx-eval]' (beside torch's CPU "
                                "build: pip install --no-deps onnx2torch)")
    reason = _torchvision_problem()
    if reason is None:
        return _quiet(importlib.import_module("onnx2torch"))
    _clear_torchvision()
    stub = placeholder_torchvision(reason)
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = stub, stub.ops
    try:
        return _quiet(importlib.import_module("onnx2torch"))
    finally:
        # onnx2torch keeps its references to the placeholder; nobody else should get it.
        for name in ("torchvision", "torchvision.ops"):
            if sys.modules.get(name) in (stub, stub.ops):
                del sys.modules[name]


def _quiet(module):
    """``module`` (onnx2torch), with the one warning its Slice converter raises on every graph
    that slices a shape (PyTorch's deprecated list index, still right in the torch we pin)
    silenced: a user cannot act on it."""
    warnings.filterwarnings("ignore", message="Using a non-tuple sequence for multidimensional indexing",
                            category=UserWarning, module=r"onnx2torch\.")
    return module


def _torchvision_problem() -> str | None:
    """None when torchvision imports, else why not (one line)."""
    try:
        importlib.import_module("torchvision")
    except Exception as exc:  # ImportError, or the RuntimeError of a wheel built for another torch
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return None


def _clear_torchvision() -> None:
    """Drop what a failed ``import torchvision`` left behind (submodules that did import,
    or a None entry that blocks it), so onnx2torch sees only the placeholder."""
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]


def placeholder_torchvision(reason: str) -> types.ModuleType:
    """A stand-in ``torchvision`` module with the ops onnx2torch names, each raising UserError."""
    def unavailable(op):
        def call(*args, **kwargs):
            raise UserError(WHY.format(op=op, reason=reason))
        call.__name__ = op
        return call

    tv = types.ModuleType("torchvision", "placeholder for onnx2torch (edge_guard.calibration.models.onnx_import)")
    tv.ops = types.ModuleType("torchvision.ops", "placeholder: every op raises UserError")
    tv.__path__ = []  # a package, so that `from torchvision.ops import roi_align` resolves
    for op in ("nms", "roi_align", "box_convert"):
        setattr(tv.ops, op, unavailable(op))
    return tv
