"""guard.json (schema 1): loading, validation (one clear line per fault), the model's hash and graph."""

import copy
import json

import onnx
import pytest

from edge_guard.backends import open_runner
from edge_guard.bundle import (SCHEMA_VERSION, BundleError, check_graph, load_bundle, validate,
                               write_guard_json)
from edge_guard.engine_cache import sha256_file
from edge_guard.errors import UserError
from tiny_bundle import contrast_patch_model, guard_doc, make_guard_bundle, tiny_patch_model


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return make_guard_bundle(tmp_path_factory.mktemp("b") / "bundle")


@pytest.fixture
def doc(bundle_dir):
    return json.loads((bundle_dir / "guard.json").read_text())


def _one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text and text.strip() == text and text
    return text


def test_valid_bundle_loads(bundle_dir):
    b = load_bundle(bundle_dir)
    assert b.doc["schema_version"] == SCHEMA_VERSION
    assert (b.patch_size, b.b_low, b.b_high, b.k) == (16, 2, 6, 8)
    assert b.frame_size == (48, 64) and b.threshold == pytest.approx(0.99)
    assert b.num_classes == 4 and b.class_names[0] == "dark"
    assert (b.input_name, b.output_name, b.output_kind, b.channels) == ("image", "labels", "labels", "RGB")
    assert b.model_sha256 == sha256_file(bundle_dir / "model.onnx")
    assert "K=8" in b.describe()


def _set(d, path, value):
    *head, last = path.split(".")
    for key in head:
        d = d[key]
    if value is _DELETE:
        del d[last]
    else:
        d[last] = value


_DELETE = object()

MALFORMED = [
    # (path, value, words the one-line message must contain)
    ("schema_version", 2, "schema_version 2"),
    ("schema_version", "1", "schema_version '1'"),
    ("schema_version", _DELETE, "lacks the key 'schema_version'"),
    ("model", _DELETE, "lacks the key 'model'"),
    ("model.sha256", _DELETE, "model lacks the key 'sha256'"),
    ("model.input.name", _DELETE, "model.input lacks the key 'name'"),
    ("detector.threshold", _DELETE, "detector lacks the key 'threshold'"),
    ("frame", _DELETE, "lacks the key 'frame'"),
    ("provenance.created", _DELETE, "provenance lacks the key 'created'"),
    ("detector", [], "detector must be an object"),
    ("detector.k", "8", "detector.k must be an integer"),
    ("detector.k", 0, "detector.k must be >= 1"),
    ("detector.k", True, "detector.k must be an integer"),
    ("detector.threshold", "0.5", "detector.threshold must be a finite number"),
    ("detector.threshold", 1.5, "detector.threshold must lie in [0, 1]"),
    ("detector.threshold", -0.01, "detector.threshold must lie in [0, 1]"),
    ("detector.threshold", float("nan"), "detector.threshold must be a finite number"),
    ("detector.method", "scale", "detector.method is 'scale'"),
    ("detector.pairing", "shared", "detector.pairing is 'shared'"),
    ("detector.patch_size", 32, "differs from model.patch_size=16"),
    ("model.patch_size", 32, "differs from model.patch_size=32"),
    ("detector.b_high", 17, "b_low < b_high <= patch_size"),
    ("detector.b_high", 2, "b_low < b_high <= patch_size"),
    ("detector.threshold_rule.rule", "magic", "threshold_rule.rule is 'magic'"),
    ("detector.threshold_rule.target_fpr", _DELETE, "threshold_rule lacks the key 'target_fpr'"),
    ("detector.threshold_rule.quantiles", {"0.5": "high"}, "quantiles.0.5 must be a finite number"),
    ("detector.k", 10**6, "detector.k must be <= 1024"),  # a corrupt K would allocate gigabytes
    ("detector.threshold", 10**400, "detector.threshold must be a finite number"),  # no float holds it
    ("detector.threshold_rule.quantiles", {"0.5": -10**400}, "quantiles.0.5 must be a finite number"),
    ("model.normalization.mean", [0, 10**400, 0], "must be a list of 3 numbers"),
    ("frame.height", 10**7, "frame.height must be <= 16384"),
    ("frame.height", 12.5, "frame.height must be an integer"),
    ("frame.height", 17, "too small for 16x16 patch pairs"),
    ("frame.width", 10, "too small for 16x16 patch pairs"),
    ("model.file", "../model.onnx", "model.file must be a file name inside the bundle"),
    ("model.sha256", "abc", "64 lowercase hex digits"),
    ("model.num_classes", 5, "class_names has 4 names for num_classes=5"),
    ("model.class_names", "dark,red", "class_names must be a list of strings"),
    ("model.input.dtype", "float32", "model.input.dtype is 'float32'"),
    ("model.input.layout", "NCHW", "model.input.layout is 'NCHW'"),
    ("model.normalization.where", "runtime", "normalization.where must be 'in-graph'"),
    ("model.normalization.std", [1, 0, 1], "3 positive numbers"),
    ("model.output.kind", "probs", "model.output.kind is 'probs'"),
    ("model.output.dtype", "float32", "model.output.dtype is 'float32'"),
    ("provenance.created", "yesterday", "ISO 8601"),
    ("provenance.model_sha256", "0" * 64, "provenance.model_sha256 differs from model.sha256"),
]


