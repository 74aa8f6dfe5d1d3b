"""The pruning family's networks: VGG-16 (CIFAR, BN), LeNet-300-100 and the CIFAR-stem ResNet-18.

Each analytic layer table (torch-free catalogue) must equal the real model's maskable weights,
their shapes and the hook counter's FLOPs, as for the original models.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from trainables.models import MODELS, build_model
from trainables.sparse import layer_flops, maskable_parameters

pytestmark = pytest.mark.usefixtures("one_thread")


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["vgg16", "mlp", "resnet18"])
@pytest.mark.parametrize(("size", "classes", "width"), [(28, 10, 64), (32, 10, 64), (32, 100, 16)])
def test_layer_table_matches_the_real_model(name, size, classes, width):
    model = build_model(name, classes, width=width, stem="cifar")
    table = MODELS.get(name).layers(classes, width, "cifar", size)
    weights = maskable_parameters(model)
    assert list(table) == list(weights)
    assert {k: v.shape for k, v in table.items()} == {k: tuple(w.shape) for k, w in weights.items()}
    assert {k: v.flops for k, v in table.items()} == layer_flops(model, size)
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        assert model(torch.zeros(1, 3, size, size)).shape == (1, classes)
    assert sum(v.flops for v in table.values()) == counter.get_total_flops()


def test_vgg16_is_openlth_cifar_vgg_16():
    model = build_model("vgg16", 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13 and all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256] + [512] * 6
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 13
    assert [n for n, m in model.named_modules() if isinstance(m, nn.Linear)] == ["fc"]
    assert model.fc.in_features == 512
    # OpenLTH's 14,728,266 less the 4,224 conv biases the BN after each conv makes redundant
    assert count(model) == 14_728_266 - 4_224
    assert model.features(torch.zeros(2, 3, 32, 32)).shape == (2, 512)


def test_mlp_is_lenet_300_100():
    model = build_model("mlp", 10, width=8)  # width is ignored
    assert [
        (m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)
    ] == [
        (784, 300),
        (300, 100),
        (100, 10),
    ]
    assert count(model) == 266_610
    gray = torch.rand(2, 1, 28, 28)
    # three equal channels (how gray data is stored) read exactly as the one gray channel
    rgb = gray.repeat(1, 3, 1, 1)
    flat = torch.relu(model.fc2(torch.relu(model.fc1(gray.flatten(1)))))
    assert torch.allclose(model.features(rgb), flat, atol=1e-6)


def test_cifar_resnet18_is_the_seeds_cifar_pytorch_resnet_18():
    """torchvision's ResNet-18 with a 3x3/1 stem and no max-pool, width 64: weight shapes equal
    except conv1 (3x3 instead of 7x7); 11,173,962 parameters at 10 classes."""
    ours = build_model("resnet18", 10, stem="cifar")
    theirs = torchvision.models.resnet18(num_classes=10)
    theirs.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    theirs.maxpool = nn.Identity()
    shapes = {k: v.shape for k, v in ours.named_parameters()}
    assert shapes == {k: v.shape for k, v in theirs.named_parameters()}
    assert count(ours) == 11_173_962
    x = torch.zeros(1, 3, 32, 32)
    assert dict(ours.named_modules())["layer1"](ours.relu(ours.bn1(ours.conv1(x)))).shape == (
        1,
        64,
        32,
        32,
    )


def test_gpu_share_of_new_models():
    for name in ("vgg16", "mlp"):
        assert 0 < MODELS.get(name).gpu_share <= 1
