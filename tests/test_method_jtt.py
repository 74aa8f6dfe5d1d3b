"""JTT: the error set is what the identification model gets wrong at epoch T, it is up-weighted
while a freshly initialised network trains, and the two-stage run resumes exactly."""

from __future__ import annotations

import json

import pytest
import torch

from rest_sweep.cli import main as cli_main
from tests.resume_check import assert_resumes_exactly
from trainables.config import ConfigError, TrialConfig
from trainables.data import make_transform
from trainables.train import run_trial
from trainables.train.trial import Trial


def _config(root, **overrides) -> TrialConfig:
    values = dict(method="jtt", epochs=2, data_root=str(root), device="cpu", width=8, seed=3)
    values.update(overrides)
    return TrialConfig.from_recipe("paper", **values)


@torch.no_grad()
def _wrong(trial: Trial) -> torch.Tensor:
    """Misclassified training samples, computed here independently of the method's code."""
    model, train, cfg = trial.method.model, trial.train, trial.cfg
    transform = make_transform(cfg.augment, cfg.dataset, train=False)
    model.eval()
    logits = model(transform(train.images))
    model.train()
    return logits.argmax(dim=1) != train.labels


def test_error_set_is_the_epoch_t_mistakes_and_is_upweighted(tiny_cmnist_root):
    trial = Trial(_config(tiny_cmnist_root, jtt_upweight=20.0))
    method = trial.method
    assert method.sampling_weights() is None and not method.selectable(1)
    trial.train_epoch(1)
    expected = _wrong(trial)
    assert 0 < int(expected.sum()) < trial.train.n
    flops = method.before_evaluate(1)
    assert torch.equal(method.error, expected)
    assert flops == pytest.approx(trial.train.n * method.forward_flops())
    method.after_epoch(1, {"valid_loss": 1.0})
    # stage 2: a fresh network (the seed's initialisation) and a fresh optimizer
    fresh = method.ctx.new_model().state_dict()
    for name, value in method.model.state_dict().items():
        assert torch.equal(value, fresh[name]), name
    for state in method.optimizer.state.values():
        assert all(not torch.is_tensor(v) or not v.any() for v in state.values())
    weights = method.sampling_weights()
    assert torch.equal(weights, torch.where(expected, 21.0, 1.0))
    assert method.selectable(2)
    # the core re-reads the weights each epoch: each error-set sample is drawn 21x as often
    order = trial.train.order(epoch=2, seed=3, shuffle=True, weights=weights)
    share = float(expected.float().mean())
    assert float(expected[order].float().mean()) == pytest.approx(
        21 * share / (21 * share + 1 - share), abs=0.03
    )


def test_loss_mode_weights_the_error_set_in_the_loss(tiny_cmnist_root):
    trial = Trial(_config(tiny_cmnist_root, jtt_reweight="loss", jtt_upweight=-1))
    method = trial.method
    trial.train_epoch(1)
    method.before_evaluate(1)
    method.after_epoch(1, {"valid_loss": 1.0})
    errors = int(method.error.sum())
    lam = (trial.train.n - errors) // errors - 1  # run_expt.py's up_weight=-1
    assert method.sampling_weights() is None
    assert torch.allclose(method.weights, torch.where(method.error, 1.0 + lam, 1.0))
    assert float(method.mean_weight) == pytest.approx(float(method.weights.mean()))


def test_t_must_leave_a_second_stage(tiny_cmnist_root):
    with pytest.raises(ConfigError) as info:
        _config(tiny_cmnist_root, epochs=2, jtt_epochs=2)
    assert "jtt_epochs" in str(info.value) and "\n" not in str(info.value)
    _config(tiny_cmnist_root, method="erm", epochs=1)  # other methods ignore jtt_epochs


def test_train_cli_writes_the_standard_metrics(tiny_cmnist_root, tmp_path, capsys):
    # JTT needs T < epochs, so the smallest run is 2 epochs (T = 1 by default).
    out = tmp_path / "run"
    args = ["train", "--method", "jtt", "--data-root", str(tiny_cmnist_root), "--ratio", "1pct"]
    args += ["--epochs", "2", "--device", "cpu", "--out", str(out), "--no-progress"]
    assert cli_main([*args, "--set", "width=8"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels_used"] == "none"
    assert "test_acc_conflicting" in summary["final"]
    assert summary["selected_epoch"] == 2  # the identification model is never selected
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    capsys.readouterr()


def test_interrupted_at_the_switch_resumes_exactly(tiny_cmnist_root, tmp_path):
    cfg = _config(tiny_cmnist_root)
    assert_resumes_exactly(cfg, tmp_path, stop_at=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("reweight", ["resample", "loss"])
def test_graphs_match_the_eager_loop_across_the_switch(tiny_cmnist_root, tmp_path, reweight):
    # The switch re-initialises network, optimizer and lr in place: the graph captured in stage
    # 1 must keep replaying the right step in stage 2.
    values = dict(device="cuda", epochs=3, jtt_reweight=reweight)
    eager = run_trial(
        _config(tiny_cmnist_root, cuda_graphs=False, channels_last=False, **values),
        checkpoint_dir=str(tmp_path / "e"),
    )
    graphed = run_trial(_config(tiny_cmnist_root, **values), checkpoint_dir=str(tmp_path / "g"))
    assert graphed["cuda_graphs"]
    for key in ("train_loss", "train_acc", "test_acc", "valid_acc"):
        assert graphed["final"][key] == pytest.approx(eager["final"][key], rel=0.05, abs=0.03)
