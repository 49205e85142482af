"""`edge-guard attack` on a tiny folder: batches, image folders, two runs, Ctrl-C, adaptive
settings and their resume (manifests and refusals: test_attack_cli.py)."""

import json

import cv2
import numpy as np
import pytest

from attack_cli_setup import attack, make_setup

from edge_guard.cli import main
from edge_guard.errors import UserError


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return make_setup(tmp_path_factory.mktemp("attack_cli"))


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
