"""The report's user models, each exported the way its stack exports it (into OUT_DIR):

- edge_small_bgr.onnx: the shipped edge_small fed BGR 0-255, logits at 1/4 (before its last
  upsampling), so that `calibrate --onnx` can be compared with the shipped bundle;
- drn_d_22_mmdeploy.onnx: DRN-D-22 (random weights, seed 0) the mmdeploy way: NCHW RGB
  normalised in 0-255 units outside the graph, int64 labels (N, 1, H, W) from an in-graph ArgMax;
- torchvision's LR-ASPP comes from benchmarks/export_torchvision_lraspp.py (its own venv).

    python reports/2026-12-06-your-model/make_models.py OUT_DIR
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
import onnx_models as om  # noqa: E402  (the same exports the tests make, at full size)

from edge_guard.calibration.models import build_segmenter  # noqa: E402
from edge_guard.calibration.models.checkpoint import load_segmenter  # noqa: E402
from edge_guard.paths import DEFAULT_MODEL  # noqa: E402


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    seg, _ = load_segmenter(DEFAULT_MODEL)
    mean, std = om.bgr_quarter(out / "edge_small_bgr.onnx", seg.eval(), size=(512, 1024))
    print("edge_small_bgr.onnx: --channels BGR --scale 1 --mean", ",".join(repr(v) for v in mean),
          "--std", ",".join(repr(v) for v in std))
    torch.manual_seed(0)
    drn = build_segmenter("drn_d_22").eval()
    om.mmdeploy_argmax(out / "drn_d_22_mmdeploy.onnx", drn.net, size=(512, 1024))
    print("drn_d_22_mmdeploy.onnx: --scale 1 --mean 123.675,116.28,103.53 --std 58.395,57.12,57.375 --classes 19")


if __name__ == "__main__":
    main()
