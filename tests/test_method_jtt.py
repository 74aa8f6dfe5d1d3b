"""JTT: the error set is what the training forward passes of epoch T got wrong (anniesch/jtt's
wrong_1_times; an eval-mode pass after epoch T as an option), it is up-weighted while a freshly
initialised network trains, and the two-stage run resumes exactly."""

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
    values = dict(method="jtt", epochs=3, data_root=str(root), device="cpu", width=8, seed=3)
    values.update(overrides)
    return TrialConfig.from_recipe("paper", **values)


def _train_epoch_recording(trial: Trial, epoch: int) -> torch.Tensor:
    """Train ``epoch`` and return the samples its training forward passes misclassified,
    recorded here by wrapping the network's forward and the batch stream (not by the method's
    own bookkeeping): each batch's logits in train mode, before the batch's step."""
    method = trial.method
    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]] = []
    batches, forward = trial.train.batches, method.forward
    pending: list = []

    def tapped_batches(*args, **kwargs):
        for batch in batches(*args, **kwargs):
            pending.append(batch)
            yield batch

    def tapped_forward(x):
        logits = forward(x)
        batch = pending.pop()
        seen.append((batch.index, batch.y, logits.detach().clone(), method.model.training))
        return logits

    trial.train.batches, method.forward = tapped_batches, tapped_forward
    try:
        trial.train_epoch(epoch)
    finally:
        del trial.train.batches
        method.forward = forward
    wrong = torch.zeros(trial.train.n, dtype=torch.bool)
    for index, y, logits, training in seen:
        assert training  # train mode: BatchNorm on batch statistics, as JTT's run_epoch
        wrong[index] = logits.argmax(dim=1) != y
    assert sorted(torch.cat([s[0] for s in seen]).tolist()) == list(range(trial.train.n))
    return wrong


@torch.no_grad()
def _wrong(trial: Trial) -> torch.Tensor:
    """Misclassified training samples, computed here independently of the method's code."""
    model, train, cfg = trial.method.model, trial.train, trial.cfg
    transform = make_transform(cfg.augment, cfg.dataset, train=False)
    model.eval()
    logits = model(transform(train.images))
    model.train()
    return logits.argmax(dim=1) != train.labels


def test_recipes_take_the_reference_error_set_and_t():
    for recipe in ("paper", "rest-code"):
        cfg = TrialConfig.from_recipe(recipe, method="jtt")
        assert (cfg.jtt_error_set, cfg.jtt_epochs) == ("train", 2)
        on_rigl = TrialConfig.from_recipe(recipe, method="rigl", objective="jtt", density=0.1)
        assert (on_rigl.jtt_error_set, on_rigl.jtt_epochs) == ("train", 2)
    erm = TrialConfig.from_recipe("paper", method="erm")
    assert not any(k.startswith("jtt_") for k in erm.identity())  # other hashes do not move
    mine = TrialConfig.from_recipe("paper", method="jtt", jtt_error_set="eval", jtt_epochs=1)
    assert (mine.jtt_error_set, mine.jtt_epochs) == ("eval", 1)
    with pytest.raises(ConfigError, match="jtt_error_set"):
        TrialConfig.from_recipe("paper", method="jtt", jtt_error_set="valid")


def test_error_set_is_what_epoch_t_training_passes_got_wrong(tiny_cmnist_root):
    # anniesch/jtt: wrong_1_times = y_pred != y_true of output_train_epoch_{T}.csv, the
    # predictions run_epoch made while training epoch T (train mode, augmented, pre-step).
    trial = Trial(_config(tiny_cmnist_root))
    method = trial.method
    assert trial.cfg.jtt_epochs == 2 and trial.cfg.jtt_error_set == "train"
    trial.train_epoch(1)
    assert method.before_evaluate(1) == 0.0 and not method.error.any()
    expected = _train_epoch_recording(trial, 2)
    assert 0 < int(expected.sum()) < trial.train.n
    after = _wrong(trial)  # an eval-mode pass after epoch T disagrees somewhere
    assert not torch.equal(expected, after)
    assert method.before_evaluate(2) == 0.0  # no extra pass over the training split
    assert torch.equal(method.error.cpu(), expected)
    # stage 2 trains on; the error set stays the one of epoch T
    method.after_epoch(2, {"valid_loss": 1.0})
    trial.train_epoch(3)
    assert torch.equal(method.error.cpu(), expected)