@pytest.mark.parametrize("path,value,words", MALFORMED, ids=[f"{p}={v!r}"[:40] for p, v, _ in MALFORMED])
def test_malformed_guard_json_is_one_clear_line(bundle_dir, doc, tmp_path, path, value, words):
    bad = copy.deepcopy(doc)
    _set(bad, path, value)
    with pytest.raises(BundleError) as exc:
        validate(bad)
    assert words in _one_line(exc)
    # The same through the file: the message also names guard.json's path.
    root = tmp_path / "b"
    root.mkdir()
    (root / "model.onnx").write_bytes((bundle_dir / "model.onnx").read_bytes())
    (root / "guard.json").write_text(json.dumps(bad))
    with pytest.raises(BundleError) as exc:
        load_bundle(root)
    assert words in _one_line(exc) and str(root / "guard.json") in str(exc.value)


def test_document_that_is_not_an_object():
    with pytest.raises(BundleError, match="must hold a JSON object"):
        validate([1, 2])


def test_unknown_extra_keys_are_allowed(doc):
    doc["future_section"] = {"x": 1}
    doc["detector"]["notes"] = "kept"
    assert validate(doc) is doc


def test_min_benign_rule_needs_no_fpr(doc):
    doc["detector"]["threshold_rule"] = {"rule": "min-benign", "benign_frames": 20, "quantiles": {}}
    validate(doc)


def test_swapped_model_is_refused(bundle_dir, tmp_path):
    root = tmp_path / "swapped"
    root.mkdir()
    (root / "guard.json").write_bytes((bundle_dir / "guard.json").read_bytes())
    onnx.save_model(tiny_patch_model(16, 4), str(root / "model.onnx"))
    with pytest.raises(BundleError) as exc:
        load_bundle(root)
    assert "is not the model guard.json was calibrated for" in _one_line(exc)


def test_missing_model_file(bundle_dir, tmp_path):
    root = tmp_path / "nomodel"
    root.mkdir()
    (root / "guard.json").write_bytes((bundle_dir / "guard.json").read_bytes())
    with pytest.raises(BundleError) as exc:
        load_bundle(root)
    assert "names the model model.onnx, which is missing" in _one_line(exc)


