"""Prune-and-grow on a hand-made layer: exact indices dropped and grown, values, optimizer state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainables.sparse import SparseEngine

# One Linear(4 -> 2) layer, 8 weights, 4 active; flat index = row * 4 + column.
MASK = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0], dtype=torch.bool)
WEIGHT = torch.tensor(
    [0.5, -0.1, 0.3, 0.05, 0.2, 0.8, -0.4, 0.6]
)  # inactive ones != 0 (dense step)
GRAD = torch.tensor([0.0, 0.9, 0.0, 0.2, 0.1, 0.7, 0.3, 0.05])


def engine_with(
    growth="gradient", reset_momentum=True, optimizer_name="sgd", mask=MASK, update_frequency=1
):
    model = nn.Sequential(nn.Linear(4, 2, bias=False))
    engine = SparseEngine(
        model,
        None,
        density=0.5,
        sparse_init="uniform",
        growth=growth,
        drop_fraction=0.5,
        drop_schedule="constant",
        drop_end=1.0,
        update_frequency=update_frequency,
        total_steps=10,
        reset_momentum=reset_momentum,
        mask_updates=True,
        generator=torch.Generator().manual_seed(0),
    )
    state = engine.state_dict()
    state["masks"] = {"0.weight": mask.view(2, 4).clone()}
    engine.load_state_dict(state)
    weight = model[0].weight
    if optimizer_name == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    weight.grad = torch.ones_like(weight)
    optimizer.step()  # creates the optimizer state
    for value in optimizer.state[weight].values():
        if value.shape == weight.shape:
            value.fill_(1.0)
    engine.bind_optimizer(optimizer)
    with torch.no_grad():
        weight.copy_(WEIGHT.view(2, 4))
    weight.grad = GRAD.view(2, 4).clone()
    return engine, weight, optimizer


def flat_mask(engine):
    return engine.masks()["0.weight"].reshape(-1)


def test_gradient_growth_exact_indices():
    engine, weight, _ = engine_with()
    assert engine.step(1) is True  # k = floor(0.5 * 4) = 2
    # drop the 2 smallest |w| among active {0,1,2,3}: 3 (0.05) and 1 (0.1);
    # grow the 2 largest |g| among {1,3,4,5,6,7}: 1 (0.9) and 5 (0.7)
    assert flat_mask(engine).nonzero().flatten().tolist() == [0, 1, 2, 5]
    w = weight.detach().reshape(-1)
    assert w.tolist() == pytest.approx([0.5, -0.1, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert engine.nonzeros() == 4 and int(flat_mask(engine).sum()) == 4


@pytest.mark.parametrize("optimizer_name", ["sgd", "adam"])
@pytest.mark.parametrize("reset", [True, False])
def test_momentum_reset_only_for_new_connections(optimizer_name, reset):
    engine, weight, optimizer = engine_with(reset_momentum=reset, optimizer_name=optimizer_name)
    engine.step(1)
    keys = ["momentum_buffer"] if optimizer_name == "sgd" else ["exp_avg", "exp_avg_sq"]
    for key in keys:
        state = optimizer.state[weight][key].reshape(-1)
        expected = [1.0] * 8
        if reset:
            expected[5] = 0.0  # newly grown; index 1 was regrown right after dropping: kept
        assert state.tolist() == expected, key


def test_ties_are_broken_by_position():
    engine, weight, _ = engine_with()
    with torch.no_grad():
        weight.copy_(torch.tensor([0.2, 0.2, 0.2, 0.2, 0, 0, 0, 0]).view(2, 4))
    weight.grad = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5]).view(2, 4)
    engine.step(1)
    assert flat_mask(engine).nonzero().flatten().tolist() == [2, 3, 4, 5]


def test_random_growth_keeps_count_and_is_seeded():
    results = []
    for _ in range(2):
        engine, weight, _ = engine_with(growth="random")
        engine.step(1)
        mask = flat_mask(engine)
        assert int(mask.sum()) == 4
        assert mask[0] and mask[2]  # the two largest survive the drop
        results.append(mask.clone())
    assert torch.equal(results[0], results[1])


def test_momentum_growth_reads_momentum_buffer():
    engine, weight, optimizer = engine_with(growth="momentum", reset_momentum=False)
    optimizer.state[weight]["momentum_buffer"].copy_(
        torch.tensor([0, 0, 0, 0, 0.3, 0.1, -0.9, 0.2]).view(2, 4)
    )
    engine.step(1)
    assert flat_mask(engine).nonzero().flatten().tolist() == [0, 2, 4, 6]


def test_no_update_off_schedule():
    engine, weight, _ = engine_with(update_frequency=3)
    assert engine.step(1) is False and engine.step(2) is False
    assert flat_mask(engine).nonzero().flatten().tolist() == [0, 1, 2, 3]
    assert weight.detach().reshape(-1)[4:].eq(0).all()  # masks still re-applied
