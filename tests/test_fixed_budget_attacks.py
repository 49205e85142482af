"""Fixed-budget L-inf attacks (SegPGD, masked-CE PGD): losses, budgets, reach, seeds, views, CLI."""

import json
import math

import cv2
import numpy as np
import pytest
import torch
from attack_cli_setup import attack, make_setup
from attack_models import eight_bit, prototype_segmenter, train_tiny

from edge_guard.calibration.attacks import (ATTACKS, LINF_PRESETS, make_views, masked_ce, masked_ce_loss, segpgd,
                                            segpgd_lambda, segpgd_loss)
from edge_guard.calibration.attacks.result import success_rate
from edge_guard.calibration.targets import pure

torch.set_num_threads(1)  # tiny tensors: more threads only contend with the other jobs
ATTACKS_FB = [pytest.param(segpgd, id="segpgd"), pytest.param(masked_ce, id="maskedce")]
ONE = torch.ones(1, 1, 2, dtype=torch.bool)


@pytest.fixture(scope="module")
def tiny():
    return train_tiny()


def two_pixels():
    """(1, 2, 1, 2) logits: pixel 0 predicts class 0, pixel 1 class 1; their CE toward class 1."""
    logits = torch.tensor([[[[2.0, 1.0]], [[0.0, 3.0]]]], dtype=torch.float64, requires_grad=True)
    ce_to_1 = (math.log(1 + math.exp(2.0)), math.log(1 + math.exp(-2.0)))
    return logits, ce_to_1


# --- losses ------------------------------------------------------------------------------

def test_segpgd_lambda_runs_from_0_to_just_under_a_half():
    T = 20
    assert segpgd_lambda(0, T) == 0.0  # t = 1
    assert segpgd_lambda(T - 1, T) == pytest.approx((T - 1) / (2 * T))  # t = T
    assert all(segpgd_lambda(i, T) < segpgd_lambda(i + 1, T) for i in range(T - 1))


def test_segpgd_loss_splits_won_and_not_yet_won_pixels():
    logits, (ce0, ce1) = two_pixels()
    target = torch.tensor([[[1, 1]]])  # pixel 0 not yet on target, pixel 1 on it
    T = 4
    at_1, at_T = segpgd_lambda(0, T), segpgd_lambda(T - 1, T)  # 0 and 3/8
    assert segpgd_loss(logits, target, ONE, lam=at_1).item() == pytest.approx(ce0)
    assert segpgd_loss(logits, target, ONE, lam=at_T).item() == pytest.approx(5 / 8 * ce0 + 3 / 8 * ce1)
    # untargeted, against labels [1, 1]: pixel 1 is still correct (1 - lam), pixel 0 fooled (lam)
    assert segpgd_loss(logits, target, ONE, lam=at_1, targeted=False).item() == pytest.approx(-ce1)
    assert segpgd_loss(logits, target, ONE, lam=at_T, targeted=False).item() == pytest.approx(
        -(5 / 8 * ce1 + 3 / 8 * ce0))
    only_1 = torch.tensor([[[False, True]]])  # an ignored pixel counts for nothing
    assert segpgd_loss(logits, target, only_1, lam=at_T).item() == pytest.approx(3 / 8 * ce1)


@pytest.mark.parametrize("targeted", [True, False])
def test_masked_ce_ignores_fooled_pixels(targeted):
    logits, (ce0, ce1) = two_pixels()
    target = torch.tensor([[[1, 1]]])
    loss = masked_ce_loss(logits, target, ONE, targeted=targeted)
    # targeted: pixel 1 already on target leaves the loss; untargeted: pixel 0 already fooled does
    assert loss.item() == pytest.approx(ce0 if targeted else -ce1)
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    gone = 1 if targeted else 0
    assert torch.all(grad[..., gone] == 0) and torch.any(grad[..., 1 - gone] != 0)
    all_won = torch.tensor([[[0, 1]]]) if targeted else torch.tensor([[[1, 0]]])
    assert masked_ce_loss(logits, all_won, ONE, targeted=targeted).item() == 0.0


