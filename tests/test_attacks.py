"""Attacks (DAG, Houdini, adaptive views): reach, budgets, 8-bit output, objectives."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from edge_guard.calibration.attacks import (
    BlurViews, FrameAgreeViews, FrameViews, PairViews, PatchViews, dag, dag_loss, gaussian_blur, houdini, houdini_loss,
    make_views, project, quantize)
from edge_guard.calibration.attacks.result import success_rate
from edge_guard.calibration.targets import pure, scene
from edge_guard.errors import UserError

torch.set_num_threads(1)  # tiny tensors: more threads only contend with the other jobs
ATTACKS = [pytest.param(dag, id="dag"), pytest.param(houdini, id="houdini")]


def frozen(model: nn.Module) -> nn.Module:
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def prototype_segmenter(num_classes: int = 5, sharpness: float = 20.0, seed: int = 0) -> nn.Module:
    """Per-pixel nearest-colour classifier as a 1x1 conv: logit_c = s(2 mu_c.x - |mu_c|^2),
    i.e. -s|x - mu_c|^2 up to a term shared by all classes. Every class wins at its own
    colour mu_c (inside the RGB cube), so every target is reachable at every pixel."""
    g = torch.Generator().manual_seed(seed)
    mu = 0.15 + 0.7 * torch.rand(num_classes, 3, generator=g)
    conv = nn.Conv2d(3, num_classes, 1)
    with torch.no_grad():
        conv.weight.copy_((2 * sharpness * mu).view(num_classes, 3, 1, 1))
        conv.bias.copy_(-sharpness * (mu ** 2).sum(1))
    return frozen(conv)


def eight_bit(shape, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g).float() / 255


# --- a tiny trained model on synthetic blobs ---------------------------------------------

SPACING = 0.05  # class colours are 12.75/255 apart: a model with realistic input gain
COLOURS = np.array(list(itertools.product((-1, 0, 1), repeat=3))[:19], np.float32) * SPACING * 255 + 128


def blob_frame(rng, background, h=32, w=64):
    labels = np.full((h, w), background, np.uint8)
    for _ in range(5):
        y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
        labels[y:y + rng.integers(4, h // 2), x:x + rng.integers(4, w // 3)] = rng.integers(19)
    image = COLOURS[labels] + rng.normal(0, 1, (h, w, 3))
    return np.clip(image, 0, 255).round().astype(np.uint8), labels


class Centred(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net((x - 0.5) / SPACING)


def train_tiny():
    """(model, images, labels): a 3-layer dilated conv net trained 80 steps on blob frames."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    frames = [blob_frame(rng, i % 19) for i in range(38)]
    x = torch.tensor(np.stack([f[0] for f in frames])).permute(0, 3, 1, 2).float() / 255
    y = torch.tensor(np.stack([f[1] for f in frames])).long()
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.ReLU(), nn.Conv2d(16, 19, 1))
    model = Centred(net)
    opt = torch.optim.Adam(net.parameters(), 2e-2)
    for _ in range(80):
        idx = torch.randint(0, len(x), (8,))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model = frozen(model)
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc > 0.85, f"the tiny model did not train ({acc:.2f})"
    return model, x, y


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


# --- adaptive attacks --------------------------------------------------------------------

def view_objective(model, views, loss, images, target, seed):
    """Sum of ``loss`` over the views drawn with ``seed`` (same draws for any images)."""
    total = torch.zeros(len(images), dtype=torch.float64)
    valid = target != 255
    with torch.no_grad():
        for group in views.groups(images, target, valid, np.random.default_rng(seed)):
            logits = [model(v.images) for v in group]
            total += sum(loss(lg, v.target, v.valid) for lg, v in zip(logits, group)).double()
            extra = views.coupling(logits, group)
            if extra is not None:
                total += extra.double()
    return total


@pytest.mark.parametrize("std", [0.4, 0.5, 0.7, 3.0, 5.0])
def test_blur_is_normalised_and_is_the_scale_detectors(std):
    """The layer blurs as the detector's scoring.gaussian_blur (8-bit OpenCV) does, kernel size
    included (stds where OpenCV's own sizing differs, 0.4 and 0.7, are among them)."""
    import cv2

    from edge_guard.calibration.scoring import blur_ksize, gaussian_blur as detector_blur

    img = (eight_bit((1, 3, 40, 56), seed=3) * 255).round()
    ours = gaussian_blur(img.double(), std)[0].permute(1, 2, 0).numpy()
    hwc = img[0].permute(1, 2, 0).numpy()
    k = blur_ksize(std)  # the detector's kernel, in float: the same sums
    exact = cv2.GaussianBlur(hwc.astype(np.float64), (k, k), std, borderType=cv2.BORDER_REFLECT_101)
    assert np.abs(ours - exact).max() < 1e-6
    # the detector itself blurs 8-bit frames in OpenCV's fixed point, rounded to 8 bits
    assert np.abs(ours - detector_blur(hwc.astype(np.uint8), std)).max() < 2.0
    flat = torch.full((1, 3, 20, 20), 0.4)
    assert torch.allclose(gaussian_blur(flat, 3.0), flat)


