"""`edge-guard calibrate --onnx`: three stacks' conventions -> a bundle -> check -> run."""

import json

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from edge_guard.bundle import load_bundle  # noqa: E402
from edge_guard.calibration.models import build_segmenter  # noqa: E402
from edge_guard.calibration.models.checkpoint import save_checkpoint  # noqa: E402
from cli_run import run_cli  # noqa: E402
import onnx_models as om  # noqa: E402
from stream_clip import write_clip  # noqa: E402

FRAME = (128, 256)
PATCH, K, CALIB, HOLDOUT = 64, 3, 8, 4


def _csv(values):
    return ",".join(repr(float(v)) for v in values)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    from edge_guard.calibration.data.layout import write_split

    root = tmp_path_factory.mktemp("byo")
    data = root / "scenes"
    write_split(data, split="val", frames=CALIB + HOLDOUT, size=FRAME, seed=7, progress=False)
    torch.manual_seed(0)
    small = build_segmenter("edge_small", width=16, dilations=(1, 2)).eval()
    models = {}
    # (a) torchvision: NCHW RGB in [0, 1] with ImageNet's mean/std, logits at full size.
    models["torchvision"] = (om.torchvision_style(root / "lraspp.onnx"),
                             ["--mean", _csv(om.IMAGENET_MEAN), "--std", _csv(om.IMAGENET_STD)])
    # (b) DRN-D-22 the mmdeploy way: NCHW RGB normalised in 0-255 units, int64 labels (N, 1, H, W).
    drn = build_segmenter("drn_d_22").eval()
    models["mmdeploy"] = (om.mmdeploy_argmax(root / "drn_d_22.onnx", drn.net),
                          ["--scale", "1", "--mean", _csv(om.MMSEG_MEAN), "--std", _csv(om.MMSEG_STD),
                           "--classes", "19"])
    # (c) edge_small fed BGR 0-255, logits at 1/4.
    mean, std = om.bgr_quarter(root / "edge_small_bgr.onnx", small)
    models["bgr"] = (root / "edge_small_bgr.onnx",
                     ["--channels", "BGR", "--scale", "1", "--mean", _csv(mean), "--std", _csv(std)])
    return {"root": root, "data": data, "models": models, "small": small,
            "ckpt": save_checkpoint(root / "small.pt", small), "clip": write_clip(root / "clip.avi")}


def _calibrate(ws, out, *model):
    return run_cli(["calibrate", *model, "--data", ws["data"], "--out", out, "--frame", f"{FRAME[0]}x{FRAME[1]}",
                    "--patch", PATCH, "--k", K, "--ks", "none", "--calib-frames", CALIB, "--holdout-frames",
                    HOLDOUT, "--rule", "min-benign", "--conditions", "none", "--seed", 3, "--quiet"])


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["torchvision", "mmdeploy", "bgr"])
def test_each_stack_calibrates_checks_and_runs(ws, stack, tmp_path):
    path, options = ws["models"][stack]
    out = tmp_path / "bundle"
    rc, stdout, stderr = _calibrate(ws, out, "--onnx", path, *options)
    assert rc == 0, stderr
    assert "your model:" in stdout and "wrote" in stdout
    record = json.loads((out / "export.json").read_text())
    for what in ("frames", "patches"):
        assert record["verification"]["wrapped_vs_source"][what]["label_agreement"] >= 0.999
    bundle = load_bundle(out)
    assert bundle.num_classes == 19 and bundle.model["source_onnx"]["file"] == path.name
    assert bundle.doc["provenance"]["calibration"]["source_onnx"]["sha256"] == bundle.model["source_onnx"]["sha256"]

    frames = sorted((ws["data"] / "leftImg8bit" / "val").rglob("*.png"))[:3]
    rc, stdout, stderr = run_cli(["check", "--bundle", out, "--seed", 0, *frames])
    assert rc in (0, 1), stderr
    assert sum(line.startswith(("benign", "ADVERSARIAL")) for line in stdout.splitlines()) == 3

    events = tmp_path / "events.jsonl"
    rc, stdout, stderr = run_cli(["run", "--source", ws["clip"], "--bundle", out, "--events", events,
                                  "--max-frames", 6, "--seed", 0])
    assert rc == 0, stderr
    frames_seen = [json.loads(line) for line in events.read_text().splitlines()]
    assert sum(e.get("type") == "frame" for e in frames_seen) == 6


@pytest.mark.slow
def test_the_wrap_changes_nothing(ws, tmp_path):
    """The same net exported by edge-guard from its checkpoint and wrapped from a BGR 0-255
    graph with logits at 1/4 gives the same labels, scores and threshold (same seed)."""
    path, options = ws["models"]["bgr"]
    rc, _, stderr = _calibrate(ws, tmp_path / "wrapped", "--onnx", path, *options)
    assert rc == 0, stderr
    rc, _, stderr = _calibrate(ws, tmp_path / "exported", "--model", ws["ckpt"])
    assert rc == 0, stderr
    a, b = (json.loads((tmp_path / d / "guard.json").read_text()) for d in ("wrapped", "exported"))
    assert a["detector"]["threshold"] == pytest.approx(b["detector"]["threshold"], abs=0.01)
    for part in ("calibration", "holdout"):
        qa, qb = a["provenance"]["evaluation"][part]["quantiles"], b["provenance"]["evaluation"][part]["quantiles"]
        assert qa == pytest.approx(qb, abs=0.01)
    image = np.random.default_rng(0).integers(0, 256, (1, *FRAME, 3), dtype=np.uint8)
    from edge_guard.engines.ort_predict import OrtPredictor

    same = OrtPredictor(tmp_path / "wrapped" / "segment.onnx")(image) == \
        OrtPredictor(tmp_path / "exported" / "segment.onnx")(image)
    assert same.mean() >= 0.999


