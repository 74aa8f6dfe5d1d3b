"""The REST/LfF CMNIST CNN (``simple_model.py: CNN``): three 4x4/2 convs, GAP, linear head."""

from __future__ import annotations

from torch import Tensor, nn


class SimpleCNN(nn.Module):
    """conv(k4, s2, p1, no bias) -> BN -> ReLU, three times, then GAP and a linear classifier.

    Channels are ``width, 2*width, 4*width`` (64/128/256 in the paper); PyTorch default init,
    as in REST, so a seed reproduces the same network family the paper trained.
    """

    def __init__(self, num_classes: int, width: int = 64) -> None:
        super().__init__()
        c1, c2, c3 = width, 2 * width, 4 * width
        self.conv1 = nn.Conv2d(3, c1, kernel_size=4, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=4, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        self.conv3 = nn.Conv2d(c2, c3, kernel_size=4, stride=2, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(c3)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c3, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.relu(self.bn3(self.conv3(x)))
        return self.fc(self.avgpool(x).flatten(1))

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features (after GAP, before ``fc``): what two-encoder methods concatenate."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.relu(self.bn3(self.conv3(x)))
        return self.avgpool(x).flatten(1)


def simple_cnn(num_classes: int, width: int = 64, stem: str = "imagenet") -> nn.Module:
    """Registry entry; ``stem`` is accepted for a uniform signature and ignored."""
    del stem
    return SimpleCNN(num_classes=num_classes, width=width)
