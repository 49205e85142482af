"""Adaptive attacks (views of the scale, pairs and frame detectors): geometry, objectives, 8-bit output."""

import numpy as np
import pytest
import torch
from attack_models import eight_bit, prototype_segmenter, train_tiny

from edge_guard.calibration.attacks import (
    BlurViews, FrameAgreeViews, FrameViews, PairViews, PatchViews, dag, dag_loss, gaussian_blur, houdini, houdini_loss,
    make_views)
from edge_guard.calibration.attacks.result import success_rate
from edge_guard.calibration.targets import pure

torch.set_num_threads(1)  # tiny tensors: more threads only contend with the other jobs
ATTACKS = [pytest.param(dag, id="dag"), pytest.param(houdini, id="houdini")]


@pytest.fixture(scope="module")
def tiny():
    return train_tiny()


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