# --- budgets, 8-bit output, seeds ------------------------------------------------------------

@pytest.mark.parametrize("attack", ATTACKS_FB)
@pytest.mark.parametrize("preset", list(LINF_PRESETS))
def test_linf_budget_holds_after_quantisation(attack, preset):
    model = prototype_segmenter()
    x = eight_bit((2, 3, 16, 32), seed=6)
    target = torch.full((2, 16, 32), 2, dtype=torch.long)
    res = attack(model, x, target, linf=preset, quantize=True, max_iter=8, seed=0)
    eps = LINF_PRESETS[preset]
    assert torch.allclose(res.images * 255, (res.images * 255).round(), atol=1e-4)
    assert res.images.min() >= 0 and res.images.max() <= 1
    assert (res.images - x).abs().max() <= eps + 1e-6 and (res.linf <= eps + 1e-6).all()
    assert (res.iterations == 8).all()  # no early stop by default: every step runs
    with torch.no_grad():  # the metrics are of the (best) images returned
        assert torch.equal(model(res.images).argmax(1), res.prediction)


def test_a_seed_fixes_the_random_start_per_image():
    model = prototype_segmenter()
    x = eight_bit((2, 3, 16, 16), seed=7)
    target = torch.full((2, 16, 16), 1, dtype=torch.long)
    kwargs = dict(linf=8 / 255, quantize=True, max_iter=3)
    a = segpgd(model, x, target, seed=[3, 4], **kwargs)
    assert torch.equal(a.images, segpgd(model, x, target, seed=[3, 4], **kwargs).images)
    assert not torch.equal(a.images, segpgd(model, x, target, seed=[5, 4], **kwargs).images)
    alone = segpgd(model, x[1:], target[1:], seed=[4], **kwargs)  # the same start in another batch
    assert (alone.images[0] - a.images[1]).abs().max() <= 1 / 255 + 1e-6


def test_threshold_brings_back_the_early_stop():
    model = prototype_segmenter()
    x = eight_bit((1, 3, 16, 16), seed=8)
    with torch.no_grad():
        target = model(x).argmax(1)  # already reached
    res = masked_ce(model, x, target, threshold=0.99, quantize=True, max_iter=10)
    assert res.iterations.item() == 0 and torch.equal(res.images, x)


# --- tiny trained model ------------------------------------------------------------------

@pytest.mark.parametrize("attack", ATTACKS_FB)
def test_raises_success_over_the_clean_frame(tiny, attack):
    model, x, _ = tiny
    x = x[:3]
    h, w = x.shape[-2:]
    target = torch.tensor(np.stack([pure((h, w), s) for s in range(3)])).long()
    valid = torch.ones(target.shape, dtype=torch.bool)
    with torch.no_grad():
        clean = model(x).argmax(1)
    before = success_rate(clean, target, valid)
    res = attack(model, x, target, linf="8/255", max_iter=20, quantize=True, seed=0)
    assert (res.success > before + 0.05).all(), (before, res.success)
    # untargeted: away from the clean prediction (none of it fooled before the attack)
    away = attack(model, x, clean, linf="4/255", max_iter=20, quantize=True, seed=0, targeted=False)
    assert (away.success > 0.5).all(), away.success
    with torch.no_grad():
        fooled = 1 - success_rate(model(away.images).argmax(1), clean, valid)
    assert torch.allclose(fooled, away.success)


@pytest.mark.parametrize("attack", ATTACKS_FB)
@pytest.mark.parametrize("adaptive", ["scale", "spatial"])
def test_views_of_the_adaptive_attacks_are_accepted(tiny, attack, adaptive):
    model, x, _ = tiny
    x = x[:2]
    target = torch.tensor(np.stack([pure(x.shape[-2:], s) for s in range(2)])).long()
    views = make_views(adaptive, 2, 16, 2, 4)
    kwargs = dict(linf="4/255", max_iter=4, quantize=True, seed=[1, 2])
    res = attack(model, x, target, views=views, **kwargs)
    assert (res.iterations == 4).all() and (res.images - x).abs().max() <= 4 / 255 + 1e-6
    assert torch.equal(res.images, attack(model, x, target, views=views, **kwargs).images)
    # the views' gradients count: the plain attack's last iterate is another image
    assert not torch.equal(res.images, attack(model, x, target, keep_best=False, **kwargs).images)