@pytest.mark.parametrize("attack", ATTACKS)
def test_adaptive_scale_moves_its_objective(tiny, attack):
    model, x, _ = tiny
    x = x[:2]
    t = torch.tensor(np.stack([pure(x.shape[-2:], s) for s in (3, 4)])).long()
    views = BlurViews((0.5, 3.0, 5.0))
    loss = dag_loss if attack is dag else houdini_loss
    before = view_objective(model, views, loss, x, t, 0)
    res = attack(model, x, t, quantize=True, views=views, seed=0)
    after = view_objective(model, views, loss, res.images, t, 0)
    assert (after < 0.5 * before).all(), (before, after)
    with torch.no_grad():
        blurred = [success_rate(model(gaussian_blur(res.images, s)).argmax(1), t, t != 255) for s in views.stds]
    assert all((b >= 0.9).all() for b in blurred), blurred  # the blurred frames are fooled too


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("kind", ["spatial", "spatial-pairs"])
def test_adaptive_spatial_moves_its_objective(tiny, kind, attack):
    model, x, _ = tiny
    x = x[:2]
    t = torch.tensor(np.stack([pure(x.shape[-2:], s) for s in (5, 6)])).long()
    views = make_views(kind, k_attack=3, patch_size=512)
    assert isinstance(views, PatchViews if kind == "spatial" else PairViews)
    loss = dag_loss if attack is dag else houdini_loss
    before = view_objective(model, views, loss, x, t, 123)
    res = attack(model, x, t, quantize=True, views=views, max_iter=40, seed=0)
    after = view_objective(model, views, loss, res.images, t, 123)
    assert (after < 0.5 * before).all(), (before, after)


def test_patch_views_follow_the_detector_geometry():
    x = torch.rand(2, 3, 64, 128)
    t = torch.zeros(2, 64, 128, dtype=torch.long)
    views = PairViews(k=4, size=512, low=32, high=64)
    groups = list(views.groups(x, t, t == 0, np.random.default_rng(0)))
    assert len(groups) == 4 and all(len(g) == 2 for g in groups)
    s = groups[0][0].images.shape[-1]
    assert s < 64 and groups[0][0].images.shape == (2, 3, s, s)
    for a, b in groups:
        d = np.abs(b.boxes - a.boxes)
        assert (d >= 1).all() and (d < s).all()  # overlapping, displaced pairs
        for i in range(2):
            (y, c) = a.boxes[i]
            assert torch.equal(a.images[i], x[i, :, y:y + s, c:c + s])
    single = list(PatchViews(k=5).groups(x, t, t == 0, np.random.default_rng(0)))
    assert len(single) == 5
    assert list(PatchViews(k=0).groups(x, t, t == 0, np.random.default_rng(0))) == []


@pytest.mark.parametrize("attack", ATTACKS)
def test_per_image_seeds_make_adaptive_results_independent_of_the_batch(attack):
    # A resumed run batches other frames together: an image's views must not depend on that.
    model = prototype_segmenter()
    x = eight_bit((3, 3, 32, 64), seed=2)
    target = torch.full((3, 32, 64), 3, dtype=torch.long)
    views = PatchViews(k=2, size=16, low=2, high=4)
    kwargs = dict(views=views, max_iter=4, threshold=1.0, l2=0.06)
    batched = attack(model, x, target, seed=[7, 8, 9], **kwargs)
    alone = [attack(model, x[i:i + 1], target[i:i + 1], seed=[s], **kwargs) for i, s in enumerate((7, 8, 9))]
    for i, one in enumerate(alone):
        assert torch.allclose(batched.images[i], one.images[0], atol=1e-6)
    # One shared seed draws the batch's views from one stream: image 1 then differs.
    shared = attack(model, x, target, seed=7, **kwargs)
    assert not torch.allclose(shared.images[1], alone[1].images[0], atol=1e-6)
    with pytest.raises(ValueError, match="one value per image"):
        attack(model, x, target, seed=[7, 8], **kwargs)


