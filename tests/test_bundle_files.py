"""Issue 27, case 6 and the bundle's smaller items: every file read from a bundle is named
by guard.json or export.json, as a plain file name, with a sha256 that is checked; a model
whose labels are all outside the class count is refused on the first frame; an empty
--bundle is a mistake, not the current folder."""

import json

import numpy as np
import onnx
import pytest

from cli_run import run_cli
from edge_guard.bundle import BundleError, load_bundle
from edge_guard.engine_cache import sha256_file
from edge_guard.errors import UserError
from edge_guard.guard import Guard
from tiny_bundle import contrast_labels, contrast_patch_model, guard_doc, make_guard_bundle

FRAME = (48, 64)


def _segment_model(seed_offset: int = 0) -> onnx.ModelProto:
    """The contrast model at the bundle's frame size (a full-frame graph)."""
    model = contrast_patch_model(16)
    for t in (*model.graph.input, *model.graph.output):
        dims = t.type.tensor_type.shape.dim
        dims[1].dim_value, dims[2].dim_value = FRAME
    model.doc_string = f"variant {seed_offset}"  # another file, same behaviour
    return model


@pytest.fixture
def with_segment(tmp_path):
    """A pairs bundle without model.frame_graph, and export.json naming segment.onnx."""
    root = make_guard_bundle(tmp_path / "bundle", frame=FRAME, k=2)
    onnx.save_model(_segment_model(), str(root / "segment.onnx"))
    model = json.loads((root / "guard.json").read_text())["model"]
    record = {"model": model, "segment": {"file": "segment.onnx", "sha256": sha256_file(root / "segment.onnx"),
                                          "frame_size": list(FRAME)}}
    (root / "export.json").write_text(json.dumps(record))
    return root


def _set_segment(root, **fields):
    record = json.loads((root / "export.json").read_text())
    record["segment"].update(fields)
    (root / "export.json").write_text(json.dumps(record))


def _bench(root):
    return run_cli(["bench", "--bundle", root, "--k", "1", "--iters", "1", "--warmup", "0", "--threads", "1",
                    "--detector", "frame"])


def _one_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_bench_times_a_segment_graph_export_json_vouches_for(with_segment):
    rc, out, err = _bench(with_segment)
    assert rc == 0, err
    assert "frame" in out


@pytest.mark.parametrize("name", ["/etc/passwd", "../segment.onnx", "sub/segment.onnx", ".."])
def test_bench_refuses_a_segment_file_outside_the_bundle(with_segment, name):
    _set_segment(with_segment, file=name)
    rc, out, err = _bench(with_segment)
    line = _one_error(err)
    assert rc == 2 and "only a file name inside the bundle is allowed" in line and repr(name) in line


def test_bench_refuses_a_swapped_segment_graph(with_segment):
    onnx.save_model(_segment_model(1), str(with_segment / "segment.onnx"))  # not the one exported
    rc, out, err = _bench(with_segment)
    line = _one_error(err)
    assert rc == 2 and "is not the full-frame graph (segment) export.json was exported for" in line
    assert "sha256" in line


def test_bench_refuses_a_segment_record_without_a_hash(with_segment):
    record = json.loads((with_segment / "export.json").read_text())
    del record["segment"]["sha256"]
    (with_segment / "export.json").write_text(json.dumps(record))
    rc, out, err = _bench(with_segment)
    assert rc == 2 and "gives no sha256" in _one_error(err)


def test_an_uncalibrated_export_folder_checks_its_model_hash(with_segment):
    (with_segment / "guard.json").unlink()
    onnx.save_model(_segment_model(2), str(with_segment / "model.onnx"))  # swapped
    rc, out, err = _bench(with_segment)
    assert rc == 2 and "is not the model export.json was exported for" in _one_error(err)


@pytest.mark.parametrize("name", ["..", ".", "a/model.onnx", "a\\model.onnx", "/etc/passwd"])
def test_guard_json_file_names_must_be_plain(tmp_path, name):
    root = make_guard_bundle(tmp_path / "b")
    doc = json.loads((root / "guard.json").read_text())
    doc["model"]["file"] = name
    (root / "guard.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="must be a file name inside the bundle"):
        load_bundle(root)


def test_a_model_file_that_is_not_a_regular_file_is_refused_unread(tmp_path):
    root = make_guard_bundle(tmp_path / "b")
    (root / "model.onnx").unlink()
    (root / "model.onnx").symlink_to("/dev/zero")  # hashing it would never end
    with pytest.raises(BundleError, match="which is missing from"):
        load_bundle(root)


def test_labels_all_outside_the_class_count_are_refused_on_the_first_frame(tmp_path):
    root = make_guard_bundle(tmp_path / "b", frame=FRAME, k=2)
    bundle = load_bundle(root)
    frame = np.zeros((*FRAME, 3), np.uint8)
    # A graph with more classes than guard.json says: ids 4.. are ignored, every frame "benign".
    wrong = Guard.from_function(bundle, lambda batch: contrast_labels(batch) + bundle.num_classes, seed=0)
    with pytest.raises(BundleError) as exc:
        wrong.check(frame)
    line = str(exc.value)
    assert "\n" not in line and str(root) in line and "outside the 4 classes of guard.json" in line
    # Some ignored ids (a void label) are normal; the right model passes and is checked once.
    noise = np.random.default_rng(0).integers(0, 256, (*FRAME, 3), dtype=np.uint8)
    void = Guard.from_function(bundle, lambda batch: np.where(contrast_labels(batch) == 0, 255,
                                                              contrast_labels(batch)).astype(np.int32), seed=0)
    assert 0 <= void.check(noise).score <= 1
    right = Guard.from_function(bundle, contrast_labels, seed=0)
    assert right.check(frame).score == 1.0


def test_the_cli_reports_a_model_with_foreign_labels_in_one_line(tmp_path):
    """Through ONNX Runtime: guard.json says 1 class; the contrast model labels a pixel
    (R > the patch's mean) + 2 (G > mean), so on a red/green checkerboard every pixel is 1
    or 2, never the one class 0."""
    import cv2

    root = tmp_path / "b"
    root.mkdir()
    onnx.save_model(contrast_patch_model(16), str(root / "model.onnx"))
    doc = guard_doc(sha256_file(root / "model.onnx"), frame=FRAME, k=2)
    doc["model"]["num_classes"], doc["model"]["class_names"] = 1, ["only"]
    (root / "guard.json").write_text(json.dumps(doc))
    ys, xs = np.indices(FRAME)
    frame = np.where(((ys + xs) % 2 == 0)[..., None], (0, 0, 255), (0, 255, 0)).astype(np.uint8)  # BGR
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), frame)
    rc, out, err = run_cli(["check", image, "--bundle", root, "--threads", "1", "--seed", "0"])
    assert rc == 2 and "outside the 1 classes of guard.json" in _one_error(err)


def test_an_empty_bundle_path_is_a_mistake(tmp_path):
    for argv in (["check", "x.png"], ["run", "--source", "x.mp4"], ["bench"], ["demo"]):
        rc, out, err = run_cli([*argv, "--bundle", ""])
        assert rc == 2 and "empty --bundle" in err and "Traceback" not in err, err
    with pytest.raises(BundleError, match="empty bundle path"):
        load_bundle("")
    with pytest.raises(UserError, match="empty bundle path"):
        Guard.load("  ")
    from edge_guard.bench_setup import open_bundle

    with pytest.raises(UserError, match="empty bundle path"):
        open_bundle("")
