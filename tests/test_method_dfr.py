"""DFR: ERM, then the last layer refitted on group-balanced subsets of the validation split
before the final evaluation; the run writes the standard metrics and resumes exactly."""

from __future__ import annotations

import json

import pytest
import torch

from rest_sweep.cli import main as cli_main
from tests.resume_check import assert_resumes_exactly
from trainables.config import TrialConfig
from trainables.methods.dfr import balanced_subset, fit_logistic, group_ids
from trainables.train import run_trial
from trainables.train.trial import Trial


def _config(root, **overrides) -> TrialConfig:
    # ratio 5: the tiny valid split (300 samples) then holds bias-conflicting samples too
    values = dict(method="dfr", epochs=2, ratio=5.0, data_root=str(root), device="cpu", width=8)
    values.update(seed=3, **overrides)
    return TrialConfig.from_recipe("paper", **values)


@pytest.mark.parametrize("groups", ["cells", "bias"])
def test_balanced_subset_has_the_minimum_group_size_of_valid_indices(tiny_cmnist_root, groups):
    trial = Trial(_config(tiny_cmnist_root, dfr_groups=groups))
    valid = trial.valid
    group = group_ids(valid.labels, valid.bias, groups, 10)
    counts = torch.bincount(group)
    present = counts > 0
    subset = balanced_subset(group, torch.Generator().manual_seed(0))
    assert len(set(subset.tolist())) == len(subset)  # no repeats
    assert int(subset.min()) >= 0 and int(subset.max()) < valid.n  # valid positions only
    picked = torch.bincount(group[subset], minlength=len(counts))
    assert torch.equal(
        picked[present], torch.full_like(picked[present], int(counts[present].min()))
    )
    assert not picked[~present].any()
    if groups == "bias":
        assert len(subset) == 2 * int((valid.labels != valid.bias).sum())


def test_l1_logistic_regression_fits_and_sparsifies():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=generator, dtype=torch.float64)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()  # 4 classes from 2 of 6 features
    w, b, flops = fit_logistic(x, y, 4, c=1.0, steps=500)
    assert ((x @ w.T + b).argmax(dim=1) == y).float().mean() > 0.95
    assert w[:, 2:].abs().max() < w[:, :2].abs().max() / 5 and flops > 0
    w_strong, _, _ = fit_logistic(x, y, 4, c=0.001, steps=500)
    assert (w_strong == 0).all()  # exact zeros under a strong L1 penalty (proximal steps)


def test_only_the_final_epoch_refits_the_last_layer(tiny_cmnist_root):
    trial = Trial(_config(tiny_cmnist_root))
    method = trial.method
    trial.train_epoch(1)
    before = method.model.fc.weight.detach().clone()
    assert method.before_evaluate(1) == 0.0 and torch.equal(method.model.fc.weight, before)
    convs = {k: v.clone() for k, v in method.model.state_dict().items() if "fc" not in k}
    flops = method.before_evaluate(2)
    assert flops > trial.valid.n * method.forward_flops()
    assert not torch.equal(method.model.fc.weight, before)
    for name, value in method.model.state_dict().items():  # the features stay frozen
        if "fc" not in name:
            assert torch.equal(value, convs[name]), name
    assert method.chosen_c in (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)
    assert [method.selectable(e) for e in (1, 2)] == [False, True]


def test_train_cli_writes_the_standard_metrics(tiny_cmnist_root, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--method", "dfr", "--data-root", str(tiny_cmnist_root), "--ratio", "5pct"]
    args += ["--epochs", "1", "--device", "cpu", "--out", str(out), "--no-progress"]
    assert cli_main([*args, "--set", "width=8"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels_used"] == "group"
    assert "test_acc_conflicting" in summary["final"]
    assert summary["train_flops"] > summary["dense_train_flops"]  # the refit is counted
    capsys.readouterr()


def test_interrupted_run_resumes_exactly(tiny_cmnist_root, tmp_path):
    cfg = _config(tiny_cmnist_root, dfr_retrains=3)
    whole, _ = assert_resumes_exactly(cfg, tmp_path, stop_at=1)
    assert whole["selected_epoch"] == 2
    erm = run_trial(cfg.replace(method="erm"), checkpoint_dir=str(tmp_path / "erm"))
    assert erm["final"]["test_acc"] != whole["final"]["test_acc"]
