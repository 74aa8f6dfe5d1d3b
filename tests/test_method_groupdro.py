"""GroupDRO: exponentiated-gradient group weights move toward the group with the higher loss,
stay state of the trial (checkpointed), batches are group-balanced draws as group_DRO's
--reweight_groups (uniform as an option), and the run resumes exactly."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rest_sweep.cli import main as cli_main
from tests.resume_check import assert_resumes_exactly
from trainables.config import TrialConfig
from trainables.data import Batch
from trainables.train import run_trial
from trainables.train.trial import Trial


def _config(root, **overrides) -> TrialConfig:
    values = dict(method="groupdro", epochs=2, data_root=str(root), device="cpu", width=8, seed=3)
    values.update(overrides)
    return TrialConfig.from_recipe("paper", **values)


def _batch(y, b) -> Batch:
    y, b = torch.tensor(y), torch.tensor(b)
    return Batch(x=torch.zeros(len(y), 3, 28, 28), y=y, b=b, index=torch.arange(len(y)))


def test_q_moves_toward_the_group_with_the_higher_loss(tiny_cmnist_root):
    method = Trial(_config(tiny_cmnist_root, groupdro_groups="bias", groupdro_eta=0.1)).method
    assert torch.allclose(method.q, torch.tensor([0.5, 0.5]))
    batch = _batch([0, 1, 2, 3], [0, 1, 5, 7])  # two aligned, two conflicting samples
    losses = torch.tensor([0.1, 0.3, 2.0, 1.0], requires_grad=True)
    loss = method.loss(losses, batch)
    # one exponentiated-gradient step: q_g * exp(eta * mean loss of g), renormalised
    q = torch.tensor([0.5 * math.exp(0.1 * 0.2), 0.5 * math.exp(0.1 * 1.5)])
    q = q / q.sum()
    assert torch.allclose(method.q, q)
    assert float(loss.detach()) == pytest.approx(float(q[0] * 0.2 + q[1] * 1.5))
    loss.backward()  # the gradient weights each sample by its group's q over the group size
    assert torch.allclose(losses.grad, torch.stack([q[0], q[0], q[1], q[1]]) / 2)
    for _ in range(20):
        method.loss(losses.detach(), batch)
    assert float(method.q[1]) > float(q[1]) > 0.5  # keeps moving toward the worse group


def test_cells_adjustment_and_balanced_sampling(tiny_cmnist_root):
    cfg = _config(
        tiny_cmnist_root, groupdro_adjustment=1.0, groupdro_eta=1.0, groupdro_sampling="balanced"
    )
    trial = Trial(cfg)
    method = trial.method
    assert method.q.shape == (100,)
    counts = method.train_counts
    # equal losses: the adjustment C / sqrt(n_g) favours the smaller of two present cells
    small, large = int(torch.argmin(counts + 1e9 * (counts == 0))), int(torch.argmax(counts))
    y = [small // 10, large // 10]
    b = [small % 10, large % 10]
    method.loss(torch.tensor([1.0, 1.0]), _batch(y, b))
    assert float(method.q[small]) > float(method.q[large])
    # balanced sampling: every present cell carries the same total draw weight
    weights = method.sampling_weights()
    cells = trial.train.labels * 10 + trial.train.bias
    totals = torch.zeros(100).index_add_(0, cells, weights)
    assert torch.allclose(totals[counts > 0], torch.ones(int((counts > 0).sum())))
    uniform = Trial(_config(tiny_cmnist_root, groupdro_sampling="uniform"))
    assert uniform.method.sampling_weights() is None  # the named option: a plain shuffle


def test_recipes_draw_group_balanced_batches_as_reweight_groups(tiny_cmnist_root):
    for recipe in ("paper", "rest-code"):
        assert TrialConfig.from_recipe(recipe, method="groupdro").groupdro_sampling == "balanced"
        sparse = TrialConfig.from_recipe(recipe, method="rigl", objective="groupdro", density=0.1)
        assert sparse.groupdro_sampling == "balanced"
    assert "groupdro_sampling" not in TrialConfig.from_recipe("paper", method="erm").identity()
    trial = Trial(_config(tiny_cmnist_root, groupdro_groups="bias"))
    assert trial.cfg.groupdro_sampling == "balanced"
    groups = (trial.train.labels != trial.train.bias).long()
    n = trial.train.n
    # group_DRO data/dro_dataset.py get_loader: weight len(dataset) / group_count per sample
    reference = (n / torch.bincount(groups, minlength=2).float())[groups]
    weights = trial.method.sampling_weights()
    assert torch.allclose(weights / weights.sum(), reference / reference.sum())
    # WeightedRandomSampler(weights, len(dataset), replacement=True): N draws with repeats, each
    # group about half of them although the split holds ~1 % conflicting samples
    order = trial.train.order(epoch=1, seed=3, shuffle=True, weights=weights)
    assert order.numel() == n and order.unique().numel() < n
    assert float(groups.float().mean()) < 0.05
    assert float(groups[order].float().mean()) == pytest.approx(0.5, abs=0.05)


def test_train_cli_writes_the_standard_metrics(tiny_cmnist_root, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--method", "groupdro", "--data-root", str(tiny_cmnist_root)]
    args += ["--ratio", "1pct", "--epochs", "1", "--device", "cpu", "--out", str(out)]
    assert cli_main([*args, "--no-progress", "--set", "width=8"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels_used"] == "group"
    assert "test_acc_conflicting" in summary["final"]
    capsys.readouterr()


def test_interrupted_run_resumes_exactly(tiny_cmnist_root, tmp_path):
    cfg = _config(tiny_cmnist_root)
    whole, _ = assert_resumes_exactly(cfg, tmp_path, stop_at=1)
    # q is the trial's state: it left uniform, and ERM on the same seed ends elsewhere
    erm = run_trial(cfg.replace(method="erm"), checkpoint_dir=str(tmp_path / "erm"))
    assert erm["final"]["train_loss"] != whole["final"]["train_loss"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_graphs_match_the_eager_loop(tiny_cmnist_root, tmp_path):
    values = dict(device="cuda", epochs=3)
    eager = run_trial(
        _config(tiny_cmnist_root, cuda_graphs=False, channels_last=False, **values),
        checkpoint_dir=str(tmp_path / "e"),
    )
    graphed = run_trial(_config(tiny_cmnist_root, **values), checkpoint_dir=str(tmp_path / "g"))
    assert graphed["cuda_graphs"]
    for key in ("train_loss", "train_acc", "test_acc", "valid_acc"):
        assert graphed["final"][key] == pytest.approx(eager["final"][key], rel=0.05, abs=0.03)
