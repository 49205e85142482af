"""Weight initialisation shared by the DRN and DLA models."""

from torch import nn


def he_fan_out_init(modules) -> None:
    """The official DRN/DLA initialisation: He-normal convs (fan-out), identity BatchNorm.

    Transposed convolutions are not nn.Conv2d, so the fixed bilinear up-samplers keep their weights.
    """
    for m in modules:
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0, (2.0 / fan_out) ** 0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
