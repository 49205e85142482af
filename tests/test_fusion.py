"""Folding BatchNorm into convolutions (the same function, the same input gradient, no BN
left) and the class labels of logits."""

import pytest
import torch
from torch import nn

from edge_guard.calibration.models import build_segmenter
from edge_guard.calibration.models.fusion import count_batchnorms, fuse_batchnorm, fuse_segmenter


def randomise_batchnorms(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and affine terms, so that a wrong fold shows."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.data.copy_(0.6 * torch.rand(n, generator=g) - 0.3)


@pytest.fixture(scope="module", params=["edge_small", "drn_d_22", "dla34"])
def pair(request):
    torch.manual_seed(0)
    seg = build_segmenter(request.param)
    randomise_batchnorms(seg)
    seg.set_logit_bias([0.1 * i for i in range(seg.num_classes)])
    # Float64: in float32, rounding that differs with the thread count can flip a max-pool
    # near-tie (DLA-34 downsamples by max-pooling) and route a gradient elsewhere (1.6%
    # relative on one thread), which says nothing about the fold.
    seg.eval().double()
    return seg, fuse_segmenter(seg)


def test_fused_segmenter_computes_the_same_logits_and_input_gradient(pair):
    seg, fused = pair
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = []
    for model in (seg, fused):
        xx = x.clone().requires_grad_(True)
        logits = model(xx)
        # A loss that weighs classes differently, like an attack's target loss.
        (logits[:, 3] - logits[:, 7]).square().mean().backward()
        grads.append((logits.detach(), xx.grad))
    (a, ga), (b, gb) = grads
    assert torch.allclose(a, b, rtol=0, atol=1e-4 * a.abs().max().item())
    assert torch.allclose(ga, gb, rtol=0, atol=1e-4 * ga.abs().max().item())
    assert (a.argmax(1) == b.argmax(1)).float().mean() > 0.999


def test_every_batchnorm_is_folded_and_the_original_is_untouched(pair):
    seg, fused = pair
    assert count_batchnorms(fused) == 0
    assert count_batchnorms(seg) > 0
    assert not fused.training
    assert not any(p.requires_grad for p in fused.parameters())
    assert any(p.requires_grad for p in seg.parameters())
    assert (fused.name, fused.num_classes, fused.mean, fused.std, fused.logit_bias, fused.class_names) == \
        (seg.name, seg.num_classes, seg.mean, seg.std, seg.logit_bias, seg.class_names)


def test_a_module_that_cannot_be_traced_is_fused_child_by_child():
    class Padded(nn.Module):
        """Control flow on a tensor's shape, as DLA's forward has: fx cannot trace it."""

        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
            self.head = nn.BatchNorm2d(4)  # follows no convolution here: stays

        def forward(self, x):
            if x.shape[-1] % 2:
                x = nn.functional.pad(x, (0, 1))
            return self.head(self.body(x))

    torch.manual_seed(0)
    model = Padded()
    randomise_batchnorms(model)
    model.train()
    fused = fuse_batchnorm(model)
    assert model.training and count_batchnorms(model) == 2
    assert count_batchnorms(fused) == 1
    x = torch.rand(1, 3, 9, 11)
    assert torch.allclose(model.eval()(x), fused(x), atol=1e-5)


def test_labels_of_is_argmax_over_classes_with_the_first_maximum_on_ties():
    from edge_guard.calibration.models import labels_of

    logits = torch.tensor([[[[0.0, 2.0]], [[1.0, 2.0]], [[1.0, -1.0]]]])  # (1, 3, 1, 2)
    assert labels_of(logits).tolist() == [[[1, 0]]]
    y = torch.randn(2, 19, 33, 17, generator=torch.Generator().manual_seed(0))
    y[0, 5] = y[0, 3]  # exact ties between two classes everywhere in one image
    assert torch.equal(labels_of(y), y.argmax(1))
    assert labels_of(y).dtype == torch.int64
