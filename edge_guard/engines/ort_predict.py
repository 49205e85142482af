"""The ONNX Runtime (CPU) patch predictor of the parity checks (the PyTorch one:
``edge_guard.export.onnx_export.torch_predictor``).

It maps (N, s, s, 3) uint8 RGB patches to (N, s, s) int32 labels, whatever the graph
outputs (labels, or logits reduced here with argmax over the class axis).
"""

from __future__ import annotations

import numpy as np

from edge_guard.errors import UserError


class OrtPredictor:
    """A CPU InferenceSession of a patch graph, called like a function."""

    def __init__(self, path, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3  # errors only: fp16/QDQ graphs make ORT chatty
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"ONNX Runtime cannot load {path}: {first}") from exc
        self.input = self.session.get_inputs()[0].name
        out = self.session.get_outputs()[0]
        self.output = out.name
        self.rank = len(out.shape)

    def __call__(self, patches: np.ndarray) -> np.ndarray:
        y = self.session.run([self.output], {self.input: np.ascontiguousarray(patches)})[0]
        return y.astype(np.int32, copy=False) if self.rank == 3 else y.argmax(axis=1).astype(np.int32)
