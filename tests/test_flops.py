"""FLOPs: per-layer hooks agree with torch's FlopCounterMode; ResNet-18 anchors; sparse totals."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from trainables.models import build_model
from trainables.sparse import (
    layer_densities,
    layer_flops,
    maskable_parameters,
    sparse_forward_flops,
    training_step_flops,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def counted(model, size):
    """FlopCounterMode total of one batch-1 pass (conv and mm/addmm only in these models)."""
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops()


CASES = [
    (name, stem, size, classes)
    for size, classes in ((28, 10), (32, 10), (128, 2))
    for name, stem in (("simple_cnn", "imagenet"), ("resnet18", "imagenet"), ("resnet18", "cifar"))
]


@pytest.mark.parametrize(("name", "stem", "size", "classes"), CASES)
def test_dense_flops_match_flop_counter(name, stem, size, classes):
    model = build_model(name, classes, stem=stem)
    flops = layer_flops(model, size)
    assert list(flops) == list(maskable_parameters(model))
    assert sum(flops.values()) == counted(model, size)


def test_known_values():
    cnn = layer_flops(build_model("simple_cnn", 10), 28)
    # conv1: 2 * 64*3*4*4 weights * 14*14 positions
    assert cnn["conv1.weight"] == 2 * 3072 * 14 * 14
    assert cnn["fc.weight"] == 2 * 2560
    assert sum(cnn.values()) == pytest.approx(2.35e7, rel=0.005)
    assert sum(layer_flops(build_model("resnet18", 10), 32).values()) == pytest.approx(
        7.40e7, rel=0.005
    )
    assert sum(layer_flops(build_model("resnet18", 2), 128).values()) == pytest.approx(
        1.18e9, rel=0.005
    )
    cifar = layer_flops(build_model("resnet18", 10, stem="cifar"), 32)
    assert sum(cifar.values()) == pytest.approx(1.11e9, rel=0.005)


def test_torchvision_resnet18_at_224():
    flops = layer_flops(torchvision.models.resnet18(num_classes=1000), 224)
    assert sum(flops.values()) == pytest.approx(3.64e9, rel=0.005)  # 1.82 GMAC


def test_mode_restored_and_no_bn_update():
    model = build_model("resnet18", 10, width=8)
    model.train()
    before = model.bn1.running_mean.clone()
    layer_flops(model, 32)
    assert model.training and torch.equal(model.bn1.running_mean, before)


def test_sparse_forward_flops_and_ratio():
    model = build_model("simple_cnn", 10)
    flops = layer_flops(model, 28)
    shapes = {n: tuple(p.shape) for n, p in maskable_parameters(model).items()}
    densities = layer_densities(shapes, 0.05, "erk")
    sparse = sparse_forward_flops(flops, densities)
    assert sparse == pytest.approx(sum(densities[n] * f for n, f in flops.items()))
    assert sparse / sum(flops.values()) == pytest.approx(0.104, abs=5e-4)  # algorithms.md 2.3
    # layers missing from densities (kept dense) count in full
    partial = {n: d for n, d in densities.items() if n != "fc.weight"}
    assert sparse_forward_flops(flops, partial) == pytest.approx(sparse)
    partial["conv1.weight"] = 0.5
    assert sparse_forward_flops(flops, partial) == pytest.approx(
        sparse - 0.5 * flops["conv1.weight"]
    )


def test_training_step_flops():
    assert training_step_flops(1.0, 10.0, dense_gradient=False) == 3.0
    assert training_step_flops(1.0, 10.0, dense_gradient=True) == 12.0
    assert training_step_flops(10.0, 10.0, dense_gradient=False) == 30.0


def test_accounting_module_matches_the_real_model():
    """trainables.flops (torch-free, analytic) against the hook count of the real model."""
    from trainables import flops as accounting

    model = build_model("resnet18", 2)
    hooked = layer_flops(model, 224)
    assert accounting.dense_layer_flops("resnet18", 2, 64, "imagenet", 224) == hooked
    shapes = {n: tuple(p.shape) for n, p in maskable_parameters(model, False, True).items()}
    densities = layer_densities(shapes, 0.1, "erk")
    sparse, dense = accounting.forward_flops(
        "resnet18", 2, 64, "imagenet", 224, 0.1, "erk", dense_last_layer=True
    )
    assert dense == pytest.approx(sum(hooked.values()))
    assert sparse == pytest.approx(sparse_forward_flops(hooked, densities))
    assert accounting.forward_flops("simple_cnn", 10, 64, "imagenet", 28) == (
        pytest.approx(2.35e7, rel=0.005),
        pytest.approx(2.35e7, rel=0.005),
    )
    assert accounting.dense_train_flops(2.0, 100, 3) == 3 * 2.0 * 100 * 3
    assert accounting.training_step_flops is training_step_flops
