"""`edge-guard export` / `build-engine --onnx-only`: the graph, its self-verification, fp16 and int8."""

import json

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from edge_guard.calibration.models import build_segmenter  # noqa: E402
from edge_guard.calibration.models.checkpoint import save_checkpoint  # noqa: E402
from edge_guard.paths import DEFAULT_MODEL  # noqa: E402
from cli_run import run_cli  # noqa: E402

PATCH = 64



@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    # Two context blocks instead of seven: the same layer types, half the export time.
    seg = build_segmenter("edge_small", width=16, dilations=(1, 2))
    # Non-trivial BatchNorm statistics, so folding them into the convolutions is exercised.
    for m in seg.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    # A logit bias large enough to change labels, so a graph without it cannot pass.
    seg.set_logit_bias(torch.linspace(-0.5, 0.5, 19).tolist())
    path = tmp_path_factory.mktemp("ckpt") / "edge_small.pt"
    save_checkpoint(path, seg)
    return path


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    rc, stdout, stderr = run_cli(["export", "--model", str(checkpoint), "--out", str(out),
                               "--patch", str(PATCH), "--verify-pairs", "4"])
    assert rc == 0, stderr
    return out, stdout


def test_export_writes_a_verified_bundle(exported, checkpoint):
    out, stdout = exported
    print(stdout)
    assert "onnx.checker (full_check): ok" in stdout
    assert "TensorRT 10 compatible" in stdout
    assert "ONNX Runtime vs PyTorch: labels agree on" in stdout
    record = json.loads((out / "export.json").read_text())
    ver = record["verification"]
    assert ver["label_agreement"] >= 0.999 and ver["pair_miou_diff"] <= 1e-3
    assert ver["frames"] == 2 and ver["pairs_per_frame"] == 4
    assert record["trt_compat"]["ok"]
    model = record["model"]
    from edge_guard.engine_cache import sha256_file

    assert model["sha256"] == sha256_file(out / "model.onnx")
    assert model["source_checkpoint"]["sha256"] == sha256_file(checkpoint)
    assert model["input"] == {"name": "image", "dtype": "uint8", "layout": "NHWC", "channels": "RGB",
                              "shape": ["batch", PATCH, PATCH, 3]}
    assert model["output"]["dtype"] == "int32" and model["output"]["kind"] == "labels"
    assert model["normalization"]["where"] == "in-graph" and len(model["normalization"]["std"]) == 3
    assert model["num_classes"] == 19 and model["class_names"][0] == "road"
    assert model["patch_size"] == PATCH and model["opset"] == 17
    np.testing.assert_allclose(model["logit_bias"], np.linspace(-0.5, 0.5, 19), atol=1e-6)
    assert not list(out.glob(".*partial"))


def test_graph_interface_and_dynamic_batch(exported, checkpoint):
    out, _ = exported
    model = onnx.load(str(out / "model.onnx"))
    assert model.opset_import[0].version == 17
    (inp,), (outp,) = model.graph.input, model.graph.output
    dims = lambda vi: [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]  # noqa: E731
    assert inp.name == "image" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert dims(inp) == ["batch", PATCH, PATCH, 3]
    assert outp.name == "labels" and outp.type.tensor_type.elem_type == onnx.TensorProto.INT32
    assert dims(outp) == ["batch", PATCH, PATCH]
    assert "ArgMax" in {n.op_type for n in model.graph.node}

    from edge_guard.calibration.models.checkpoint import load_segmenter
    from edge_guard.engines.ort_predict import OrtPredictor
    from edge_guard.export.onnx_export import torch_predictor

    seg, _ = load_segmenter(checkpoint)
    patches = np.random.default_rng(1).integers(0, 256, (3, PATCH, PATCH, 3), dtype=np.uint8)
    got = OrtPredictor(out / "model.onnx")(patches)
    assert got.shape == (3, PATCH, PATCH) and got.dtype == np.int32
    assert np.mean(got == torch_predictor(seg)(patches)) >= 0.999
    bias = seg.logit_bias
    seg.set_logit_bias(None)
    assert np.mean(got == torch_predictor(seg)(patches)) < 0.99  # the bias is in the graph
    seg.set_logit_bias(bias)


