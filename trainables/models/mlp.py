"""LeNet-300-100 (OpenLTH/SDD ``mnist_mlp_300_100``): 784 -> 300 -> 100 -> classes, ReLU.

Our splits are RGB (gray sources such as Fashion-MNIST are stored as three equal channels), so
the network first averages the channels (exact for those gray images) and, for inputs that are
not 28 px, average-pools to 28x28 (identity at 28). The three linear layers are then the seed's
network weight for weight: 266,610 parameters at 10 classes, whatever the input size. On colour
data (``cmnist``) the channel mean discards the colour. ``width`` is ignored (the hidden sizes
are the seed's), as is ``stem``; PyTorch's default init (the seed's ``kaiming_normal`` is the
config's ``init=openlth``, ``trainables.models.init``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

MLP_INPUT = 28  # side of the gray image the first layer reads (784 inputs)
MLP_HIDDEN: tuple[int, ...] = (300, 100)


class LeNet300100(nn.Module):
    """``fc1`` (784 -> 300), ``fc2`` (300 -> 100), ``fc`` (100 -> classes)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(MLP_INPUT * MLP_INPUT, MLP_HIDDEN[0])
        self.fc2 = nn.Linear(MLP_HIDDEN[0], MLP_HIDDEN[1])
        self.fc = nn.Linear(MLP_HIDDEN[1], num_classes)

    def features(self, x: Tensor) -> Tensor:
        """The 100 penultimate activations."""
        x = x.mean(dim=1, keepdim=True)
        if x.shape[-2:] != (MLP_INPUT, MLP_INPUT):
            x = F.adaptive_avg_pool2d(x, MLP_INPUT)
        x = F.relu(self.fc1(x.flatten(1)))
        return F.relu(self.fc2(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


def mlp(num_classes: int, width: int = 64, stem: str = "imagenet") -> nn.Module:
    """Registry entry; ``width`` and ``stem`` are accepted for a uniform signature and ignored."""
    del width, stem
    return LeNet300100(num_classes=num_classes)
