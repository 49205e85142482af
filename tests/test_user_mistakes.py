"""User mistakes across the commands: each is one line on stderr and exit status 2, found
before any long work starts, and nothing is left behind."""

import pytest

torch = pytest.importorskip("torch")

from cli_run import run_cli  # noqa: E402
from tiny_bundle import make_guard_bundle  # noqa: E402


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from edge_guard.calibration.data.layout import write_split

    root = tmp_path_factory.mktemp("mistakes")
    write_split(root / "scenes", split="val", frames=2, size=(64, 128), seed=2, progress=False)
    (root / "notes.txt").write_text("not a folder")
    return root


def one_line(argv, *words):
    rc, _, err = run_cli(argv)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, err
    assert lines[0].startswith("edge-guard ") and "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_a_file_where_a_folder_is_written(scenes):
    data, notes = scenes / "scenes", scenes / "notes.txt"
    one_line(["attack", "--data", data, "--method", "dag", "--target", "pure", "--out", notes, "--limit", "1",
              "--max-iter", "1", "--device", "cpu"], "exists and is not a folder")
    one_line(["evaluate", "--data", data, "--out", notes, "--quick", "--quiet"], "exists and is not a folder")
    one_line(["bench", "--bundle", notes], "is a file")


def test_outputs_that_cannot_be_written_are_refused_before_the_work(scenes, tmp_path):
    one_line(["evaluate-seg", "--data", scenes / "scenes", "--json", tmp_path], "--json", "is a folder")
    one_line(["evaluate-seg", "--data", scenes / "scenes", "--json", scenes / "notes.txt" / "x.json"],
             "cannot write --json")
    one_line(["run", "--source", scenes / "notes.txt", "--save", tmp_path / "out.txt"], "give a video file name")
    assert not list(tmp_path.iterdir())


def test_a_mistyped_device_names_the_choices(scenes):
    one_line(["evaluate-seg", "--data", scenes / "scenes", "--device", "foo"], "--device foo: use cpu, cuda")
    one_line(["attack", "--data", scenes / "scenes", "--method", "dag", "--target", "pure", "--out",
              scenes / "a_dev", "--device", "gpu0"], "--device gpu0")


def test_training_never_overwrites_a_checkpoint_silently(scenes, tmp_path):
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"hours of training")
    one_line(["train", "--data", scenes / "scenes", "--split", "val", "--out", ckpt], "exists", "--resume", "--overwrite")
    assert ckpt.read_bytes() == b"hours of training"
    # A split that is not there: the error says which ones are.
    one_line(["train", "--data", scenes / "scenes", "--out", tmp_path / "n.pt"], "splits here: val", "--split val")


def test_attack_settings_that_every_frame_would_refuse(scenes):
    base = ["attack", "--data", scenes / "scenes", "--method", "dag", "--limit", "1", "--max-iter", "1",
            "--device", "cpu"]
    one_line(base + ["--target", "text", "--text", " ", "--out", scenes / "a_text"], "--text is empty")
    one_line(base + ["--target", "pure", "--adaptive", "spatial", "--patch-size", "500", "--out", scenes / "a_big"],
             "too small")
    one_line(base + ["--target", "pure", "--adaptive", "frame", "--patch-size", "500", "--out", scenes / "a_big"],
             "too small for 500x500 patches")


@pytest.mark.parametrize("extra,words", [
    (("--target", "pure", "--k-attack", "5"), ("--k-attack applies only to --adaptive spatial",)),
    (("--target", "pure", "--adaptive", "scale", "--patch-size", "64"), ("--patch-size applies only",)),
    (("--target", "pure", "--adaptive", "spatial", "--blur-stds", "1,2"), ("--blur-stds applies only",)),
    (("--target", "pure", "--text", "hi"), ("--text applies only to --target text",)),
    (("--target", "pure", "--adaptive", "frame", "--b-low", "4"), ("--b-low applies only to --adaptive spatial",)),
    (("--target", "pure", "--adaptive", "frame", "--agree-weight", "2"), ("--agree-weight applies only",)),
    (("--target", "pure", "--adaptive", "frame-agree", "--k-attack", "0", "--agree-weight", "2"),
     ("--agree-weight applies only to --adaptive frame-agree with --k-attack above 0",)),
    (("--target", "pure", "--adaptive", "scale", "--blur-stds", "nan"), ("--blur-stds 'nan' needs positive",)),
    (("--target", "pure", "--linf", "0.003"), ("below one 8-bit level",)),
    (("--target", "pure", "--l2", "5"), ("--l2 5.0 must be in (0, 1]",)),
    (("--target", "text", "--text", "Grüße"), ("ASCII",)),
])
def test_attack_options_that_would_be_ignored_or_cannot_work(scenes, tmp_path, extra, words):
    """Ignored options were recorded and then refused a resume without them; a bound below
    one 8-bit level ran 200 iterations that changed nothing; nan/inf were tracebacks."""
    one_line(["attack", "--data", scenes / "scenes", "--method", "dag", "--limit", "1", "--max-iter", "1",
              "--device", "cpu", "--out", tmp_path / "out", *extra], *words)
    assert not (tmp_path / "out").exists()