def test_logits_output(checkpoint, tmp_path):
    import onnxruntime as ort

    from edge_guard.calibration.models.checkpoint import load_segmenter
    from edge_guard.export.onnx_export import export_onnx
    from edge_guard.engines.trt_compat import check_trt_compat

    seg, _ = load_segmenter(checkpoint)
    path = export_onnx(seg, tmp_path / "logits.onnx", PATCH, output="logits")
    model = onnx.load(str(path))
    assert model.graph.output[0].name == "logits"
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert check_trt_compat(model).ok
    patches = np.random.default_rng(2).integers(0, 256, (2, PATCH, PATCH, 3), dtype=np.uint8)
    y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": patches})[0]
    with torch.no_grad():
        ref = seg(torch.from_numpy(patches).permute(0, 3, 1, 2).float() / 255).numpy()
    assert y.shape == (2, 19, PATCH, PATCH)
    np.testing.assert_allclose(y, ref, atol=2e-3, rtol=1e-3)


def test_failed_verification_writes_nothing(exported, checkpoint, tmp_path, monkeypatch):
    import shutil

    import edge_guard.export.exporter as exporter

    class Corrupt(exporter.OrtPredictor):
        def __call__(self, patches):
            return (super().__call__(patches) + 1) % 19

    # The graph itself is the fixture's (a second export would only cost time); what is
    # tested is that a graph disagreeing with PyTorch is refused and nothing is left behind.
    monkeypatch.setattr(exporter, "export_onnx",
                        lambda seg, path, *a, **k: shutil.copyfile(exported[0] / "model.onnx", path))
    monkeypatch.setattr(exporter, "OrtPredictor", Corrupt)
    out = tmp_path / "b"
    rc, _, stderr = run_cli(["export", "--model", str(checkpoint), "--out", str(out), "--patch", str(PATCH),
                          "--verify-frames", "1", "--verify-pairs", "2"])
    assert rc == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "does not match PyTorch" in lines[0] and "nothing was written" in lines[0]
    assert not (out / "model.onnx").exists() and not (out / "export.json").exists()
    assert not list(out.glob(".*partial"))


def test_a_failed_full_frame_graph_leaves_the_previous_export_whole(exported, checkpoint, tmp_path, monkeypatch):
    import shutil

    import edge_guard.export.exporter as exporter

    out = tmp_path / "b"
    shutil.copytree(exported[0], out)
    before = {name: (out / name).stat().st_ino for name in ("model.onnx", "export.json")}
    monkeypatch.setattr(exporter, "export_onnx",
                        lambda seg, path, *a, **k: shutil.copyfile(exported[0] / "model.onnx", path))

    def fails(*a, **k):
        raise exporter.ExportCheckError("the full-frame graph does not match PyTorch; nothing was written")
    monkeypatch.setattr(exporter, "export_segment", fails)
    rc, _, stderr = run_cli(["export", "--model", str(checkpoint), "--out", str(out), "--patch", str(PATCH),
                             "--verify-frames", "1", "--verify-pairs", "2", "--frame", "128x256"])
    assert rc == 2 and "full-frame graph" in stderr
    # model.onnx was not replaced: it still matches the export.json (and guard.json) beside it.
    assert {name: (out / name).stat().st_ino for name in before} == before
    assert not list(out.glob(".*partial"))


@pytest.mark.parametrize("argv, needle", [
    (["--patch", "8"], "too small"),
    (["--patch", "64", "--verify-size", "32x32"], "--verify-size 32x32 is too small for 64px patch pairs: use at least"),
    (["--opset", "12"], "opset 12 is not supported"),
])
def test_bad_export_options_are_one_line_errors(checkpoint, tmp_path, argv, needle):
    rc, _, stderr = run_cli(["export", "--model", str(checkpoint), "--out", str(tmp_path / "b")] + argv)
    assert rc == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("edge-guard export: error:")


def test_build_engine_on_a_folder_that_is_no_bundle(tmp_path):
    rc, _, stderr = run_cli(["build-engine", str(tmp_path), "--onnx-only"])
    assert rc == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "edge-guard export --out" in lines[0]


def test_fp16_onnx_keeps_io_and_agrees(exported):
    out, _ = exported
    rc, stdout, stderr = run_cli(["build-engine", str(out), "--precision", "fp16", "--onnx-only",
                               "--calib-count", "3", "--calib-pairs", "2"])
    assert rc == 0, stderr
    print(stdout)
    fp16 = onnx.load(str(out / "model.fp16.onnx"))
    assert fp16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert fp16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.INT32
    conv_weights = {n.input[1] for n in fp16.graph.node if n.op_type == "Conv"}
    assert all(i.data_type == onnx.TensorProto.FLOAT16 for i in fp16.graph.initializer if i.name in conv_weights)
    prov = json.loads((out / "model.fp16.json").read_text())
    assert prov["onnxruntime_check"]["label_agreement"] >= 0.99 and prov["onnxruntime_check"]["passed"]
    assert "ONNX Runtime fp16 vs fp32: labels agree on" in stdout