@pytest.mark.parametrize("make, message", [
    ("fixed", "takes only 96x96 inputs and fails on 64x64 inputs"),
    ("stereo", "has 2 inputs"),
    ("classifier", "Is it a classification network"),
    ("corrupt", "is not a readable ONNX model|holds no graph"),
])
def test_unusable_graphs_end_in_one_line_exit_2(ws, tmp_path, make, message):
    path = tmp_path / f"{make}.onnx"
    if make == "fixed":
        om.torchvision_style(path, dynamic=False, size=(96, 96))
    elif make == "stereo":
        om.export_two_inputs(path)
    elif make == "classifier":
        om.export(om.Classifier(), path, torch.rand(1, 3, 64, 128))
    else:
        path.write_bytes(bytes(range(256)) * 20)
    out = tmp_path / "bundle"
    rc, stdout, stderr = _calibrate(ws, out, "--onnx", path)
    assert rc == 2 and stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge-guard calibrate: error:"), stderr
    assert __import__("re").search(message, lines[0]), lines[0]
    assert not (out / "guard.json").exists() and not (out / "model.onnx").exists()


def test_onnx_options_need_onnx_and_exclude_model(ws, tmp_path):
    path, _ = ws["models"]["torchvision"]
    rc, _, stderr = _calibrate(ws, tmp_path / "b", "--mean", "1,2,3")
    assert rc == 2 and "--mean describes an ONNX graph: it needs --onnx MODEL.onnx" in stderr
    rc, _, stderr = _calibrate(ws, tmp_path / "b", "--onnx", path, "--model", ws["ckpt"])
    assert rc == 2 and "--onnx and --model are exclusive" in stderr
    rc, _, stderr = _calibrate(ws, tmp_path / "b", "--onnx", path, "--layout", "NHWC", "--mean", "0.5")
    assert rc == 2 and stderr.count("\n") == 1


def test_a_graph_that_fails_tensorrt_needs_allow_non_trt(ws, tmp_path, monkeypatch):
    from edge_guard.engines import trt_compat

    real = trt_compat.check_trt_compat

    def failing(proto, **kwargs):
        result = real(proto, **kwargs)
        result.problems.append("ArgMax: pretend unsupported")
        return result

    monkeypatch.setattr(trt_compat, "check_trt_compat", failing)
    path, options = ws["models"]["torchvision"]
    rc, _, stderr = _calibrate(ws, tmp_path / "b", "--onnx", path, *options)
    assert rc == 2 and "nothing was written (--allow-non-trt writes it anyway" in stderr
    assert not (tmp_path / "b" / "model.onnx").exists()
    rc, _, stderr = _calibrate(ws, tmp_path / "b", "--onnx", path, *options, "--allow-non-trt")
    assert rc == 0, stderr


def test_cv2_is_what_check_reads(ws):
    # The generated frames are PNGs OpenCV reads (guards the check test above against a silent skip).
    frame = sorted((ws["data"] / "leftImg8bit" / "val").rglob("*.png"))[0]
    assert cv2.imread(str(frame)).shape == (*FRAME, 3)


@pytest.mark.slow
def test_extend_scores_an_onnx_bundle_with_its_own_graphs(ws, tmp_path):
    path, options = ws["models"]["bgr"]
    out = tmp_path / "bundle"
    assert _calibrate(ws, out, "--onnx", path, *options)[0] == 0
    before = json.loads((out / "guard.json").read_text())["detector"]["threshold"]
    rc, stdout, stderr = run_cli(["calibrate", "--out", out, "--extend", "--ks", "1,2", "--quiet"])
    assert rc == 0, stderr
    doc = json.loads((out / "guard.json").read_text())
    assert doc["detector"]["threshold"] == before  # rescored exactly: its own K is the check
    assert sorted(doc["detector"]["thresholds_by_k"]) == ["1", "2", "3"]
    rc, _, stderr = run_cli(["calibrate", "--out", out, "--extend", "--onnx", path])
    assert rc == 2 and "--extend reads the model from the bundle: leave out --onnx" in stderr


def test_a_street_segmented_as_one_class_is_warned_about(ws, tmp_path):
    class Constant(torch.nn.Module):
        """Logits that make every pixel class 2: what wrong conventions often look like."""

        def forward(self, x):
            return torch.zeros_like(x[:, :1]).repeat(1, 4, 1, 1) + torch.tensor([0., 0., 1., 0.]).view(1, 4, 1, 1)

    path = om.export(Constant(), tmp_path / "constant.onnx", torch.rand(1, 3, 64, 128))
    rc, _, stderr = _calibrate(ws, tmp_path / "b", "--onnx", path)
    assert rc == 0, stderr
    assert "warning: constant.onnx labels 100.0% of the pixels of 8 calibration frames as one class: check --scale" \
        in stderr
    doc = json.loads((tmp_path / "b" / "guard.json").read_text())
    assert any("as one class" in w for w in doc["provenance"]["calibration"]["warnings"])
