"""Sagawa/REST ``VariableWidthResNet`` (BasicBlock, [2, 2, 2, 2]) with a choice of stem.

Module and parameter names follow torchvision (``conv1``, ``layer1.0.conv1``,
``layer2.0.downsample.0``, ``fc``), so with ``width=64`` and the ImageNet stem the network is
torchvision's ResNet-18 parameter for parameter. REST uses the ImageNet stem (7x7/2 conv and a
3x3/2 max-pool) on every input size, even 32x32; ``stem="cifar"`` is the usual 3x3/1 stem
without max-pool, offered as an ablation.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from trainables.errors import UserError


class BasicBlock(nn.Module):
    """3x3 conv -> BN -> ReLU -> 3x3 conv -> BN, plus identity or 1x1-conv shortcut, ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


def _imagenet_stem(width: int) -> tuple[nn.Conv2d, nn.Module]:
    return nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False), nn.MaxPool2d(3, 2, padding=1)


def _cifar_stem(width: int) -> tuple[nn.Conv2d, nn.Module]:
    return nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False), nn.Identity()


# stem name -> (first conv, pooling after BN+ReLU)
STEMS: dict[str, Callable[[int], tuple[nn.Conv2d, nn.Module]]] = {
    "imagenet": _imagenet_stem,
    "cifar": _cifar_stem,
}


class VariableWidthResNet(nn.Module):
    """ResNet with stage widths ``w, 2w, 4w, 8w``; the REST code's ``resnet18vw``."""

    def __init__(
        self, layers: tuple[int, ...], num_classes: int, width: int = 64, stem: str = "imagenet"
    ) -> None:
        super().__init__()
        if stem not in STEMS:
            raise UserError(f"stem: {stem!r} is not allowed; allowed: {', '.join(STEMS)}")
        self.conv1, self.maxpool = STEMS[stem](width)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        in_planes = width
        stages = []
        for index, blocks in enumerate(layers):
            planes = width * 2**index
            stride = 1 if index == 0 else 2
            stage = []
            for block in range(blocks):
                stage.append(BasicBlock(in_planes, planes, stride if block == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # Sagawa/REST init: kaiming fan_out for convs, BN at identity, default Linear init.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features (after GAP, before ``fc``): what two-encoder methods concatenate."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


def resnet18(num_classes: int, width: int = 64, stem: str = "imagenet") -> nn.Module:
    """REST's ``resnet18vw``: BasicBlock [2, 2, 2, 2]."""
    return VariableWidthResNet((2, 2, 2, 2), num_classes=num_classes, width=width, stem=stem)