def test_pair_consistency_is_zero_for_agreeing_patches():
    views = PairViews(k=1, size=16, low=2, high=4)
    x = torch.rand(1, 3, 40, 40)
    t = torch.zeros(1, 40, 40, dtype=torch.long)
    (group,) = list(views.groups(x, t, t == 0, np.random.default_rng(1)))
    # one random logit map: two crops of it agree exactly where they overlap, and only if
    # the overlap is aligned (a constant map could not tell)
    same = torch.randn(1, 5, 40, 40, generator=torch.Generator().manual_seed(2))
    logits = [torch.stack([same[i, :, y:y + 16, c:c + 16] for i, (y, c) in enumerate(v.boxes)]) for v in group]
    assert views.coupling(logits, group).abs().max() < 1e-6
    logits[1] = logits[1] + torch.randn_like(logits[1])
    assert views.coupling(logits, group).item() > 0


# --- adaptive attacks on the patch-vs-frame detector -------------------------------------

@pytest.mark.parametrize("kind", ["frame", "frame-agree"])
def test_frame_views_crop_where_the_sampler_says(kind):
    from edge_guard.patches import sample_patches

    x = torch.rand(2, 3, 32, 48)
    t = torch.randint(0, 5, (2, 32, 48))
    t[:, :4] = 255
    frame = torch.randint(0, 5, (2, 32, 48))
    views = make_views(kind, k_attack=3, patch_size=16, agree_weight=0.5)
    assert isinstance(views, FrameViews if kind == "frame" else FrameAgreeViews)
    extra = {"frame": frame} if kind == "frame-agree" else {}
    groups = list(views.groups(x, t, t != 255, [np.random.default_rng(5), np.random.default_rng(6)], **extra))
    assert len(groups) == 3 and all(len(g) == 1 for g in groups)
    for i, seed in enumerate((5, 6)):  # each image's own generator, as the detector draws
        tops = sample_patches(32, 48, 16, 3, np.random.default_rng(seed))
        for (view,), (y, c) in zip(groups, tops.tolist()):
            assert tuple(view.boxes[i]) == (y, c)
            assert torch.equal(view.images[i], x[i, :, y:y + 16, c:c + 16])
            if kind == "frame":
                assert torch.equal(view.target[i], t[i, y:y + 16, c:c + 16])
                assert torch.equal(view.valid[i], t[i, y:y + 16, c:c + 16] != 255) and view.weight == 1
            else:  # toward the frame's labels, on every pixel the detector compares
                assert torch.equal(view.target[i], frame[i, y:y + 16, c:c + 16])
                assert bool(view.valid[i].all()) and view.weight == 0.5
    # a frame smaller than the patch: the patch shrinks to fit (small test images)
    (small,) = list(make_views(kind, k_attack=1, patch_size=512).groups(
        x, t, t != 255, np.random.default_rng(0), **extra))
    assert small[0].images.shape == (2, 3, 32, 32)
    assert list(make_views(kind, k_attack=0).groups(x, t, t != 255, np.random.default_rng(0), **extra)) == []
    if kind == "frame-agree":
        with pytest.raises(ValueError, match="frame's labels"):
            list(views.groups(x, t, t != 255, np.random.default_rng(0)))
        assert views.settings() == {"adaptive": "frame-agree", "k_attack": 3, "patch_size": 16, "agree_weight": 0.5}


