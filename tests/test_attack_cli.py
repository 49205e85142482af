"""`edge-guard attack` end to end on a tiny generated folder with a tiny checkpoint."""

import json

import cv2
import numpy as np
import pytest
import torch

from edge_guard.cli import main
from edge_guard.errors import UserError


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from edge_guard.calibration.data.layout import write_split
    from edge_guard.calibration.models import build_segmenter
    from edge_guard.calibration.models.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("attack_cli")
    write_split(root / "data", split="val", frames=3, size=(48, 96), seed=5, progress=False)
    torch.manual_seed(0)
    ckpt = save_checkpoint(root / "tiny.pt", build_segmenter("edge_small", width=16, dilations=(1,)))
    wrong = save_checkpoint(root / "five.pt", build_segmenter("edge_small", num_classes=5, width=16, dilations=(1,)))
    return root, ckpt, wrong


def attack(root, ckpt, *extra, out="out"):
    return main(["attack", "--model", str(ckpt), "--data", str(root / "data"), "--split", "val",
                 "--max-iter", "3", "--device", "cpu", "--out", str(root / out), *extra])


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


def test_a_batch_gives_the_frames_of_single_runs(setup):
    """Plain attacks: every image has its own step and stopping, so attacking 3 frames at
    once writes the frames (and metrics) that one at a time does."""
    root, ckpt, _ = setup
    args = ("--method", "dag", "--target", "remap", "--max-iter", "4")
    assert attack(root, ckpt, *args, out="single") == 0
    assert attack(root, ckpt, *args, "--batch", "3", out="batched") == 0
    single = json.loads((root / "single" / "manifest.json").read_text())
    batched = json.loads((root / "batched" / "manifest.json").read_text())
    assert batched["settings"]["batch"] == 3 and single["settings"]["batch"] == 1
    assert batched["images"].keys() == single["images"].keys() and len(single["images"]) == 3
    for name, rec in single["images"].items():
        other = batched["images"][name]
        assert other["batch"] == 3 and other["seed"] == rec["seed"] and other["batch_first"] in single["images"]
        for key in ("success", "miou", "l2", "linf", "iterations", "clean_success"):
            assert other[key] == pytest.approx(rec[key], abs=2e-3), key
        a = cv2.imread(str(root / "single" / rec["adversarial"])).astype(int)
        b = cv2.imread(str(root / "batched" / other["adversarial"])).astype(int)
        assert np.abs(a - b).max() <= 1  # 8-bit rounding of float sums in another order
    # three frames shared one batch: its time counts once
    (first,) = {r["batch_first"] for r in batched["images"].values()}
    assert batched["summary"]["seconds_per_frame"] == pytest.approx(
        batched["images"][first]["batch_seconds"] / 3)


def test_a_plain_folder_resumes_at_another_batch_an_adaptive_one_does_not(setup, capsys):
    """A plain folder begun one frame at a time (CPU) can be finished in batches (GPU);
    an adaptive attack draws its views per batch, so there the batch is a setting."""
    root, ckpt, _ = setup
    plain = ("--method", "dag", "--target", "pure")
    assert attack(root, ckpt, *plain, "--limit", "1", out="mixed") == 0
    assert attack(root, ckpt, *plain, "--batch", "2", out="mixed") == 0
    mixed = json.loads((root / "mixed" / "manifest.json").read_text())
    assert len(mixed["images"]) == 3 and mixed["settings"]["batch"] == 2
    assert sorted(r.get("batch", 1) for r in mixed["images"].values()) == [1, 2, 2]
    adaptive = ("--method", "dag", "--target", "pure", "--adaptive", "scale")
    assert attack(root, ckpt, *adaptive, "--limit", "1", out="mixed_adaptive") == 0
    capsys.readouterr()
    assert attack(root, ckpt, *adaptive, "--batch", "2", out="mixed_adaptive") == 2
    err = capsys.readouterr().err.strip()
    assert "other settings (batch: 1 -> 2)" in err and len(err.splitlines()) == 1


