"""The relative-difficulty mechanism LfF and DisEnt share: GCE, the per-sample loss EMAs with
class-wise max normalisation, and W = L_b / (L_b + L_d)."""

from __future__ import annotations

import pytest
import torch

from trainables.config import ConfigError, TrialConfig
from trainables.methods.difficulty import (
    LossEma,
    difficulty_weights,
    gce_loss,
    relative_difficulty,
)


def test_gce_gradient_is_p_y_to_the_q_times_the_ce_gradient():
    torch.manual_seed(0)
    logits = torch.randn(6, 4, dtype=torch.float64) * 3
    targets = torch.tensor([0, 1, 2, 3, 1, 0])
    q = 0.7

    leaf = logits.clone().requires_grad_(True)
    gce_loss(leaf, targets, q).sum().backward()
    gce_grad = leaf.grad

    leaf = logits.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(leaf, targets, reduction="sum").backward()
    ce_grad = leaf.grad

    p_y = torch.softmax(logits, dim=1).gather(1, targets[:, None])
    torch.testing.assert_close(gce_grad, p_y**q * ce_grad)
    # ... which is the gradient of the GCE itself, (1 - p_y ** q) / q
    leaf = logits.clone().requires_grad_(True)
    p = torch.softmax(leaf, dim=1).gather(1, targets[:, None]).squeeze(1)
    ((1 - p**q) / q).sum().backward()
    torch.testing.assert_close(gce_grad, leaf.grad)


def test_loss_ema_first_value_then_blend():
    ema = LossEma(torch.tensor([0, 0, 1, 1]), 2, alpha=0.5, device=torch.device("cpu"))
    ema.update(torch.tensor([2.0, 4.0]), torch.tensor([0, 2]))
    assert ema.value.tolist() == [2.0, 0.0, 4.0, 0.0]  # first loss taken as is (1 - a * 0)
    ema.update(torch.tensor([4.0]), torch.tensor([0]))
    assert ema.value.tolist() == [3.0, 0.0, 4.0, 0.0]  # 0.5 * 2 + (1 - 0.5) * 4
    assert ema.seen.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert ema.class_max().tolist() == [3.0, 4.0]


def test_relative_difficulty_with_class_wise_normalisation():
    labels = torch.tensor([0, 0, 1, 1])
    cpu = torch.device("cpu")
    biased = LossEma(labels, 2, alpha=0.7, device=cpu)
    debiased = LossEma(labels, 2, alpha=0.7, device=cpu)
    # Class 0 losses are 10x those of class 1: normalising by the class max removes that scale.
    biased.update(torch.tensor([8.0, 2.0, 0.8, 0.2]), torch.arange(4))
    debiased.update(torch.tensor([2.0, 8.0, 0.2, 0.8]), torch.arange(4))
    index = torch.tensor([0, 1, 2, 3])
    b = biased.normalised(index, labels)
    d = debiased.normalised(index, labels)
    torch.testing.assert_close(b, torch.tensor([1.0, 0.25, 1.0, 0.25]))
    torch.testing.assert_close(d, torch.tensor([0.25, 1.0, 0.25, 1.0]))
    w = relative_difficulty(b, d)
    torch.testing.assert_close(w, torch.tensor([0.8, 0.2, 0.8, 0.2]))  # 1 / 1.25, 0.25 / 1.25
    # The max runs over the whole split, not the batch: a batch of one sample is normalised by
    # its class's largest EMA elsewhere in the split.
    one = torch.tensor([1])
    torch.testing.assert_close(biased.normalised(one, labels[one]), torch.tensor([0.25]))


def test_difficulty_weights_updates_both_emas_then_weighs():
    labels = torch.tensor([0, 1, 0])
    cpu = torch.device("cpu")
    biased = LossEma(labels, 2, alpha=0.7, device=cpu)
    debiased = LossEma(labels, 2, alpha=0.7, device=cpu)
    index = torch.tensor([2, 1])
    w = difficulty_weights(
        biased, debiased, torch.tensor([3.0, 1.0]), torch.tensor([1.0, 3.0]), index, labels[index]
    )
    # Each sample is the only one seen of its class: both EMAs normalise to 1, W = 1 / 2.
    torch.testing.assert_close(w, torch.tensor([0.5, 0.5]), atol=1e-7, rtol=0)
    assert biased.value.tolist() == [0.0, 1.0, 3.0]
    # A class whose EMAs are all zero gives weight 0, not NaN.
    zero = LossEma(labels, 2, alpha=0.7, device=cpu)
    zero.update(torch.zeros(2), index)
    assert zero.normalised(index, labels[index]).tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    ("field", "value"), [("gce_q", 0.0), ("gce_q", 1.5), ("ema_alpha", 1.0), ("ema_alpha", -0.1)]
)
def test_bad_difficulty_parameters_are_one_line_errors(field, value):
    with pytest.raises(ConfigError, match=field):
        TrialConfig.from_recipe("paper", method="lff", **{field: value})
