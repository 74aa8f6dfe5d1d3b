"""Layer densities (uniform / ER / ERK) against an independent computation, and exact counts."""

from __future__ import annotations

import math
from functools import cache

import pytest

from trainables.errors import UserError
from trainables.models import build_model
from trainables.sparse import layer_counts, layer_densities, maskable_parameters

pytestmark = pytest.mark.usefixtures("one_thread")


@cache
def shapes_of(name: str, classes: int = 10) -> dict[str, tuple[int, ...]]:
    model = build_model(name, classes)
    return {n: tuple(p.shape) for n, p in maskable_parameters(model).items()}


def expected_erk(shapes, density, kernel=True):
    """Independent: bisection on eps for sum_l min(1, eps * raw_l) * N_l = density * sum N_l.

    The budget is increasing in eps, so the root is unique and equals the RigL solver's result.
    """
    numel = {n: math.prod(s) for n, s in shapes.items()}
    dims = {n: (s if kernel else s[:2]) for n, s in shapes.items()}
    raw = {n: sum(d) / math.prod(d) for n, d in dims.items()}
    target = density * sum(numel.values())

    def used(eps):
        return sum(min(1.0, eps * raw[n]) * numel[n] for n in shapes)

    low, high = 0.0, 1.0
    while used(high) < target:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if used(mid) < target else (low, mid)
    eps = (low + high) / 2
    return {n: min(1.0, eps * raw[n]) for n in shapes}


DENSITIES = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.2, 0.5, 0.9)


@pytest.mark.parametrize("model", ["simple_cnn", "resnet18"])
@pytest.mark.parametrize("density", DENSITIES)
@pytest.mark.parametrize("rule", ["erk", "er"])
def test_er_erk_match_independent_solver(model, density, rule):
    shapes = shapes_of(model)
    got = layer_densities(shapes, density, rule)
    want = expected_erk(shapes, density, kernel=rule == "erk")
    assert got.keys() == want.keys()
    for name in shapes:
        assert got[name] == pytest.approx(want[name], rel=1e-9, abs=1e-12), name
    budget = sum(got[n] * math.prod(s) for n, s in shapes.items())
    assert budget == pytest.approx(density * sum(math.prod(s) for s in shapes.values()), rel=1e-9)


def test_cnn_saturation_table():
    """rest_code.md section 3: CNN conv1 and fc are dense from 0.05 on."""
    shapes = shapes_of("simple_cnn")
    at_005 = layer_densities(shapes, 0.05, "erk")
    assert at_005["conv1.weight"] == 1.0 and at_005["fc.weight"] == 1.0
    assert at_005["conv2.weight"] == pytest.approx(0.071, abs=5e-4)
    assert at_005["conv3.weight"] == pytest.approx(0.035, abs=5e-4)
    at_001 = layer_densities(shapes, 0.01, "erk")
    assert at_001["conv1.weight"] == pytest.approx(0.173, abs=5e-4)
    assert at_001["fc.weight"] == pytest.approx(0.736, abs=5e-4)
    low = layer_densities(shapes, 0.0005, "erk")
    assert low["conv1.weight"] == pytest.approx(0.0086, abs=5e-5)
    assert low["fc.weight"] == pytest.approx(0.037, abs=5e-4)


def test_resnet_saturation_table():
    shapes = shapes_of("resnet18")
    at_001 = layer_densities(shapes, 0.001, "erk")
    assert at_001["conv1.weight"] == pytest.approx(0.010, abs=5e-4)
    assert at_001["layer1.0.conv1.weight"] == pytest.approx(0.0044, abs=5e-5)
    assert at_001["layer4.1.conv2.weight"] == pytest.approx(0.0005, abs=5e-5)
    assert at_001["fc.weight"] == pytest.approx(0.12, abs=5e-3)
    assert layer_densities(shapes, 0.01, "erk")["fc.weight"] == 1.0
    assert layer_densities(shapes, 0.1, "erk")["conv1.weight"] == 1.0
    half = layer_densities(shapes, 0.5, "erk")
    assert all(half[n] == 1.0 for n in shapes if n.startswith(("layer1", "layer2")))
    two = layer_densities(shapes_of("resnet18", 2), 0.001, "erk")
    assert two["fc.weight"] == pytest.approx(0.60, abs=5e-3)


def test_uniform_and_dense():
    shapes = shapes_of("simple_cnn")
    assert set(layer_densities(shapes, 0.3, "uniform").values()) == {0.3}
    assert set(layer_densities(shapes, 1.0, "erk").values()) == {1.0}


def test_bad_rule_and_density():
    shapes = shapes_of("simple_cnn")
    with pytest.raises(UserError, match="sparse_init: 'snip'.*uniform, er, erk"):
        layer_densities(shapes, 0.1, "snip")
    with pytest.raises(UserError, match="density"):
        layer_densities(shapes, 0.0, "erk")


@pytest.mark.parametrize("density", [0.0005, 0.05, 0.5])
def test_exact_counts(density):
    shapes = shapes_of("resnet18")
    densities = layer_densities(shapes, density, "erk")
    counts = layer_counts(shapes, densities)
    for name, shape in shapes.items():
        numel = math.prod(shape)
        assert counts[name] == max(1, round(densities[name] * numel))
    total = sum(math.prod(s) for s in shapes.values())
    assert abs(sum(counts.values()) - density * total) <= len(shapes)
