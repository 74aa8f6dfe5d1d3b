"""SparseEngine: exact counts, masks hold through training, updates keep counts, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainables.errors import UserError
from trainables.models import build_model
from trainables.sparse import SparseEngine, layer_counts, layer_densities, maskable_parameters

pytestmark = pytest.mark.usefixtures("one_thread")


SETTINGS = dict(
    density=0.1,
    sparse_init="erk",
    growth="gradient",
    drop_fraction=0.3,
    drop_schedule="rigl",
    drop_end=0.75,
    update_frequency=4,
    total_steps=60,
    reset_momentum=True,
    mask_updates=True,
)


def make_engine(model, optimizer=None, **overrides):
    settings = {**SETTINGS, **overrides}
    generator = torch.Generator().manual_seed(settings.pop("seed", 0))
    return SparseEngine(model, optimizer, generator=generator, **settings)


def check_masks_hold(model, engine, counts):
    params = maskable_parameters(model)
    for name, mask in engine.masks().items():
        assert mask.dtype == torch.bool
        assert int(mask.sum()) == counts[name], name
        assert not params[name].detach()[~mask].any(), name


def test_maskable_parameters_order_and_exclusions():
    model = build_model("resnet18", 10, width=8)
    names = list(maskable_parameters(model))
    assert names[0] == "conv1.weight" and names[-1] == "fc.weight" and len(names) == 21
    assert "layer2.0.downsample.0.weight" in names
    assert not any("bias" in n or "bn" in n for n in names)
    first = list(maskable_parameters(model, dense_first_layer=True))
    last = list(maskable_parameters(model, dense_last_layer=True))
    assert first == names[1:] and last == names[:-1]


def test_init_exact_counts_and_applied():
    model = build_model("resnet18", 10, width=16)
    engine = make_engine(model, density=0.05)
    params = maskable_parameters(model)
    shapes = {n: tuple(p.shape) for n, p in params.items()}
    counts = layer_counts(shapes, layer_densities(shapes, 0.05, "erk"))
    check_masks_hold(model, engine, counts)
    assert engine.nonzeros() == sum(counts.values())
    total = sum(p.numel() for p in params.values())
    assert engine.density() == pytest.approx(sum(counts.values()) / total)
    assert abs(engine.density() - 0.05) < len(shapes) / total
    assert (
        engine.layer_densities()["conv1.weight"]
        == counts["conv1.weight"] / params["conv1.weight"].numel()
    )


def test_init_is_seeded():
    a = make_engine(build_model("simple_cnn", 10, width=8), seed=3).masks()
    b = make_engine(build_model("simple_cnn", 10, width=8), seed=3).masks()
    c = make_engine(build_model("simple_cnn", 10, width=8), seed=4).masks()
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not all(torch.equal(a[n], c[n]) for n in a)


def train(model, engine, optimizer, steps, counts):
    torch.manual_seed(1)
    x, y = torch.randn(8, 3, 28, 28), torch.randint(0, 10, (8,))
    updates = 0
    for step in range(1, steps + 1):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        updates += engine.step(step)
        check_masks_hold(model, engine, counts)
    return updates


@pytest.mark.parametrize("optimizer_name", ["adam", "sgd"])
@pytest.mark.parametrize("growth", ["gradient", "random", "momentum"])
def test_masks_hold_through_training(optimizer_name, growth):
    model = build_model("simple_cnn", 10, width=8)
    if optimizer_name == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    engine = make_engine(model, growth=growth)
    engine.bind_optimizer(optimizer)
    counts = dict(engine._counts)
    before = {n: m.clone() for n, m in engine.masks().items()}
    updates = train(model, engine, optimizer, steps=60, counts=counts)
    # rigl schedule: updates at steps 4, 8, ..., 44 (T_end = 45)
    assert updates == engine.updates == 11
    assert any(not torch.equal(before[n], m) for n, m in engine.masks().items())


def test_rest_schedule_updates_until_the_end():
    model = build_model("simple_cnn", 10, width=8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    engine = make_engine(
        model, optimizer, drop_schedule="rest", drop_fraction=0.5, reset_momentum=False
    )
    assert train(model, engine, optimizer, steps=60, counts=dict(engine._counts)) == 15


def test_static_never_updates():
    model = build_model("simple_cnn", 10, width=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    engine = make_engine(model, optimizer, mask_updates=False)
    before = {n: m.clone() for n, m in engine.masks().items()}
    assert train(model, engine, optimizer, steps=12, counts=dict(engine._counts)) == 0
    assert all(torch.equal(before[n], m) for n, m in engine.masks().items())


def test_float_masks_follow_channels_last():
    model = build_model("simple_cnn", 10, width=8)
    engine = make_engine(model)
    model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    engine.bind_optimizer(optimizer)
    for weight, mask in zip(engine._weights, engine._float_masks, strict=True):
        assert mask.stride() == weight.stride() and mask.dtype == weight.dtype
    train(model, engine, optimizer, steps=8, counts=dict(engine._counts))


def test_state_dict_round_trip():
    model = build_model("simple_cnn", 10, width=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    engine = make_engine(model, optimizer, growth="random")
    train(model, engine, optimizer, steps=8, counts=dict(engine._counts))
    state = engine.state_dict()
    fresh_model = build_model("simple_cnn", 10, width=8)
    fresh = make_engine(fresh_model, seed=99)
    fresh.load_state_dict(state)
    assert fresh.updates == engine.updates == 2
    assert all(torch.equal(fresh.masks()[n], m) for n, m in engine.masks().items())
    assert torch.equal(fresh._generator.get_state(), engine._generator.get_state())
    check_masks_hold(fresh_model, fresh, dict(engine._counts))


def test_dense_first_last_layers_stay_dense():
    model = build_model("simple_cnn", 10, width=8)
    engine = make_engine(model, density=0.05, dense_first_layer=True, dense_last_layer=True)
    assert list(engine.masks()) == ["conv2.weight", "conv3.weight"]
    assert model.conv1.weight.detach().ne(0).all() and model.fc.weight.detach().ne(0).all()
    numel = model.conv2.weight.numel() + model.conv3.weight.numel()
    assert engine.nonzeros() == pytest.approx(0.05 * numel, abs=2)


def test_bad_growth_and_missing_optimizer():
    with pytest.raises(UserError, match="growth: 'magic'.*gradient, random, momentum"):
        make_engine(build_model("simple_cnn", 10, width=8), growth="magic")
    model = build_model("simple_cnn", 10, width=8)
    engine = make_engine(model, update_frequency=1)
    with pytest.raises(RuntimeError, match="bind_optimizer"):
        engine.step(1)


def test_mask_step_uses_one_foreach_call(monkeypatch):
    model = build_model("resnet18", 10, width=8)
    engine = make_engine(model, mask_updates=False)
    calls = []
    real = torch._foreach_mul_
    monkeypatch.setattr(torch, "_foreach_mul_", lambda *a: calls.append(len(a[0])) or real(*a))
    assert engine.step(1) is False
    assert calls == [21]
    assert math.isclose(
        engine.density(), engine.nonzeros() / sum(m.numel() for m in engine.masks().values())
    )
