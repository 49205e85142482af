"""Attacks (DAG, Houdini): reach, budgets, 8-bit output, losses (adaptive views: test_adaptive_attacks)."""

import numpy as np
import pytest
import torch
from attack_models import blob_frame, eight_bit, prototype_segmenter, train_tiny

from edge_guard.calibration.attacks import dag, dag_loss, houdini, houdini_loss, make_views, project, quantize
from edge_guard.calibration.attacks.result import success_rate
from edge_guard.calibration.targets import pure, scene
from edge_guard.errors import UserError

torch.set_num_threads(1)  # tiny tensors: more threads only contend with the other jobs
ATTACKS = [pytest.param(dag, id="dag"), pytest.param(houdini, id="houdini")]


@pytest.fixture(scope="module")
def tiny():
    return train_tiny()


# --- budgets and quantisation ------------------------------------------------------------

@pytest.mark.parametrize("l2,linf", [(0.06, None), (None, 8 / 255), (0.02, 0.03), (0.001, None), (1e-4, 1e-3)])
def test_quantize_is_8bit_and_within_budget(l2, linf):
    clean = eight_bit((3, 3, 16, 24), seed=1)
    g = torch.Generator().manual_seed(2)
    for scale in (0.01, 0.1, 0.5):
        adv = (clean + scale * torch.randn(clean.shape, generator=g)).clamp(0, 1)
        q = quantize(clean, adv, l2, linf)
        assert torch.allclose(q * 255, (q * 255).round(), atol=1e-4)
        assert q.min() >= 0 and q.max() <= 1
        d = (q - clean).double()
        if l2 is not None:
            assert (d.flatten(1).pow(2).mean(1).sqrt() <= l2 + 1e-6).all()
        if linf is not None:
            assert d.abs().max() <= linf + 1e-6


def test_quantize_uses_the_budget_it_has():
    """Shrinking only where rounding overshoots: the result sits close to the L2 bound."""
    clean = eight_bit((2, 3, 16, 16), seed=3)
    adv = (clean + 0.3 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(4))).clamp(0, 1)
    q = quantize(clean, adv, l2=0.06)
    r = (q - clean).double().flatten(1).pow(2).mean(1).sqrt()
    assert (r <= 0.06 + 1e-6).all() and (r > 0.06 - 0.5 / 255).all()


def test_project_keeps_box_and_budgets():
    clean = eight_bit((2, 3, 8, 8))
    adv = clean + torch.randn(clean.shape)
    p = project(clean, adv, l2=0.05, linf=0.1)
    d = (p - clean).double()
    assert p.min() >= 0 and p.max() <= 1
    assert d.abs().max() <= 0.1 + 1e-6
    assert (d.flatten(1).pow(2).mean(1).sqrt() <= 0.05 + 1e-6).all()


# --- analytic model ----------------------------------------------------------------------

@pytest.mark.parametrize("attack", ATTACKS)
def test_reaches_reachable_target_on_linear_model(attack):
    model = prototype_segmenter()
    x = eight_bit((2, 3, 32, 64), seed=5)
    target = torch.zeros(2, 32, 64, dtype=torch.long)
    target[0] = 3
    target[1, :, :32], target[1, :, 32:] = 1, 4  # two classes, one boundary
    target[1, :4] = 255  # ignored rows count for nothing
    hyper = {"gamma": 4 / 255} if attack is dag else {"step": 8 / 255}  # colours are far apart
    res = attack(model, x, target, quantize=True, max_iter=300, **hyper)
    assert (res.success >= 0.99).all(), res.success
    with torch.no_grad():
        pred = model(res.images).argmax(1)
    assert torch.equal(pred, res.prediction)
    valid = target != 255
    assert torch.allclose(res.success, success_rate(pred, target, valid))
    assert (res.iterations < 300).all()


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("l2,linf", [(0.03, None), (None, 6 / 255), (0.02, 5 / 255)])
def test_budgets_hold_after_quantisation(attack, l2, linf):
    model = prototype_segmenter()
    x = eight_bit((2, 3, 32, 64), seed=6)
    target = torch.full((2, 32, 64), 2, dtype=torch.long)
    res = attack(model, x, target, quantize=True, max_iter=40, l2=l2, linf=linf)
    d = (res.images - x).double()
    assert torch.allclose(res.images * 255, (res.images * 255).round(), atol=1e-4)
    if l2 is not None:
        assert (d.flatten(1).pow(2).mean(1).sqrt() <= l2 + 1e-6).all()
        assert (res.l2 <= l2 + 1e-6).all()
    if linf is not None:
        assert d.abs().amax() <= linf + 1e-6
        assert (res.linf <= linf + 1e-6).all()
    assert (res.iterations == 40).all()  # the target is out of reach within these budgets


def test_dag_step_is_linf_normalised():
    """One DAG step without quantisation moves the image by exactly gamma in L-inf."""
    model = prototype_segmenter()
    x = eight_bit((1, 3, 16, 16), seed=7) * 0.5 + 0.25
    target = torch.full((1, 16, 16), 1, dtype=torch.long)
    res = dag(model, x, target, gamma=0.01, max_iter=1, quantize=False)
    assert res.iterations.item() == 1
    assert res.linf.item() == pytest.approx(0.01, rel=1e-5)