def test_eval_option_classifies_after_epoch_t_without_augmentation(tiny_cmnist_root):
    trial = Trial(_config(tiny_cmnist_root, jtt_error_set="eval", jtt_epochs=1, epochs=2))
    method = trial.method
    trial.train_epoch(1)
    expected = _wrong(trial)
    flops = method.before_evaluate(1)
    assert torch.equal(method.error, expected)
    assert flops == pytest.approx(trial.train.n * method.forward_flops())


def test_error_set_is_upweighted_in_a_fresh_network(tiny_cmnist_root):
    trial = Trial(_config(tiny_cmnist_root, jtt_upweight=20.0, jtt_epochs=1, epochs=2))
    method = trial.method
    assert method.sampling_weights() is None and not method.selectable(1)
    expected = _train_epoch_recording(trial, 1)
    assert 0 < int(expected.sum()) < trial.train.n
    method.before_evaluate(1)
    assert torch.equal(method.error, expected)
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
    trial = Trial(_config(tiny_cmnist_root, jtt_reweight="loss", jtt_upweight=-1, jtt_epochs=1))
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
        _config(tiny_cmnist_root, epochs=2)  # the recipes' T = 2
    assert "jtt_epochs" in str(info.value) and "\n" not in str(info.value)
    _config(tiny_cmnist_root, method="erm", epochs=1)  # other methods ignore jtt_epochs


def test_train_cli_writes_the_standard_metrics(tiny_cmnist_root, tmp_path, capsys):
    # JTT needs T < epochs, so the smallest run is 3 epochs (the recipes' T = 2).
    out = tmp_path / "run"
    args = ["train", "--method", "jtt", "--data-root", str(tiny_cmnist_root), "--ratio", "1pct"]
    args += ["--epochs", "3", "--device", "cpu", "--out", str(out), "--no-progress"]
    assert cli_main([*args, "--set", "width=8"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels_used"] == "none"
    assert "test_acc_conflicting" in summary["final"]
    assert summary["selected_epoch"] == 3  # the identification model is never selected
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
    capsys.readouterr()


@pytest.mark.parametrize("stop_at", [1, 2])
def test_interrupted_at_the_switch_resumes_exactly(tiny_cmnist_root, tmp_path, stop_at):
    # stop_at=1: epoch T records afresh after the restart; 2: right after the switch
    cfg = _config(tiny_cmnist_root)
    assert_resumes_exactly(cfg, tmp_path, stop_at=stop_at)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("reweight", ["resample", "loss"])
def test_graphs_match_the_eager_loop_across_the_switch(tiny_cmnist_root, tmp_path, reweight):
    # The switch re-initialises network, optimizer and lr in place: the graph captured in stage
    # 1 must keep replaying the right step in stage 2.
    values = dict(device="cuda", epochs=4, jtt_reweight=reweight)
    eager = run_trial(
        _config(tiny_cmnist_root, cuda_graphs=False, channels_last=False, **values),
        checkpoint_dir=str(tmp_path / "e"),
    )
    graphed = run_trial(_config(tiny_cmnist_root, **values), checkpoint_dir=str(tmp_path / "g"))
    assert graphed["cuda_graphs"]
    for key in ("train_loss", "train_acc", "test_acc", "valid_acc"):
        assert graphed["final"][key] == pytest.approx(eager["final"][key], rel=0.05, abs=0.03)