def test_batch_must_be_positive(setup, capsys):
    root, ckpt, _ = setup
    assert attack(root, ckpt, "--method", "dag", "--target", "pure", "--batch", "0", out="bad") == 2
    assert "--batch" in capsys.readouterr().err


def test_an_image_folder_with_subfolders_and_two_heights(setup, tmp_path, capsys):
    """Unlabelled frames: the scene target says where its labels came from; targets sit beside
    their frame's subfolder once (not targets/sub/sub/); a spatial attack refuses a second
    frame height (its patches are sized for the first); a resume says nothing was left."""
    root, ckpt, _ = setup
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(images / "sub" / "b.png"), rng.integers(0, 256, (48, 96, 3), dtype=np.uint8))
    cv2.imwrite(str(images / "z.png"), rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    args = ["attack", "--model", str(ckpt), "--data", str(images), "--max-iter", "1", "--device", "cpu",
            "--method", "dag"]
    assert main([*args, "--target", "scene", "--out", str(tmp_path / "scene")]) == 0
    out = capsys.readouterr()
    assert "has no labels: each scene target is a generated street's labels" in out.err
    assert "2 frames in" in out.out and "(2 attacked now)" in out.out
    doc = json.loads((tmp_path / "scene" / "manifest.json").read_text())
    rec = doc["images"]["sub/b"]
    assert rec["scene_source"] == "generated" and rec["target"] == "targets/sub/b_target.png"
    assert (tmp_path / "scene" / rec["target"]).is_file()
    assert main([*args, "--target", "scene", "--out", str(tmp_path / "scene")]) == 0
    assert "nothing left to attack" in capsys.readouterr().err
    # an image folder has no splits: evaluate's split (or an older manifest's) does not matter
    from edge_guard.calibration.attacks.run import AttackSettings, run_attacks

    done = run_attacks(ckpt, images, "train", AttackSettings(method="dag", target="scene", max_iter=1),
                       tmp_path / "scene", device="cpu", progress=False)
    assert done["attacked"] == 0 and done["images"] == 2

    assert main([*args, "--target", "pure", "--adaptive", "spatial", "--k-attack", "1",
                 "--out", str(tmp_path / "spatial")]) == 2
    err = capsys.readouterr().err
    assert "z is 64 pixels high, the first frame 48" in err and "--size HxW" in err
    assert main([*args, "--target", "pure", "--adaptive", "spatial", "--k-attack", "1", "--size", "48x96",
                 "--out", str(tmp_path / "spatial")]) == 0


def test_two_runs_into_one_folder(setup, tmp_path, capsys):
    """A second run into a folder that another is writing is refused (both would attack the
    same frames and the last manifest write would win); the lock goes with its run."""
    import fcntl

    root, ckpt, _ = setup
    out = tmp_path / "out"
    out.mkdir()
    args = ("--method", "dag", "--target", "pure", "--limit", "1")
    with open(out / ".lock", "w") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert attack(root, ckpt, *args, out=out) == 2
        assert "another attack is writing" in capsys.readouterr().err
    assert attack(root, ckpt, *args, out=out) == 0
    assert attack(root, ckpt, *args, out=out) == 0  # released at the end of the first
    rec = next(iter(json.loads((out / "manifest.json").read_text())["images"].values()))
    assert rec["device"] == "cpu"


def test_ctrl_c_keeps_the_finished_frames_and_says_how_to_resume(setup, tmp_path, capsys, monkeypatch):
    from edge_guard.calibration import attacks

    root, ckpt, _ = setup
    real, calls = attacks.ATTACKS["dag"], []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setitem(attacks.ATTACKS, "dag", interrupted)
    out = tmp_path / "out"
    assert attack(root, ckpt, "--method", "dag", "--target", "pure", out=out) == 130
    err = capsys.readouterr().err
    assert f"stopped: 1 frame kept in {out}; run the same command to resume" in err
    assert len(json.loads((out / "manifest.json").read_text())["images"]) == 1
    monkeypatch.setitem(attacks.ATTACKS, "dag", real)
    assert attack(root, ckpt, "--method", "dag", "--target", "pure", out=out) == 0  # the lock went too
    assert "(2 attacked now)" in capsys.readouterr().out


def test_settings_the_attack_does_not_read_do_not_block_a_resume(setup, tmp_path, capsys):
    """evaluate's scale folders record k_attack 0, the CLI's default is 10, and the CLI now
    refuses --k-attack for a scale attack: such a folder must still resume from the CLI."""
    from edge_guard.calibration.attacks.run import AttackSettings, run_attacks

    root, ckpt, _ = setup
    out = tmp_path / "scale"
    made = AttackSettings(method="dag", target="pure", adaptive="scale", k_attack=0, text="other",
                          max_iter=1)
    run_attacks(ckpt, root / "data", "val", made, out, limit=1, device="cpu", progress=False)
    assert attack(root, ckpt, "--method", "dag", "--target", "pure", "--adaptive", "scale",
                  "--max-iter", "1", "--limit", "1", out=out) == 0
    assert "nothing left to attack" in capsys.readouterr().err


def test_scene_targets_on_bdd_attack_unlabelled_frames_too(setup, tmp_path):
    """BDD100K's first zips hold images without a mask: every frame is attacked (the frames
    evaluate lists), the scene labels come from the labelled ones."""
    import warnings

    from edge_guard.calibration.attacks.run import AttackSettings, run_attacks

    root, ckpt, _ = setup
    rng = np.random.default_rng(1)
    for name, labelled in (("a", False), ("b", True), ("c", True)):
        image = tmp_path / "bdd" / "images/10k/val" / f"{name}.jpg"
        image.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(image), rng.integers(0, 256, (48, 96, 3), dtype=np.uint8))
        if labelled:
            mask = tmp_path / "bdd" / "labels/sem_seg/masks/val" / f"{name}.png"
            mask.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(mask), np.full((48, 96), 7 if name == "b" else 13, np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unmatched image, said by the loader
        done = run_attacks(ckpt, tmp_path / "bdd", "val", AttackSettings(method="dag", target="scene", max_iter=1),
                           tmp_path / "out", device="cpu", progress=False)
    doc = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert done["attacked"] == 3 and sorted(doc["images"]) == ["a", "b", "c"]
    assert {doc["images"][n]["scene_source"] for n in "abc"} <= {"b", "c"}
    assert doc["images"]["b"]["scene_source"] == "c" and doc["images"]["c"]["scene_source"] == "b"


def test_without_file_locks_the_attack_runs_and_says_so(setup, tmp_path, capsys, monkeypatch):
    import errno
    import fcntl

    def no_locks(*args):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    root, ckpt, _ = setup
    assert attack(root, ckpt, "--method", "dag", "--target", "pure", "--limit", "1", out=tmp_path / "o") == 0
    assert "warning: cannot lock" in capsys.readouterr().err


def test_k_attack_zero_draws_no_patch_so_checks_none(setup, tmp_path, capsys):
    """K_attack = 0 is the plain attack under the adaptive budget: a patch too large for the
    frame is not an error there (it is with K >= 1), and the CLI refuses a patch option
    that K = 0 would ignore."""
    from edge_guard.calibration.attacks.run import AttackSettings, run_attacks

    root, ckpt, _ = setup
    big = dict(method="dag", target="pure", adaptive="spatial", patch_size=500, max_iter=1)
    run_attacks(ckpt, root / "data", "val", AttackSettings(k_attack=0, **big), tmp_path / "k0", limit=1,
                device="cpu", progress=False)
    with pytest.raises(UserError, match="too small"):
        run_attacks(ckpt, root / "data", "val", AttackSettings(k_attack=1, **big), tmp_path / "k1", limit=1,
                    device="cpu", progress=False)
    args = ("--method", "dag", "--target", "pure", "--adaptive", "spatial", "--patch-size", "500", "--limit", "1")
    assert attack(root, ckpt, *args, "--k-attack", "0", out=tmp_path / "k0cli") == 2
    assert ("--patch-size applies only to --adaptive spatial, spatial-pairs, frame or frame-agree with "
            "--k-attack above 0") in capsys.readouterr().err


@pytest.mark.parametrize("kind,extra", [("frame", ()), ("frame-agree", ("--agree-weight", "0.5"))])
def test_frame_attacks_record_their_settings_and_resume(setup, tmp_path, capsys, kind, extra):
    """The attacks on the patch-vs-frame detector take --k-attack, record K, the patch size and
    (frame-agree) the weight, resume, and refuse a resume with another weight."""
    root, ckpt, _ = setup
    args = ("--method", "dag", "--target", "pure", "--adaptive", kind, "--k-attack", "2", *extra)
    out = tmp_path / kind
    assert attack(root, ckpt, *args, "--limit", "1", out=out) == 0
    first = json.loads((out / "manifest.json").read_text())
    s = first["settings"]
    assert (s["adaptive"], s["k_attack"], s["patch_size"], s["l2"]) == (kind, 2, 24, 0.06)  # s = H/2 of 48
    if kind == "frame-agree":
        assert s["agree_weight"] == 0.5
    assert attack(root, ckpt, *args, "--limit", "2", out=out) == 0
    second = json.loads((out / "manifest.json").read_text())
    (name,) = first["images"]
    assert len(second["images"]) == 2 and second["images"][name] == first["images"][name]
    if kind == "frame-agree":
        capsys.readouterr()
        assert attack(root, ckpt, *args[:-1], "2", "--limit", "2", out=out) == 2
        assert "other settings (agree_weight: 0.5 -> 2.0)" in capsys.readouterr().err


def test_the_agreement_weight_keeps_older_folder_keys():
    """evaluate names its folders by a digest of identity(): the weight added for frame-agree
    is left out of every other attack's, so their folders keep their names."""
    from edge_guard.calibration.attacks.run import AttackSettings

    for adaptive in (None, "scale", "spatial", "spatial-pairs", "frame"):
        made = AttackSettings(method="dag", target="pure", adaptive=adaptive).resolved()
        assert "agree_weight" not in made.identity()
    agree = AttackSettings(method="dag", target="pure", adaptive="frame-agree", agree_weight=2).resolved()
    assert agree.identity()["agree_weight"] == 2
    with pytest.raises(UserError, match="--agree-weight"):
        AttackSettings(method="dag", target="pure", adaptive="frame-agree", agree_weight=float("nan")).resolved()


def test_a_folder_made_before_the_agreement_weight_resumes(setup, tmp_path, capsys):
    """Manifests written before frame-agree have no agree_weight: a setting the attack does not
    read, so their folders resume."""
    root, ckpt, _ = setup
    args = ("--method", "dag", "--target", "pure", "--adaptive", "spatial", "--k-attack", "1")
    out = tmp_path / "old"
    assert attack(root, ckpt, *args, "--limit", "1", out=out) == 0
    path = out / "manifest.json"
    doc = json.loads(path.read_text())
    del doc["settings"]["agree_weight"]
    path.write_text(json.dumps(doc))
    assert attack(root, ckpt, *args, "--limit", "2", out=out) == 0
    assert len(json.loads(path.read_text())["images"]) == 2


def test_help_explains_every_adaptive_attack_in_one_line(capsys):
    from edge_guard.calibration.attacks import ADAPTIVE

    assert main(["attack", "--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in ADAPTIVE:
        assert any(line.startswith(f"  {name} ") and len(line.split()) > 4 for line in lines), name
    assert any("--agree-weight" in line for line in lines)
