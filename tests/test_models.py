"""Model registry: parameter counts, shapes, stems and init match the REST/Sagawa networks."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from trainables.errors import UserError
from trainables.models import MODELS, build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_names_and_uniform_signature():
    assert MODELS.names() == ["simple_cnn", "resnet18", "vgg16", "mlp"]
    for name in MODELS:
        model = MODELS.get(name).build(num_classes=3, width=8, stem="imagenet")
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)


def test_unknown_model_lists_allowed():
    with pytest.raises(UserError, match="simple_cnn, resnet18"):
        build_model("vgg", 10)


@pytest.mark.parametrize(("classes", "expected"), [(10, 11_181_642), (2, 11_177_538)])
def test_resnet18_parameter_counts(classes, expected):
    assert count(build_model("resnet18", classes)) == expected


def test_resnet18_matches_torchvision_layout():
    ours = dict(build_model("resnet18", 10).named_parameters())
    theirs = dict(torchvision.models.resnet18(num_classes=10).named_parameters())
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


def test_resnet18_stems():
    imagenet = build_model("resnet18", 10, width=8)
    cifar = build_model("resnet18", 10, width=8, stem="cifar")
    assert imagenet.conv1.kernel_size == (7, 7) and imagenet.conv1.stride == (2, 2)
    assert isinstance(imagenet.maxpool, nn.MaxPool2d)
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1)
    assert isinstance(cifar.maxpool, nn.Identity)
    x = torch.zeros(2, 3, 32, 32)
    seen = {}
    imagenet.layer1.register_forward_hook(lambda m, i, o: seen.__setitem__("imagenet", o.shape))
    cifar.layer1.register_forward_hook(lambda m, i, o: seen.__setitem__("cifar", o.shape))
    imagenet(x), cifar(x)
    assert seen == {"imagenet": (2, 8, 8, 8), "cifar": (2, 8, 32, 32)}


def test_resnet18_bad_stem():
    with pytest.raises(UserError, match="stem: 'tiny'.*imagenet, cifar"):
        build_model("resnet18", 10, stem="tiny")


def test_resnet18_init():
    torch.manual_seed(0)
    model = build_model("resnet18", 10)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.equal(module.weight, torch.ones_like(module.weight))
            assert torch.equal(module.bias, torch.zeros_like(module.bias))
    # kaiming fan_out: std = sqrt(2 / (out * kh * kw))
    weight = model.layer4[1].conv2.weight
    assert weight.std().item() == pytest.approx((2 / (512 * 9)) ** 0.5, rel=0.02)
    assert model.fc.bias is not None


def test_simple_cnn_layout():
    model = build_model("simple_cnn", 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 64), (64, 128), (128, 256)]
    assert all(
        c.kernel_size == (4, 4) and c.stride == (2, 2) and c.padding == (1, 1) for c in convs
    )
    assert all(c.bias is None for c in convs)
    assert model.fc.in_features == 256 and model.fc.bias is not None
    assert count(model) == 661_898  # 658,432 conv + 2,570 fc + 896 BN (rest_code.md section 4)
    assert model(torch.zeros(4, 3, 28, 28)).shape == (4, 10)


def test_simple_cnn_width_scales_channels():
    model = build_model("simple_cnn", 2, width=16)
    assert model.conv3.out_channels == 64 and model.fc.out_features == 2


def test_bad_sizes():
    with pytest.raises(UserError, match="width"):
        build_model("simple_cnn", 10, width=0)
    with pytest.raises(UserError, match="num_classes"):
        build_model("simple_cnn", 0)


LAYER_CASES = [
    (name, width, stem, size)
    for name in ("simple_cnn", "resnet18")
    for width in (8, 16, 64)
    for stem in ("imagenet", "cifar")
    for size in (28, 32, 128, 224)
]


@pytest.mark.parametrize(("name", "width", "stem", "size"), LAYER_CASES)
def test_analytic_layers_equal_the_real_model(name, width, stem, size):
    """The torch-free table: names, order, shapes and FLOPs of the hook counter, exactly."""
    from trainables.sparse.flops import layer_flops
    from trainables.sparse.masks import maskable_parameters

    classes = 2 if size == 224 else 10
    table = MODELS.get(name).layers(classes, width, stem, size)
    model = build_model(name, classes, width=width, stem=stem)
    params = maskable_parameters(model)
    assert list(table) == list(params)
    assert {n: layer.shape for n, layer in table.items()} == {
        n: tuple(p.shape) for n, p in params.items()
    }
    assert {n: layer.flops for n, layer in table.items()} == layer_flops(model, size)


def test_catalogue_facts():
    assert MODELS.get("simple_cnn").gpu_share == 0.25
    assert MODELS.get("resnet18").gpu_share == 0.25
    with pytest.raises(UserError, match="stem: 'tiny'.*imagenet, cifar"):
        MODELS.get("resnet18").layers(10, 64, "tiny", 32)


def test_catalogue_imports_no_torch():
    import subprocess
    import sys

    code = (
        "import sys; from trainables.models import MODELS; import trainables.flops; "
        "import trainables.sparse.densities; "
        "assert 'simple_cnn' in MODELS; MODELS.get('resnet18').layers(10, 64, 'imagenet', 32); "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