def test_int8_qdq_graph_runs_under_onnxruntime(exported, tmp_path):
    from edge_guard.engines.frames import generated_frames
    from edge_guard.engines.ort_predict import OrtPredictor
    from edge_guard.engines.parity import compare_predictors, draw_patch_sets
    from edge_guard.engines.precision import quantize_int8
    from edge_guard.engines.trt_compat import check_trt_compat

    out, _ = exported
    frames = generated_frames(2, (80, 128), seed=5)
    calib = np.concatenate([s.patches for s in draw_patch_sets(frames, PATCH, 4, 8, 4, seed=1)])
    info = quantize_int8(out / "model.onnx", tmp_path / "model.int8.onnx", calib, log=print)
    q = onnx.load(str(tmp_path / "model.int8.onnx"))
    ops = {n.op_type for n in q.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and info["quantize_nodes"] > 0
    assert q.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert check_trt_compat(q).ok, check_trt_compat(q).problems
    sets = draw_patch_sets(frames, PATCH, 4, 8, 4, seed=2)
    parity = compare_predictors(OrtPredictor(out / "model.onnx"), OrtPredictor(tmp_path / "model.int8.onnx"),
                                sets, 19)
    print(f"int8 (random weights) vs fp32 under ONNX Runtime: {parity.summary()}")
    assert 0.0 <= parity.label_agreement <= 1.0 and parity.pixels == 2 * 8 * PATCH * PATCH
    minmax = quantize_int8(out / "model.onnx", tmp_path / "minmax.onnx", calib, method="minmax", log=print)
    assert minmax["calibration"] == "minmax" and "percentile" not in minmax
    assert info["calibration"] == "percentile" and info["percentile"] == 99.9


def test_judge_tolerances():
    from edge_guard.engines.parity import Parity
    from edge_guard.engines.trt_build import EngineCheckError, judge

    def parity(agree, shift, fpr_ref=None, fpr_test=None, frames=100):
        return Parity(frames=frames, pairs_per_frame=4, pixels=1000, label_agreement=agree,
                      mean_pair_miou_ref=0.9, mean_pair_miou_test=0.9, pair_miou_diff=0.0,
                      score_shift=shift, max_score_shift=shift,
                      threshold=None if fpr_ref is None else 0.7, fpr_ref=fpr_ref, fpr_test=fpr_test)

    assert judge(parity(0.995, 0.001), "fp16", "x")["passed"]
    with pytest.raises(EngineCheckError, match="labels agree on 98.00%"):
        judge(parity(0.98, 0.001), "fp16", "x")
    assert judge(parity(0.98, 0.01), "int8", "x")["passed"]
    with pytest.raises(EngineCheckError, match="score shift"):
        judge(parity(0.99, 0.05), "int8", "x")
    with pytest.raises(EngineCheckError, match="false-positive rate"):
        judge(parity(0.999, 0.001, fpr_ref=0.01, fpr_test=0.05), "fp16", "x")
    # With 10 frames one extra false positive (0.1) is the resolution of the rate: allowed.
    assert judge(parity(0.999, 0.001, fpr_ref=0.0, fpr_test=0.1, frames=10), "fp16", "x")["passed"]


@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="shipped model not trained yet")
def test_export_of_the_shipped_model_verifies_itself(tmp_path):
    """The default `edge-guard export` (no --model) on the shipped checkpoint: parity + TRT check."""
    rc, stdout, stderr = run_cli(["export", "--out", str(tmp_path / "b"), "--patch", "128",
                                  "--verify-pairs", "4", "--verify-size", "256x512", "--frame", "128x256"])
    assert rc == 0, stderr
    record = json.loads((tmp_path / "b" / "export.json").read_text())
    assert record["verification"]["label_agreement"] >= 0.999
    assert record["verification"]["pair_miou_diff"] <= 1e-3
    assert record["trt_compat"]["ok"] and record["model"]["architecture"] == "edge_small"
    # --frame: the full-frame graph, checked against PyTorch like the patch graph
    seg = record["segment"]
    assert seg["frame_size"] == [128, 256] and seg["verification"]["label_agreement"] >= 0.999
    assert seg["trt_compat"] and "segment.onnx (128x256 frames" in stdout
    graph = onnx.load(str(tmp_path / "b" / "segment.onnx")).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]] == [128, 256, 3]
    # exporting again without --frame removes the graph of the previous model
    rc, _, stderr = run_cli(["export", "--out", str(tmp_path / "b"), "--patch", "128",
                             "--verify-pairs", "2", "--verify-size", "256x512"])
    assert rc == 0, stderr
    assert not (tmp_path / "b" / "segment.onnx").exists()
    assert json.loads((tmp_path / "b" / "export.json").read_text())["segment"] is None
