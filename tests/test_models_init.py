"""The ``init`` option: ``openlth`` draws OpenLTH's initialisation, the default builds the same
tensors as before, and every network a trial builds (the trial's, prune's re-initialisation)
takes it.

The expected distributions are written from OpenLTH's definitions (reference
``../shared/reference/sdd_openlth.md`` §1.9; open_lth models/initializers.py ``kaiming_normal``:
``torch.nn.init.kaiming_normal_`` on the ``weight`` of every Conv2d and Linear, so N(0, 2 /
fan_in), nothing else touched; models/bn_initializers.py ``uniform``: BatchNorm2d weight
U(0, 1), bias 0), never read back from ``trainables.models.init``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tests.resume_check import assert_resumes_exactly
from trainables.config import TrialConfig
from trainables.errors import UserError
from trainables.methods.base import TrialContext
from trainables.models import MODELS, build_model
from trainables.train import run_trial
from trainables.train.trial import Trial

pytestmark = pytest.mark.usefixtures("one_thread")

NORMAL_WITHIN_ONE_SIGMA = math.erf(1 / math.sqrt(2))  # 0.6827 (a uniform law gives 0.5774)


def _built(name: str, init: str, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(name, 10, init=init, **kwargs)


def _kaiming_ok(weight: torch.Tensor) -> None:
    """``weight`` looks like n independent N(0, 2 / fan_in) draws (five standard errors)."""
    w = weight.detach().double().flatten()
    n, fan_in = w.numel(), weight[0].numel()
    sigma = math.sqrt(2.0 / fan_in)
    assert abs(w.mean().item()) < 5 * sigma / math.sqrt(n)
    assert abs(w.std().item() / sigma - 1) < 5 / math.sqrt(2 * n)


def test_openlth_draws_conv_and_linear_weights_from_n_0_2_over_fan_in() -> None:
    model = _built("resnet18", "openlth", stem="cifar")
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(layers) == 21  # 20 convs (3 downsampling 1x1) + fc
    for layer in layers:
        _kaiming_ok(layer.weight)
    big = model.layer4[1].conv2.weight.detach().double()  # 512 x 512 x 3 x 3, fan_in 4608
    sigma = math.sqrt(2.0 / 4608)
    assert big.std().item() == pytest.approx(sigma, rel=0.005)
    within = (big.abs() < sigma).double().mean().item()  # normal, not uniform
    assert within == pytest.approx(NORMAL_WITHIN_ONE_SIGMA, abs=0.003)
    mlp = _built("mlp", "openlth")
    for layer in (mlp.fc1, mlp.fc2, mlp.fc):
        _kaiming_ok(layer.weight)
    assert mlp.fc1.weight.std().item() == pytest.approx(math.sqrt(2 / 784), rel=0.01)


def test_openlth_draws_batchnorm_weights_from_u_0_1_with_zero_bias() -> None:
    model = _built("resnet18", "openlth", stem="cifar")
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    weight = torch.cat([m.weight.detach() for m in norms]).double()
    assert weight.numel() == 4800  # every BatchNorm of ResNet-18 at width 64
    assert weight.min().item() >= 0.0 and weight.max().item() < 1.0
    assert weight.mean().item() == pytest.approx(0.5, abs=0.025)  # 6 standard errors
    assert weight.std().item() == pytest.approx(math.sqrt(1 / 12), abs=0.015)
    for m in norms:
        assert torch.equal(m.bias.detach(), torch.zeros_like(m.bias))
        # OpenLTH sets weight and bias only: the running statistics stay PyTorch's
        assert torch.equal(m.running_mean, torch.zeros_like(m.running_mean))
        assert torch.equal(m.running_var, torch.ones_like(m.running_var))


def test_openlth_keeps_the_constructors_biases() -> None:
    # kaiming_normal touches only .weight: the biases are the constructor's draws (not zeroed)
    for name in ("mlp", "resnet18"):
        ours, theirs = _built(name, "openlth", seed=5), _built(name, "constructor", seed=5)
        layers = dict(theirs.named_modules())
        biased = [
            (n, m)
            for n, m in ours.named_modules()
            if isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None
        ]
        assert biased  # the linear layers (our convs have no bias)
        for n, m in biased:
            assert torch.equal(m.bias, layers[n].bias)
            assert m.bias.abs().max().item() > 0


def test_openlth_is_seeded() -> None:
    one, two = _built("mlp", "openlth", seed=3), _built("mlp", "openlth", seed=3)
    other = _built("mlp", "openlth", seed=4)
    assert all(torch.equal(a, b) for a, b in zip(one.parameters(), two.parameters(), strict=True))
    assert not torch.equal(one.fc1.weight, other.fc1.weight)


@pytest.mark.parametrize("name", MODELS.names())
def test_the_default_builds_the_same_tensors_and_draws_nothing_more(name: str) -> None:
    torch.manual_seed(11)
    before = build_model(name, 10, width=8, stem="cifar")  # no init argument: as before
    state_before = torch.get_rng_state()
    after = _built(name, "constructor", seed=11, width=8, stem="cifar")
    assert torch.equal(torch.get_rng_state(), state_before)
    a, b = before.state_dict(), after.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert TrialConfig().init == "constructor"


def test_unknown_init_lists_the_allowed_names() -> None:
    with pytest.raises(UserError, match="constructor, openlth"):
        build_model("mlp", 10, init="xavier")


def test_the_trials_network_takes_the_init() -> None:
    cfg = TrialConfig.from_recipe(
        "paper", dataset="fashion_mnist", model="mlp", init="openlth", seed=7, device="cpu"
    )
    ctx = TrialContext(cfg, torch.device("cpu"), None, 28, 1, False)  # type: ignore[arg-type]
    model = ctx.new_model()
    expected = _built("mlp", "openlth", seed=7)
    pairs = zip(model.parameters(), expected.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    _kaiming_ok(model.fc1.weight)


def _prune_config(root, **overrides) -> TrialConfig:
    values = dict(
        dataset="fashion_mnist",
        model="mlp",
        method="prune",
        retrain="scratch",
        epochs=1,
        levels=1,
        init="openlth",
        data_root=str(root),
        device="cpu",
        seed=3,
    )
    values.update(overrides)
    return TrialConfig.from_recipe("paper", **values)


def test_prune_reinitialises_a_scratch_level_with_the_init(tiny_fmnist_root, tmp_path) -> None:
    from trainables.methods.prune import PrunePlan
    from trainables.results import TrialStore
    from trainables.stages import StageStart

    for init, sigma in (("openlth", math.sqrt(2 / 784)), ("constructor", 1 / math.sqrt(3 * 784))):
        cfg = _prune_config(tiny_fmnist_root, init=init)
        folder = tmp_path / init
        run_trial(cfg.replace(levels=0), checkpoint_dir=str(folder))  # the dense level 0
        # level 1: a fresh initialisation under the level's mask
        level1 = PrunePlan.stages(cfg)[1]
        start = PrunePlan.start(cfg, level1, TrialStore(str(folder)))
        trial = Trial(cfg, stage=StageStart(level1, start))
        weight = trial.method.weights["fc1.weight"].detach()
        kept = weight[trial.method.engine.masks()["fc1.weight"]]
        # openlth: N(0, 2/784); constructor: nn.Linear's U(-1/28, 1/28)
        assert kept.std().item() == pytest.approx(sigma, rel=0.02)


def test_a_prune_trial_with_the_openlth_init_resumes_exactly(tiny_fmnist_root, tmp_path) -> None:
    assert_resumes_exactly(_prune_config(tiny_fmnist_root, epochs=2), tmp_path, stop_at=3)