def test_infinite_budgets_are_argparse_errors(scenes, tmp_path):
    rc, _, err = run_cli(["attack", "--data", scenes / "scenes", "--method", "dag", "--target", "pure",
                          "--linf", "inf", "--out", tmp_path / "out"])
    assert rc == 2 and err.strip().splitlines()[-1].endswith("--linf: 'inf' must be a finite number > 0")


def test_attack_outputs_that_would_destroy_inputs(scenes, tmp_path):
    import shutil

    import cv2
    import numpy as np

    data = tmp_path / "scenes"
    shutil.copytree(scenes / "scenes", data)
    frames = {p: p.read_bytes() for p in data.rglob("*.png")}
    base = ["attack", "--method", "dag", "--target", "pure", "--max-iter", "1", "--device", "cpu"]
    one_line([*base, "--data", data, "--out", data], "is --data", "overwrite")
    assert {p: p.read_bytes() for p in data.rglob("*.png")} == frames
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "b.png"), np.zeros((64, 128, 3), np.uint8))
    # a plain image folder is listed recursively: each run would attack the last one's outputs
    one_line([*base, "--data", images, "--out", images / "adv"], "is inside --data", "re-read")
    cv2.imwrite(str(images / "a.png"), np.zeros((64, 128, 3), np.uint8))
    cv2.imwrite(str(images / "a.jpg"), np.zeros((64, 128, 3), np.uint8))
    one_line([*base, "--data", images, "--out", tmp_path / "o"], "a.jpg and a.png", "rename one")
    one_line([*base, "--data", images, "--split", "train", "--out", tmp_path / "o"], "has no splits")
    one_line([*base, "--data", data, "--out", scenes / "notes.txt" / "sub"], "cannot create --out")


def test_precision_without_tensorrt(tmp_path):
    from edge_guard.cli import main  # noqa: F401  (the bundle below is runtime-only)

    bundle = make_guard_bundle(tmp_path / "b")
    image = tmp_path / "x.png"
    import cv2
    import numpy as np
    cv2.imwrite(str(image), np.zeros((40, 60, 3), np.uint8))
    one_line(["check", "--bundle", bundle, "--backend", "onnxruntime-cpu", "--precision", "fp16", image],
             "--precision fp16 picks a TensorRT engine")
    rc, out, _ = run_cli(["check", "--bundle", bundle, "--precision", "fp16", "--threads", "1", image])
    assert rc == 0 and "--precision fp16 applies to TensorRT engines only" in out


def test_build_engine_without_tensorrt_says_so_before_the_slow_part(tmp_path):
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    bundle = make_guard_bundle(tmp_path / "b")
    one_line(["build-engine", bundle], "needs tensorrt", "--onnx-only")
    assert not (bundle / "model.fp16.onnx").exists()  # nothing was converted or calibrated first


def test_a_corrupt_frame_is_found_before_the_first_attack(scenes, tmp_path):
    """It was found when its turn came, after the frames before it (hours, on real data)."""
    import shutil

    data = tmp_path / "scenes"
    shutil.copytree(scenes / "scenes", data)
    last = sorted(data.rglob("*_leftImg8bit.png"))[-1]
    last.write_bytes(b"not a png")
    one_line(["attack", "--data", data, "--method", "dag", "--target", "pure", "--max-iter", "1",
              "--device", "cpu", "--out", tmp_path / "out"], "cannot read", last.name)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_segmentation_outputs_that_cannot_be_made(scenes, tmp_path):
    """check --labels-out, run --show-labels and bench --detector frame need a full-frame graph;
    two images of one name would overwrite one PNG; all refused before any image is checked."""
    import cv2
    import numpy as np
    from tiny_bundle import make_frame_bundle

    pairs, frame = make_guard_bundle(tmp_path / "pairs"), make_frame_bundle(tmp_path / "frame")
    for name in ("a/x.png", "b/x.png"):
        (tmp_path / name).parent.mkdir()
        cv2.imwrite(str(tmp_path / name), np.zeros((40, 60, 3), np.uint8))
    labels = tmp_path / "labels"
    one_line(["check", "--bundle", pairs, "--threads", "1", "--labels-out", labels, tmp_path / "a/x.png"],
             "--labels-out", "has no full-frame graph")
    one_line(["check", "--bundle", frame, "--labels-out", labels, tmp_path / "a/x.png", tmp_path / "b/x.png"],
             "would both write x_labels.png")
    one_line(["check", "--bundle", frame, "--labels-out", scenes / "notes.txt", tmp_path / "a/x.png"],
             "--labels-out", "is a file")
    assert not labels.exists()
    one_line(["run", "--source", scenes / "notes.txt", "--bundle", frame, "--show-labels"],
             "add --show or --save")
    one_line(["bench", "--bundle", pairs, "--detector", "frame", "--k", "1", "--iters", "1"],
             "nothing to time", "full-frame graph")
