"""`edge-guard attack` end to end on a tiny generated folder with a tiny checkpoint."""

import json

import cv2
import numpy as np
import pytest
import torch

from attack_cli_setup import attack, make_setup

from edge_guard.cli import main


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return make_setup(tmp_path_factory.mktemp("attack_cli"))


def test_writes_images_targets_and_a_complete_manifest(setup):
    from edge_guard.calibration.models.checkpoint import load_segmenter

    root, ckpt, _ = setup
    assert attack(root, ckpt, "--method", "dag", "--target", "scene", "--limit", "2") == 0
    manifest = json.loads((root / "out" / "manifest.json").read_text())
    s = manifest["settings"]
    for key in ("method", "target", "adaptive", "l2", "linf", "max_iter", "step", "seed",
                "threshold", "model_sha256", "data", "split", "quantize"):
        assert key in s
    assert s["method"] == "dag" and s["target"] == "scene" and s["quantize"] is True
    images = manifest["images"]
    assert len(images) == 2 and manifest["summary"]["images"] == 2
    model, _ = load_segmenter(ckpt)
    for name, rec in images.items():
        for key in ("success", "miou", "l2", "linf", "iterations", "seconds", "clean_success"):
            assert isinstance(rec[key], (int, float)) and np.isfinite(rec[key])
        assert rec["iterations"] <= 3 and rec["scene_source"] != name
        adv_path = root / "out" / rec["adversarial"]
        assert adv_path.name == f"{name}_leftImg8bit.png"  # the input's file name
        adv = cv2.cvtColor(cv2.imread(str(adv_path)), cv2.COLOR_BGR2RGB)
        target = cv2.imread(str(root / "out" / rec["target"]), cv2.IMREAD_UNCHANGED)
        assert target.shape == adv.shape[:2] == (48, 96)
        assert cv2.imread(str(root / "out" / rec["target_color"])).shape == (48, 96, 3)
        clean = cv2.cvtColor(cv2.imread(rec["source"]), cv2.COLOR_BGR2RGB)
        delta = (adv.astype(np.float64) - clean) / 255
        assert rec["l2"] == pytest.approx(np.sqrt((delta ** 2).mean()), abs=1e-6)
        assert rec["linf"] == pytest.approx(np.abs(delta).max(), abs=1e-6)
        # success is what the model gives on the saved 8-bit frame
        with torch.no_grad():
            pred = model(torch.from_numpy(adv).permute(2, 0, 1)[None].float() / 255).argmax(1)[0].numpy()
        valid = target != 255
        assert rec["success"] == pytest.approx((pred[valid] == target[valid]).mean(), abs=1e-9)


def test_resumes_and_refuses_other_settings(setup, capsys):
    root, ckpt, _ = setup
    args = ("--method", "houdini", "--target", "pure", "--adaptive", "spatial", "--k-attack", "2")
    assert attack(root, ckpt, *args, "--limit", "1", out="resume") == 0
    first = json.loads((root / "resume" / "manifest.json").read_text())
    assert first["settings"]["l2"] == 0.06  # the paper's bound for adaptive attacks
    assert attack(root, ckpt, *args, "--limit", "2", out="resume") == 0
    second = json.loads((root / "resume" / "manifest.json").read_text())
    assert len(second["images"]) == 2
    (name,) = first["images"]
    assert second["images"][name] == first["images"][name]  # skipped, not redone
    capsys.readouterr()
    assert attack(root, ckpt, "--method", "dag", "--target", "pure", out="resume") == 2
    err = capsys.readouterr().err.strip()
    assert "other settings" in err and len(err.splitlines()) == 1


