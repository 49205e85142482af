"""The interface every inference backend implements (after Polygraphy's runners).

A runner maps a batch of uint8 RGB (or BGR, as the bundle says) patches (B, s, s, 3) to int32
labels (B, s, s), whatever the graph outputs. Lifecycle::

    with runner:                # activate() ... close()
        labels = runner.infer(batch)

``name`` is the backend ("onnxruntime", "tensorrt", "function"); ``provider`` is what
actually runs the graph, read back after activation (ONNX Runtime silently falls back to
its CPU provider when a GPU provider cannot start).
"""

from __future__ import annotations

import numpy as np

from edge_guard.errors import UserError


class Runner:
    """Base class: subclasses implement ``_activate``, ``_infer`` and ``_close``."""

    name = "runner"
    #: One line: how this backend was chosen (``auto`` says why better ones were passed over).
    selection = ""

    @property
    def supports_device_scoring(self) -> bool:
        """True when the runner also offers ``device_pipeline(method, k, segmenter, segment,
        stage_timing)``: crop, inference and scoring on the GPU (backends/trt_pipelines.py)."""
        return False

    def __init__(self):
        self.provider = "not active"
        self.is_active = False
        self.inputs: list = []   # TensorSpec of the graph, known after activate()
        self.outputs: list = []

    def activate(self) -> "Runner":
        if not self.is_active:
            self._activate()
            self.is_active = True
        return self

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(B, s, s, 3) uint8 -> (B, s, s) int32 labels."""
        if not self.is_active:
            raise UserError(f"the {self.name} runner is not active: call activate() or use `with`")
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[3] != 3:
            raise UserError(f"a patch batch is uint8 (B, s, s, 3), got {batch.dtype} {batch.shape}")
        labels = self._infer(batch)
        if labels.shape != batch.shape[:3]:
            raise UserError(f"the {self.name} runner returned labels of shape {labels.shape} for "
                            f"patches {batch.shape}: the model does not fit the bundle")
        return labels

    def close(self) -> None:
        if self.is_active:
            self._close()
            self.is_active = False
            self.provider = "not active"

    def __enter__(self):
        return self.activate()

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.provider})>"

    def _activate(self) -> None:
        raise NotImplementedError

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _close(self) -> None:
        pass


class FunctionRunner(Runner):
    """Any callable (B, s, s, 3) uint8 -> (B, s, s) labels as a runner.

    For reference paths: a NumPy oracle in tests, or calibration scoring with a PyTorch
    model exactly as the runtime scores (same sampling, crop and consistency code).
    """

    name = "function"

    def __init__(self, segment, provider: str = "python", name: str | None = None, on_close=None):
        """``name``: the backend to report (default "function"); ``on_close``: called by close()
        (to free what ``segment`` holds, e.g. an engine's buffers)."""
        super().__init__()
        if not callable(segment):
            raise UserError(f"FunctionRunner needs a callable, got {type(segment).__name__}")
        self._segment = segment
        self._provider = provider
        self._on_close = on_close
        if name:
            self.name = name

    def _activate(self) -> None:
        self.provider = self._provider

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        labels = np.asarray(self._segment(batch))
        if labels.dtype.kind not in "iu":
            raise UserError(f"the segment function returned {labels.dtype} labels; integers expected")
        return labels.astype(np.int32, copy=False)

    def _close(self) -> None:
        if self._on_close is not None:
            self._on_close()
