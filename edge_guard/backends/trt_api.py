"""The part of the ``tensorrt`` module edge-guard calls, as a type the real module satisfies.

The module is passed around (``trt`` parameters) so that tests can hand in
tests/fake_tensorrt.py, which leaves mypy nothing to check ``trt.X`` against; annotated
``trt: TensorRT``, every use is checked against this Protocol, and the Protocol against
TensorRT's own type stubs (typings/, tensorrt-stubs) by the assignment at the bottom.
tests/test_trt_stubs.py runs mypy on the modules that call TensorRT and checks the fake
against the same stubs. A name only TensorRT 11 has cannot be declared here (the stubs are
10.x): reach it with ``getattr`` where the code branches on the version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import tensorrt


class _Members(Protocol):
    Logger: type[tensorrt.Logger]
    Builder: type[tensorrt.Builder]
    OnnxParser: type[tensorrt.OnnxParser]
    Runtime: type[tensorrt.Runtime]
    NetworkDefinitionCreationFlag: type[tensorrt.NetworkDefinitionCreationFlag]
    MemoryPoolType: type[tensorrt.MemoryPoolType]
    BuilderFlag: type[tensorrt.BuilderFlag]
    TensorIOMode: type[tensorrt.TensorIOMode]

    def nptype(self, trt_type: Any) -> Any: ...


class TensorRT(_Members, Protocol):
    __version__: str


if TYPE_CHECKING:
    # mypy leaves a module's dunder names out of protocol matching: __version__ on its own.
    _THE_REAL_ONE: _Members = tensorrt
    _ITS_VERSION: str = tensorrt.__version__