def test_folder_and_file_faults(tmp_path):
    with pytest.raises(BundleError, match="is not a bundle folder"):
        load_bundle(tmp_path / "nowhere")
    (tmp_path / "export.json").write_text("{}")
    with pytest.raises(BundleError, match="has no guard.json.*edge-guard calibrate"):
        load_bundle(tmp_path)
    (tmp_path / "guard.json").write_text('{"schema_version": 1,')
    with pytest.raises(BundleError) as exc:
        load_bundle(tmp_path)
    assert "is not valid JSON" in _one_line(exc)
    (tmp_path / "guard.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(BundleError, match="not UTF-8"):
        load_bundle(tmp_path)


def test_bundle_error_is_a_user_error():
    assert issubclass(BundleError, UserError)


def test_write_guard_json_round_trip_and_refusals(bundle_dir, doc, tmp_path):
    root = tmp_path / "w"
    root.mkdir()
    (root / "model.onnx").write_bytes((bundle_dir / "model.onnx").read_bytes())
    path = write_guard_json(root, doc)
    assert json.loads(path.read_text()) == doc
    assert not list(root.glob(".*partial"))
    assert load_bundle(root).threshold == doc["detector"]["threshold"]
    bad = copy.deepcopy(doc)
    bad["detector"]["threshold"] = 2.0
    with pytest.raises(BundleError, match=r"\[0, 1\]"):
        write_guard_json(root, bad)
    other = copy.deepcopy(doc)
    other["model"]["sha256"] = other["provenance"]["model_sha256"] = "f" * 64
    with pytest.raises(BundleError, match="does not match model.sha256"):
        write_guard_json(root, other)
    assert json.loads(path.read_text()) == doc  # the refused writes left the file alone


def _bundle_with(tmp_path, model, **changes):
    """A bundle whose guard.json (patch 16, labels) is edited by ``changes`` (path -> value)."""
    root = tmp_path / "g"
    root.mkdir(parents=True)
    onnx.save_model(model, str(root / "model.onnx"))
    doc = guard_doc(sha256_file(root / "model.onnx"))
    for path, value in changes.items():
        _set(doc, path.replace("__", "."), value)
    write_guard_json(root, doc)
    return load_bundle(root)


def test_graph_patch_size_against_guard_json(tmp_path):
    bundle = _bundle_with(tmp_path, contrast_patch_model(32))
    with pytest.raises(BundleError) as exc:
        open_runner(bundle, "onnxruntime-cpu", threads=1)
    assert "expects uint8 [batch, 16, 16, 3]" in _one_line(exc)


def test_graph_output_name_and_class_count_against_guard_json(tmp_path):
    bundle = _bundle_with(tmp_path, contrast_patch_model(16, output="logits"))
    with pytest.raises(BundleError, match="has no output 'labels'"):
        open_runner(bundle, "onnxruntime-cpu", threads=1)
    logits = {"kind": "logits", "name": "logits", "dtype": "float32"}
    bundle = _bundle_with(tmp_path / "x", contrast_patch_model(16, output="logits"),
                          model__output=logits, model__num_classes=5,
                          model__class_names=["a", "b", "c", "d", "e"])
    with pytest.raises(BundleError) as exc:
        open_runner(bundle, "onnxruntime-cpu", threads=1)
    assert "expects float logits [batch, 5, 16, 16]" in _one_line(exc)


def test_check_graph_fixed_batch(bundle_dir):
    from edge_guard.bundle import TensorSpec

    bundle = load_bundle(bundle_dir)
    out = [TensorSpec("labels", "int32", (None, 16, 16))]
    check_graph(bundle, [TensorSpec("image", "uint8", ("batch", 16, 16, 3))], out, batch=16)
    check_graph(bundle, [TensorSpec("image", "uint8", (16, 16, 16, 3))], out, batch=16)
    with pytest.raises(BundleError, match="fixed batch of 2 but the detector feeds it 16"):
        check_graph(bundle, [TensorSpec("image", "uint8", (2, 16, 16, 3))], out, batch=16)
    with pytest.raises(BundleError, match="takes inputs"):
        check_graph(bundle, [TensorSpec("x", "uint8", (None, 16, 16, 3))], out)