def test_the_model_is_its_sha_not_its_path(setup, capsys, tmp_path):
    """A folder made with a checkpoint resumes with the same file elsewhere (another checkout,
    a GPU machine's copy); another model is refused."""
    import shutil
    from pathlib import Path

    from edge_guard.calibration.models import build_segmenter
    from edge_guard.calibration.models.checkpoint import save_checkpoint

    root, ckpt, _ = setup
    args = ("--method", "dag", "--target", "pure", "--max-iter", "2")
    assert attack(root, ckpt, *args, "--limit", "1", out="moved") == 0
    copy = shutil.copy(ckpt, tmp_path / "elsewhere.pt")
    assert attack(root, copy, *args, "--limit", "2", out="moved") == 0
    doc = json.loads((root / "moved" / "manifest.json").read_text())
    assert len(doc["images"]) == 2 and doc["settings"]["model"] == str(Path(copy).resolve())
    torch.manual_seed(1)
    other = save_checkpoint(tmp_path / "other.pt", build_segmenter("edge_small", width=8, dilations=(1,)))
    capsys.readouterr()
    assert attack(root, other, *args, out="moved") == 2
    assert "other settings (model_sha256:" in capsys.readouterr().err


def test_symlinked_split_and_a_changed_source_frame(setup, tmp_path):
    """A split that is a symlink (a common Cityscapes subset set-up) is attacked like a real
    folder; a source frame changed since its attack is attacked anew, the others are kept."""
    import shutil

    root, ckpt, _ = setup
    data = tmp_path / "data"
    shutil.copytree(root / "data", tmp_path / "real")
    for kind in ("leftImg8bit", "gtFine"):
        (data / kind).mkdir(parents=True)
        (data / kind / "val").symlink_to(tmp_path / "real" / kind / "val", target_is_directory=True)
    args = ["attack", "--model", str(ckpt), "--data", str(data), "--split", "val", "--max-iter", "1",
            "--device", "cpu", "--method", "dag", "--target", "pure", "--limit", "2", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    first = json.loads((tmp_path / "out" / "manifest.json").read_text())["images"]
    assert all(rec["adversarial"].startswith("leftImg8bit/val/") for rec in first.values())
    changed, kept = sorted(first)
    source = first[changed]["source"]
    cv2.imwrite(source, 255 - cv2.imread(source))  # the frame is regenerated in place
    assert main(args) == 0
    second = json.loads((tmp_path / "out" / "manifest.json").read_text())["images"]
    assert second[kept] == first[kept]
    assert second[changed]["source_sha256"] != first[changed]["source_sha256"]


def test_a_moved_data_folder_resumes_only_the_same_frames(setup, tmp_path, capsys):
    """A GPU lease's scenes come back under another path: the folder resumes there when its
    records are of the same frames (sha256; older records by hashing their old source) and
    then names the new paths. Another frame under a record's name, or a record nothing can
    check, is refused rather than overwritten, at every --limit."""
    import shutil

    root, ckpt, _ = setup
    shutil.copytree(root / "data", tmp_path / "copy")
    args = ["attack", "--model", str(ckpt), "--max-iter", "1", "--device", "cpu",
            "--method", "dag", "--target", "pure"]
    assert main([*args, "--data", str(root / "data"), "--limit", "2", "--out", str(tmp_path / "out")]) == 0
    path = tmp_path / "out" / "manifest.json"
    before = json.loads(path.read_text())
    shutil.copytree(tmp_path / "out", tmp_path / "legacy")
    assert main([*args, "--data", str(tmp_path / "copy"), "--out", str(tmp_path / "out")]) == 0
    after = json.loads(path.read_text())
    assert after["settings"]["data"] == str((tmp_path / "copy").resolve()) and len(after["images"]) == 3
    for name, rec in before["images"].items():  # kept, not attacked again, now at the copy
        moved = after["images"][name]
        assert moved["source"].startswith(str((tmp_path / "copy").resolve()))
        assert {**moved, "source": rec["source"]} == rec

    # records from before the sha256 was kept: checked by hashing their old source file
    legacy = json.loads((tmp_path / "legacy" / "manifest.json").read_text())
    for rec in legacy["images"].values():
        del rec["source_sha256"]
    (tmp_path / "legacy" / "manifest.json").write_text(json.dumps(legacy))
    shutil.copytree(tmp_path / "legacy", tmp_path / "legacy2")
    capsys.readouterr()
    assert main([*args, "--data", str(tmp_path / "copy"), "--out", str(tmp_path / "legacy")]) == 0
    assert "(1 attacked now)" in capsys.readouterr().out
    shutil.rmtree(tmp_path / "copy")  # legacy2's sources are root/data: move it there, then delete
    shutil.copytree(root / "data", tmp_path / "copy2")
    gone = json.loads((tmp_path / "legacy2" / "manifest.json").read_text())
    for rec in gone["images"].values():
        rec["source"] = rec["source"].replace(str((root / "data").resolve()), str(tmp_path / "nowhere"))
    (tmp_path / "legacy2" / "manifest.json").write_text(json.dumps(gone))
    assert main([*args, "--data", str(tmp_path / "copy2"), "--out", str(tmp_path / "legacy2")]) == 2
    err = capsys.readouterr().err.strip()
    assert "which is gone, and no sha256 to compare" in err and len(err.splitlines()) == 1

    other = tmp_path / "other"
    shutil.copytree(root / "data", other)
    first = sorted(before["images"])[0]
    frame = next(other.rglob(f"{first}_leftImg8bit.png"))
    cv2.imwrite(str(frame), 255 - cv2.imread(str(frame)))  # another frame, same name
    for limit in ("1", "3"):  # a run that attacks nothing must not make the next one trust the folder
        assert main([*args, "--data", str(other), "--limit", limit, "--out", str(tmp_path / "out")]) == 2
        assert f"already holds an attack of a frame named {first!r}" in capsys.readouterr().err
    assert json.loads(path.read_text()) == after  # nothing overwritten
    (tmp_path / "out" / after["images"][first]["target"]).unlink()  # its images partly gone:
    assert main([*args, "--data", str(other), "--out", str(tmp_path / "out")]) == 2  # still not another's
    assert json.loads(path.read_text()) == after

    # frames of a data set that has none of the folder's: not mixed in
    unrelated = tmp_path / "unrelated"
    for i, frame in enumerate(sorted((root / "data").rglob("*_leftImg8bit.png"))):
        dest = unrelated / frame.relative_to(root / "data").parent / f"zeta_00000{i}_000019_leftImg8bit.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(frame, dest)
    capsys.readouterr()
    assert main([*args, "--data", str(unrelated), "--out", str(tmp_path / "out")]) == 2
    assert "none of them is of a frame in" in capsys.readouterr().err


def test_seconds_per_frame_shares_a_batch_among_its_frames():
    from edge_guard.calibration.attacks.run import seconds_per_frame

    batch = [{"seconds": 40.0, "batch": 4, "batch_first": "a", "batch_seconds": 40.0} for _ in range(4)]
    assert seconds_per_frame(batch) == 10.0
    assert seconds_per_frame(batch[:2]) == 10.0  # a table that reads 2 of the batch's 4 frames
    assert seconds_per_frame(batch[:2] + [{"seconds": 7.0}]) == 9.0


@pytest.mark.parametrize("extra,message", [
    (("--method", "fgsm", "--target", "pure"), "unknown attack method"),
    (("--method", "dag", "--target", "kitty"), "unknown target"),
    (("--method", "dag", "--target", "pure", "--adaptive", "blur"), "unknown adaptive"),
    (("--method", "dag", "--target", "pure", "--split", "test"), "does not exist"),
])
def test_bad_input_is_one_line(setup, capsys, extra, message):
    root, ckpt, _ = setup
    assert attack(root, ckpt, *extra, out="bad") == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("edge-guard attack: error:")


def test_missing_data_and_class_mismatch(setup, capsys):
    root, ckpt, wrong = setup
    assert main(["attack", "--model", str(ckpt), "--data", str(root / "nowhere"), "--method", "dag",
                 "--target", "pure", "--out", str(root / "bad")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert attack(root, wrong, "--method", "dag", "--target", "pure", out="bad") == 2
    err = capsys.readouterr().err.strip()
    assert "5 classes" in err and len(err.splitlines()) == 1
