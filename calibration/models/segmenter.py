"""A raw segmentation network plus the input normalisation it was trained with."""

from typing import Optional, Sequence

import torch
from torch import nn

from edge_guard.classes import NAMES

# Mean / std of Cityscapes RGB in [0, 1], from the DRN repository
# (datasets/cityscapes/info.json); the official DRN and DLA checkpoints expect them.
CITYSCAPES_MEAN = (0.29010095242892997, 0.32808144844279574, 0.28696394422942517)
CITYSCAPES_STD = (0.1829540508368939, 0.18656561047509476, 0.18447508988480435)


def default_class_names(num_classes: int) -> tuple:
    """Cityscapes train-id names for 19 classes, else ``class0, class1, ...``."""
    return tuple(NAMES) if num_classes == len(NAMES) else tuple(f"class{i}" for i in range(num_classes))


class Segmenter(nn.Module):
    """RGB float (N, 3, H, W) in [0, 1] -> logits (N, C, H, W) of ``net``.

    Attacks and detectors work in [0, 1] image space; normalisation happens only here.
    """

    def __init__(self, net: nn.Module, name: str, num_classes: int,
                 mean: Sequence[float] = CITYSCAPES_MEAN, std: Sequence[float] = CITYSCAPES_STD,
                 model_kwargs: Optional[dict] = None, class_names: Optional[Sequence[str]] = None):
        super().__init__()
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got {mean} and {std}")
        if min(std) <= 0:
            raise ValueError(f"std must be positive, got {std}")
        self.net = net
        self.name = name
        self.num_classes = int(num_classes)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.model_kwargs = dict(model_kwargs or {})
        self.class_names = tuple(class_names) if class_names else default_class_names(self.num_classes)
        # Non-persistent: the net's state_dict stays the official layout and the
        # checkpoint stores mean/std as plain lists.
        self.register_buffer("mean_t", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std_t", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean_t) / self.std_t)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_classes={self.num_classes}, mean={self.mean}, std={self.std}"


def build_segmenter(name: str, num_classes: int = 19, mean: Sequence[float] = CITYSCAPES_MEAN,
                    std: Sequence[float] = CITYSCAPES_STD, class_names=None, **model_kwargs) -> Segmenter:
    """Create the registered network ``name`` and wrap it with normalisation."""
    from .registry import create_model

    net = create_model(name, num_classes=num_classes, **model_kwargs)
    return Segmenter(net, name, num_classes, mean, std, model_kwargs, class_names)
