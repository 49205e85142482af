"""adv_lib's dag and alma_prox as attack methods (adv_lib.dag, adv_lib.alma_prox) on a tiny model
for a few steps: 8-bit results within the budgets, the last iterate on a miss (per frame), plain
only, and `edge-guard attack --method adv_lib.dag` end to end. The missing-dependency test runs
everywhere; the others need adv_lib (`pip install --no-deps adv-lib`)."""

import importlib.util
import json

import pytest

torch = pytest.importorskip("torch")

from attack_models import eight_bit, prototype_segmenter

from edge_guard.calibration.attacks import ATTACKS, PLAIN_ONLY, adv_lib_alma_prox, adv_lib_dag
from edge_guard.calibration.attacks.budget import is_8bit, quantize as quantize_8bit
from edge_guard.calibration.attacks.settings import AttackSettings
from edge_guard.errors import MissingDependency, UserError

needs_adv_lib = pytest.mark.skipif(importlib.util.find_spec("adv_lib") is None,
                                   reason="adv_lib is not installed (pip install --no-deps adv-lib)")


def _frames(n=1, seed=1):
    x = eight_bit((n, 3, 8, 16), seed=seed)
    target = torch.full((n, 8, 16), 2, dtype=torch.int64)
    target[:, :, :2] = 255  # ignored pixels count nowhere
    return x, target


def test_missing_adv_lib_is_one_line_naming_the_install(monkeypatch):
    from edge_guard.calibration.attacks import adv_lib_attacks

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "adv_lib" else real(name, *a))
    with pytest.raises(MissingDependency, match="pip install --no-deps adv-lib") as info:
        adv_lib_attacks.load_adv_lib()
    assert "\n" not in str(info.value)
    x, target = _frames()
    with pytest.raises(MissingDependency):
        adv_lib_dag(prototype_segmenter(), x, target, max_iter=1)


def test_registered_plain_only_with_their_defaults():
    assert set(PLAIN_ONLY) <= set(ATTACKS)
    dag = AttackSettings(method="adv_lib.dag", target="pure").resolved()
    assert (dag.step, dag.max_iter, dag.threshold) == (0.5 / 255, 200, 0.99)
    alma = AttackSettings(method="adv_lib.alma_prox", target="pure").resolved()
    assert (alma.step, alma.max_iter, alma.threshold) == (None, 500, 0.99)
    for method in PLAIN_ONLY:
        with pytest.raises(UserError, match="no adaptive variant") as info:
            AttackSettings(method=method, target="pure", adaptive="scale").resolved()
        assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="--step"):
        AttackSettings(method="adv_lib.alma_prox", target="pure", step=0.01).resolved()
    x, target = _frames()
    with pytest.raises(UserError, match="attack the model only"):  # before adv_lib is even loaded
        adv_lib_dag(prototype_segmenter(), x, target, views=object())


@needs_adv_lib
def test_dag_miss_gives_the_last_iterate_per_frame():
    """Frame 0 starts on its target (reached at once: the clean image, 0 steps); frame 1 cannot
    reach threshold 1 in 3 steps: adv_lib's dag returns it clean, we return its last iterate,
    the one a single-frame run's model saw last."""
    from edge_guard.calibration.attacks.adv_lib_attacks import load_adv_lib

    model = prototype_segmenter(num_classes=5)
    x, target = _frames(2)
    with torch.no_grad():
        target[0] = model(x[:1]).argmax(1)[0]
    res = adv_lib_dag(model, x, target, max_iter=3, threshold=1.0)
    assert is_8bit(res.images) and 0 <= float(res.images.min()) and float(res.images.max()) <= 1
    assert res.iterations.tolist() == [0, 3] and res.success[0] == 1.0 and res.success[1] < 1.0
    assert torch.equal(res.images[0], x[0]) and not torch.equal(res.images[1], x[1])

    seen = []
    adv = load_adv_lib()
    returned = adv["dag"](lambda z: seen.append(z.detach().clone()) or model(z), x[1:], target[1:],
                          masks=target[1:] != 255, targeted=True, adv_threshold=1.0, max_iter=3, γ=0.5 / 255)
    assert torch.equal(returned, x[1:]) and len(seen) == 3  # adv_lib: the clean image on a miss
    assert torch.equal(res.images[1:], quantize_8bit(x[1:], seen[-1]))
    rec = res.records()[1]
    assert rec["linf"] > 0 and rec["l2"] <= rec["linf"] + 1e-12 and rec["seconds"] >= 0


@needs_adv_lib
def test_alma_prox_within_budgets_and_8bit():
    model = prototype_segmenter(num_classes=5)
    x, target = _frames(2, seed=3)
    target[1, :, 8:] = 255  # another count of valid pixels than frame 0's
    res = ATTACKS["adv_lib.alma_prox"](model, x, target, quantize=True, linf=2 / 255, max_iter=3,
                                       threshold=0.99, views=None, seed=[0, 1], step=None)
    assert is_8bit(res.images) and float(res.images.min()) >= 0 and float(res.images.max()) <= 1
    assert (res.linf <= 2 / 255 + 1e-6).all() and res.iterations.tolist() == [3, 3]
    assert [set(r) for r in res.records()] == [{"success", "miou", "l2", "linf", "iterations", "seconds"}] * 2
    again = adv_lib_alma_prox(model, x, target, linf=2 / 255, max_iter=3)
    assert torch.equal(res.images, again.images)  # deterministic


@needs_adv_lib
def test_edge_guard_attack_runs_adv_lib_dag(tmp_path, capsys):
    import cv2

    from attack_cli_setup import attack, make_setup
    from edge_guard.cli import main

    assert main(["attack", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "adv_lib.alma_prox (the adv_lib ones need `pip install --no-deps adv-lib`)" in help_text
    root, ckpt, _ = make_setup(tmp_path)
    assert attack(root, ckpt, "--method", "adv_lib.dag", "--target", "pure", "--limit", "1",
                  "--max-iter", "2", out="adv_dag") == 0
    manifest = json.loads((root / "adv_dag" / "manifest.json").read_text())
    assert manifest["settings"]["method"] == "adv_lib.dag" and manifest["settings"]["step"] == 0.5 / 255
    (rec,) = manifest["images"].values()
    assert rec["iterations"] <= 2 and 0 <= rec["success"] <= 1
    assert cv2.imread(str(root / "adv_dag" / rec["adversarial"])).shape == (48, 96, 3)
    capsys.readouterr()
    assert attack(root, ckpt, "--method", "adv_lib.alma_prox", "--target", "pure", "--adaptive", "scale",
                  out="refused") == 2
    assert "no adaptive variant" in capsys.readouterr().err