# --- settings and CLI --------------------------------------------------------------------

def test_settings_resolve_the_fixed_budget_defaults():
    from edge_guard.calibration.attacks.run import AttackSettings

    seg = AttackSettings(method="segpgd", target="pure").resolved()
    assert (seg.linf, seg.step, seg.max_iter, seg.threshold, seg.l2) == (8 / 255, 2 / 255, 100, None, None)
    mce = AttackSettings(method="maskedce", target="pure", adaptive="scale", linf=4 / 255).resolved()
    assert (mce.linf, mce.step, mce.l2) == (4 / 255, 4 / 255, None)
    dag = AttackSettings(method="dag", target="pure", adaptive="scale").resolved()  # as before
    assert (dag.linf, dag.step, dag.max_iter, dag.threshold, dag.l2) == (None, 0.5 / 255, 200, 0.99, 0.06)
    assert set(ATTACKS) >= {"segpgd", "maskedce"}


def test_evaluate_accepts_the_new_method_names():
    from edge_guard.calibration.eval_plan import EvalSettings

    EvalSettings(data="d", out="o", model="m", methods=("segpgd", "maskedce")).check()


def test_evaluate_runs_fixed_budget_cells_at_their_own_budget():
    from edge_guard.calibration.eval_plan import EvalSettings, attack_settings, plan_attacks

    s = EvalSettings(data="d", out="o", model="m", methods=("segpgd", "dag"), max_iter=200, attack_stop=0.99,
                     linf=(4 / 255, 8 / 255))
    cells = {(a.method, a.kind): attack_settings(s, a) for a in plan_attacks(s)}
    seg, dag = cells[("segpgd8", "plain")], cells[("dag", "plain")]
    assert (seg.method, seg.max_iter, seg.threshold, seg.linf) == ("segpgd", 100, None, 8 / 255)  # no early stop
    assert (cells[("segpgd4", "scale")].method, cells[("segpgd4", "scale")].linf) == ("segpgd", 4 / 255)
    assert (dag.max_iter, dag.threshold, dag.linf) == (200, 0.99, None)  # as before, one cell
    assert s.method_labels == ["segpgd4", "segpgd8", "dag"]
    quick = EvalSettings(data="d", out="o", model="m", methods=("segpgd",), max_iter=5)
    assert attack_settings(quick, plan_attacks(quick)[0]).max_iter == 5     # --quick stays quick


def test_cli_segpgd_writes_frames_within_the_budget(tmp_path):
    root, ckpt, _ = make_setup(tmp_path)
    args = ("--method", "segpgd", "--target", "pure", "--linf", "8/255", "--limit", "2")
    assert attack(root, ckpt, *args, out="seg") == 0
    doc = json.loads((root / "seg" / "manifest.json").read_text())
    s = doc["settings"]
    assert (s["method"], s["linf"], s["step"], s["max_iter"], s["threshold"]) == ("segpgd", 8 / 255, 2 / 255, 3, None)
    assert doc["summary"]["reached_threshold"] is None and len(doc["images"]) == 2
    for rec in doc["images"].values():
        adv = cv2.imread(str(root / "seg" / rec["adversarial"])).astype(int)
        clean = cv2.imread(rec["source"]).astype(int)
        assert np.abs(adv - clean).max() <= 8 and rec["iterations"] == 3
    assert attack(root, ckpt, *args, out="seg") == 0  # resumes: nothing left
    assert attack(root, ckpt, "--method", "maskedce", "--target", "pure", "--linf", "4/255", "--limit", "1",
                  "--adaptive", "scale", out="mce") == 0
