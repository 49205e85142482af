"""The TensorRT-compatibility check (no TensorRT needed) and its operator table."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tiny_bundle import tiny_patch_model

from edge_guard.engines.trt_compat import check_trt_compat, load_table
from edge_guard.engines.trt_ops_table import parse_operators_md
from edge_guard.paths import DEFAULT_BUNDLE


def test_table_records_its_source_and_knows_the_ops_we_export():
    table = load_table()
    src = table["source"]
    assert src["repository"] == "https://github.com/onnx/onnx-tensorrt"
    assert len(src["commit"]) == 40 and src["commit"] in src["url"]
    assert src["branch"].startswith("10.")
    assert (table["opset_min"], table["opset_max"]) == (9, 20)
    ops = table["ops"]
    for op in ("Conv", "Relu", "Add", "Resize", "ArgMax", "Cast", "Transpose", "QuantizeLinear"):
        assert ops[op]["supported"], op
    assert "UINT8" in ops["Cast"]["types"] and "INT8" in ops["DequantizeLinear"]["types"]
    assert not ops["Unique"]["supported"]


def test_parse_operators_md_snippet():
    text = ("| Operator | Supported | Supported Types | Restrictions |\n|---|---|---|---|\n"
            "| Abs | Y | FP32, FP16, INT32 |\n| Foo | N |\n"
            "| Resize | Y | FP32, BF16 | modes: `linear`<br />only |\n")
    ops = parse_operators_md(text)
    assert ops["Abs"] == {"supported": True, "types": ["FLOAT", "FLOAT16", "INT32"], "restrictions": ""}
    assert ops["Foo"]["supported"] is False
    assert ops["Resize"]["types"] == ["BFLOAT16", "FLOAT"] and "<br" not in ops["Resize"]["restrictions"]


def test_tiny_patch_graph_passes():
    report = check_trt_compat(tiny_patch_model())
    assert report.ok, report.problems
    assert report.op_counts["Conv"] == 1 and report.verdict().startswith("TensorRT 10 compatible")


def _with_extra_node(op, domain="", **attrs):
    model = tiny_patch_model()
    model.graph.node.insert(6, helper.make_node(op, ["logits"], ["extra"], domain=domain, **attrs))
    if domain:
        model.opset_import.append(helper.make_opsetid(domain, 1))
    return model


@pytest.mark.parametrize("model, needle", [
    (lambda: _with_extra_node("Unique"), "op Unique is not supported"),
    (lambda: _with_extra_node("MyOp", domain="com.example"), "custom domain 'com.example'"),
    (lambda: tiny_patch_model(output_int32=False), "graph output 'labels' is INT64"),
    (lambda: tiny_patch_model(spatial=("h", "w")), "dim 1 is dynamic (h)"),
])
def test_incompatible_graphs_are_rejected_with_a_clear_message(model, needle):
    report = check_trt_compat(model())
    assert not report.ok
    assert any(needle in p for p in report.problems), report.problems
    assert report.verdict().startswith("NOT TensorRT 10 compatible") and "\n" not in report.verdict()


def test_restrictions_and_types():
    model = tiny_patch_model()
    g = model.graph
    # A Q/DQ pair with a non-zero zero point (asymmetric activations): TensorRT refuses it.
    g.initializer.extend([numpy_helper.from_array(np.array(0.02, np.float32), "qs"),
                          numpy_helper.from_array(np.array(3, np.int8), "qz")])
    g.node.insert(5, helper.make_node("QuantizeLinear", ["nchw", "qs", "qz"], ["q"]))
    g.node.insert(6, helper.make_node("DequantizeLinear", ["q", "qs", "qz"], ["dq"]))
    g.node[7].input[0] = "dq"
    # A cubic Resize and a uint8 tensor inside the graph.
    g.initializer.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
    g.node.append(helper.make_node("Resize", ["logits", "", "scales"], ["big"], mode="cubic"))
    g.node.append(helper.make_node("Cast", ["big"], ["big_u8"], to=TensorProto.UINT8))
    problems = check_trt_compat(model).problems
    text = " | ".join(problems)
    assert "zero point must be 0" in text
    assert "mode 'cubic' unsupported" in text
    assert "uint8 tensor 'big_u8' inside the graph" in text


def test_opset_outside_the_parser_range():
    model = tiny_patch_model()
    model.opset_import[0].version = 21
    assert any("opset 21" in p for p in check_trt_compat(model).problems)


def test_accepts_a_path(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save_model(tiny_patch_model(), str(path))
    assert check_trt_compat(path).ok


@pytest.mark.skipif(not (DEFAULT_BUNDLE / "model.onnx").is_file(), reason="shipped bundle not built yet")
def test_shipped_model_is_tensorrt_compatible():
    report = check_trt_compat(DEFAULT_BUNDLE / "model.onnx")
    assert report.ok, report.problems
    for name in ("model.fp16.onnx", "model.int8.onnx"):
        if (DEFAULT_BUNDLE / name).is_file():
            assert check_trt_compat(DEFAULT_BUNDLE / name).ok, name
