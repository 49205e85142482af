"""Small PyTorch segmenters for the attack tests: an analytic nearest-colour one and a tiny
net trained on blob frames (shared by test_attacks and test_adaptive_attacks)."""

import itertools

import numpy as np
import torch
from torch import nn

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