def test_mask_limits_what_counts_and_what_moves():
    model = prototype_segmenter()
    x = eight_bit((1, 3, 16, 32), seed=8)
    target = torch.full((1, 16, 32), 3, dtype=torch.long)
    mask = torch.zeros(1, 16, 32, dtype=torch.bool)
    mask[..., :16] = True
    res = dag(model, x, target, mask=mask, gamma=4 / 255, max_iter=300, quantize=True)
    assert res.success.item() >= 0.99
    # Per-pixel model: pixels outside the mask get no gradient, so they do not change.
    assert torch.equal(res.images[..., 16:], x[..., 16:])


def test_finished_images_leave_the_batch():
    model = prototype_segmenter()
    x = eight_bit((2, 3, 16, 16), seed=9)
    with torch.no_grad():
        target = model(x).argmax(1)
    target[1] = 2
    res = dag(model, x, target, gamma=4 / 255, max_iter=300, quantize=True)
    assert res.iterations[0].item() == 0 and torch.equal(res.images[0], x[0])
    assert res.iterations[1].item() > 0 and res.success[1] >= 0.99


def test_input_errors():
    model = prototype_segmenter()
    x = eight_bit((1, 3, 8, 8))
    with pytest.raises(ValueError, match="8-bit"):
        dag(model, x + 0.001, torch.zeros(1, 8, 8, dtype=torch.long), quantize=True)
    # an offset far below 1/255 would still land on the reported budgets (1e-6 is the contract)
    with pytest.raises(ValueError, match="8-bit"):
        dag(model, (x + 9e-5).clamp(max=1), torch.zeros(1, 8, 8, dtype=torch.long), quantize=True)
    with pytest.raises(ValueError, match="negative"):
        dag(model, x, torch.full((1, 8, 8), -1, dtype=torch.long))
    with pytest.raises(ValueError, match="no valid"):
        dag(model, x, torch.full((1, 8, 8), 255, dtype=torch.long))
    with pytest.raises(ValueError, match="classes"):
        dag(model, x, torch.full((1, 8, 8), 7, dtype=torch.long))
    with pytest.raises(ValueError, match="target must be"):
        dag(model, x, torch.zeros(1, 8, 9, dtype=torch.long))
    with pytest.raises(UserError, match="unknown adaptive"):
        make_views("blur")


# --- losses ------------------------------------------------------------------------------

def test_dag_loss_counts_active_pixels_only():
    logits = torch.tensor([[[[2.0, 0.0]], [[1.0, 3.0]]]])  # (1, 2, 1, 2): pred = [0, 1]
    target = torch.tensor([[[1, 1]]])
    loss = dag_loss(logits, target, torch.ones(1, 1, 2, dtype=torch.bool))
    assert loss.item() == pytest.approx(1.0)  # pixel 0: 2 - 1; pixel 1 already on target


def test_houdini_value_and_gradient_direction():
    g = torch.Generator().manual_seed(0)
    logits = (2 * torch.randn(2, 4, 5, 6, generator=g, dtype=torch.float64)).requires_grad_(True)
    target = torch.randint(0, 4, (2, 5, 6), generator=g)
    valid = torch.rand(2, 5, 6, generator=g) > 0.2
    value = houdini_loss(logits, target, valid)
    z_t = logits.gather(1, target[:, None])[:, 0]
    z_p, pred = logits.max(1)
    task = valid & (pred != target)
    exact = (torch.special.ndtr(z_p - z_t) * task).flatten(1).sum(1)
    assert torch.allclose(value, exact)
    (ours,) = torch.autograd.grad(value.sum(), logits)
    for i in range(2):  # each image's gradient is the exact one times a positive constant
        (ref,) = torch.autograd.grad(exact[i], logits, retain_graph=True)
        a, b = ours[i].flatten(), ref[i].flatten()
        ratio = a.norm() / b.norm()
        assert ratio > 0 and torch.allclose(a, ratio * b, atol=1e-10)


def test_houdini_gradient_survives_large_margins():
    """phi(40) underflows float32; the rescaled weights still move the far pixel."""
    logits = torch.tensor([[[[40.0]], [[0.0]]]]).requires_grad_(True)  # pred 0, margin 40
    loss = houdini_loss(logits, torch.tensor([[[1]]]), torch.ones(1, 1, 1, dtype=torch.bool))
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    assert grad[0, 0].item() > 0 and grad[0, 1].item() < 0


# --- tiny trained model ------------------------------------------------------------------

@pytest.mark.parametrize("attack", ATTACKS)
def test_tiny_model_pure_and_scene(tiny, attack):
    model, x, _ = tiny
    x = x[:3]
    h, w = x.shape[-2:]
    targets = {
        "pure": np.stack([pure((h, w), s) for s in range(3)]),
        "scene": np.stack([scene((h, w), s, blob_frame(np.random.default_rng(200 + s), s)[1])
                           for s in range(3)]),
    }
    for name, t in targets.items():
        res = attack(model, x, torch.tensor(t).long(), quantize=True)  # default iterations
        assert (res.success >= 0.9).all(), (name, res.success)
        assert (res.iterations <= 200).all()
        assert torch.allclose(res.images * 255, (res.images * 255).round(), atol=1e-4)
        with torch.no_grad():
            check = success_rate(model(res.images).argmax(1), torch.tensor(t).long(),
                                 torch.ones(t.shape, dtype=torch.bool))
        assert torch.allclose(check, res.success)  # measured on the returned 8-bit images