def test_agreement_gradient_pushes_a_patch_toward_the_frame_labels():
    """Hand-checkable: a per-pixel linear model z_c = w_c.x + b_c, an image at class 0's colour
    (every pixel predicted 0) and frame labels of class 1. DAG's loss on a patch pixel is
    z_0 - z_1, so the agreement term's gradient is weight * (w_0 - w_1) on the patch's pixels
    and 0 elsewhere; a step against it raises z_1 - z_0 there."""
    from edge_guard.calibration.attacks.engine import _view_grads

    model = prototype_segmenter(num_classes=2)
    w = model.weight[:, :, 0, 0]
    mu0 = (w[0] / 40).view(1, 3, 1, 1)  # prototype colour of class 0 (sharpness 20: w = 40 mu)
    x = mu0.expand(1, 3, 24, 24).clone().requires_grad_(True)
    assert bool((model(x).argmax(1) == 0).all())
    target = torch.zeros(1, 24, 24, dtype=torch.long)  # the frame's own target is not used here
    frame = torch.ones(1, 24, 24, dtype=torch.long)
    views = FrameAgreeViews(k=1, size=8, weight=0.5)
    grad, ok = _view_grads(model, views, x, target, target == 0, [np.random.default_rng(3)], dag_loss, 0.99,
                           frame=frame)
    tops, _ = views.tops(1, 24, 24, [np.random.default_rng(3)])  # the draw the views made
    y, c = tops[0, 0].tolist()
    inside = torch.zeros(1, 1, 24, 24, dtype=torch.bool)
    inside[..., y:y + 8, c:c + 8] = True
    expected = torch.where(inside, (0.5 * (w[0] - w[1])).view(1, 3, 1, 1), torch.zeros(()))
    assert torch.allclose(grad, expected, atol=1e-5) and not bool(ok.any())
    with torch.no_grad():
        z, z0 = model(x - 1e-3 * grad), model(x)
    margin, before = z[:, 1] - z[:, 0], z0[:, 1] - z0[:, 0]
    assert bool((margin > before)[inside[:, 0]].all()) and torch.equal(margin[~inside[:, 0]], before[~inside[:, 0]])
    # patches that already agree with the frame: no gradient, and the stop test holds
    grad, ok = _view_grads(model, views, x, target, target == 0, [np.random.default_rng(3)], dag_loss, 0.99,
                           frame=torch.zeros_like(frame))
    assert not bool(grad.any()) and bool(ok.all())


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("kind", ["frame", "frame-agree"])
def test_frame_attacks_return_8bit_images_within_budget(tiny, kind, attack):
    model, x, _ = tiny
    x = x[:2]
    t = torch.tensor(np.stack([pure(x.shape[-2:], s) for s in (5, 6)])).long()
    views = make_views(kind, k_attack=2, patch_size=16)
    res = attack(model, x, t, quantize=True, views=views, max_iter=3, l2=0.06, seed=[1, 2])
    assert res.images.shape == x.shape and (res.iterations <= 3).all()
    assert torch.allclose(res.images * 255, (res.images * 255).round(), atol=1e-4)
    assert (res.l2 <= 0.06 + 1e-6).all() and res.images.min() >= 0 and res.images.max() <= 1


@pytest.mark.parametrize("attack", ATTACKS)
def test_adaptive_frame_moves_its_objective(tiny, attack):
    model, x, _ = tiny
    x = x[:2]
    t = torch.tensor(np.stack([pure(x.shape[-2:], s) for s in (5, 6)])).long()
    views = make_views("frame", k_attack=3, patch_size=16)
    loss = dag_loss if attack is dag else houdini_loss
    before = view_objective(model, views, loss, x, t, 123)
    res = attack(model, x, t, quantize=True, views=views, max_iter=40, seed=0)
    after = view_objective(model, views, loss, res.images, t, 123)
    assert (after < 0.5 * before).all(), (before, after)


@pytest.mark.parametrize("attack", ATTACKS)
def test_agreement_is_toward_the_frames_current_labels(attack):
    """On a per-pixel model every patch already agrees with the frame's labels, whatever the
    image: the agreement term is zero throughout and frame-agree gives the plain attack's
    images (were it toward the target instead, it would add to the step)."""
    model = prototype_segmenter()
    x = eight_bit((2, 3, 24, 40), seed=4)
    target = torch.full((2, 24, 40), 2, dtype=torch.long)
    kwargs = dict(max_iter=3, threshold=1.0, l2=0.06, quantize=True, seed=[3, 4])
    plain = attack(model, x, target, **kwargs)
    agree = attack(model, x, target, views=FrameAgreeViews(k=2, size=12), **kwargs)
    assert torch.equal(plain.images, agree.images)
    pushed = attack(model, x, target, views=FrameViews(k=2, size=12), **kwargs)
    assert not torch.equal(plain.images, pushed.images)


@pytest.mark.gpu
def test_runs_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    model = prototype_segmenter().cuda()
    x = eight_bit((2, 3, 32, 64), seed=5).cuda()
    target = torch.full((2, 32, 64), 3, dtype=torch.long, device="cuda")
    for attack, hyper in ((dag, {"gamma": 4 / 255}), (houdini, {"step": 8 / 255})):
        res = attack(model, x, target, quantize=True, max_iter=300, l2=0.3, **hyper)
        assert (res.success >= 0.99).all() and (res.l2 <= 0.3 + 1e-6).all()
        assert res.images.device.type == "cpu"
