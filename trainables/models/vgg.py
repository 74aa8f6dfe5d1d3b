"""OpenLTH's ``cifar_vgg_16``: VGG-16 for CIFAR with BatchNorm, global average pool, one linear.

Thirteen 3x3 convs (pad 1) with BN and ReLU, 2x2 max-pools after convs 2, 4, 7 and 10, then an
average pool and ``fc`` on the last 512 channels. Differences from OpenLTH, all cost-neutral or
documented in docs/methods.md: convs have no bias (the BN after each makes it redundant),
the final pool is adaptive (OpenLTH's ``AvgPool2d(2)`` is the same at 32 px and also works at
28 px), channels scale with ``width / 64`` (64 = the standard network), and init is PyTorch's
default (OpenLTH/SDD re-initialise with ``kaiming_normal`` and ``U(0, 1)`` BN weights: the
config's ``init=openlth``, ``trainables.models.init``).
"""

from __future__ import annotations

from torch import Tensor, nn

from trainables.models.catalog import VGG16_PLAN  # channels / 64 per conv, "M" = max-pool


class CifarVGG(nn.Module):
    """VGG with BN; parameters ``conv{i}.weight`` (i = 1..13) and ``fc.weight``."""

    def __init__(self, num_classes: int, width: int = 64) -> None:
        super().__init__()
        in_channels, index = 3, 0
        for item in VGG16_PLAN:
            if item == "M":
                continue
            index += 1
            out = width * int(item)
            self.add_module(f"conv{index}", nn.Conv2d(in_channels, out, 3, padding=1, bias=False))
            self.add_module(f"bn{index}", nn.BatchNorm2d(out))
            in_channels = out
        self.pool = nn.MaxPool2d(2)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features (after the average pool, before ``fc``)."""
        index = 0
        for item in VGG16_PLAN:
            if item == "M":
                x = self.pool(x)
                continue
            index += 1
            x = self.relu(getattr(self, f"bn{index}")(getattr(self, f"conv{index}")(x)))
        return self.avgpool(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


def vgg16(num_classes: int, width: int = 64, stem: str = "imagenet") -> nn.Module:
    """Registry entry; ``stem`` is accepted for a uniform signature and ignored."""
    del stem
    return CifarVGG(num_classes=num_classes, width=width)
