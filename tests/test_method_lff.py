"""``lff``: the step's gradients are LfF's (GCE on the biased net, relative-difficulty-weighted CE
on the debiased one), the CLI trains it, FLOPs count both networks, and a resume is exact."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from rest_sweep.cli import main as cli_main
from tests.resume_check import assert_resumes_exactly
from trainables.config import TrialConfig
from trainables.train.trial import Trial


def _config(root, **overrides) -> TrialConfig:
    values = dict(method="lff", epochs=2, data_root=str(root), device="cpu", width=8, seed=3)
    values.update(overrides)
    return TrialConfig.from_recipe("paper", **values)


def test_lff_step_gradients_are_gce_and_difficulty_weighted_ce(tiny_cmnist_root):
    cfg = _config(tiny_cmnist_root)
    trial = Trial(cfg)
    method = trial.method
    batch = next(trial.train.batches(cfg.batch_size, epoch=1, seed=cfg.seed, shuffle=True))
    biased, debiased = copy.deepcopy(method.biased), copy.deepcopy(method.model)
    pairs = zip(biased.parameters(), debiased.parameters(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)  # two different initialisations
    method.train_step(batch)

    logits_b, logits_d = biased(batch.x), debiased(batch.x)
    ce_b = F.cross_entropy(logits_b, batch.y, reduction="none")
    ce_d = F.cross_entropy(logits_d, batch.y, reduction="none")
    # First step: each EMA is the loss itself; the class max is the batch's (unseen samples: 0).
    max_b = torch.zeros(10).scatter_reduce(0, batch.y, ce_b.detach(), "amax")
    max_d = torch.zeros(10).scatter_reduce(0, batch.y, ce_d.detach(), "amax")
    nb, nd = ce_b.detach() / max_b[batch.y], ce_d.detach() / max_d[batch.y]
    weight = nb / (nb + nd + 1e-8)
    p_y = torch.softmax(logits_b.detach(), 1).gather(1, batch.y[:, None]).squeeze(1)
    q = cfg.gce_q
    loss = (q * p_y**q * ce_b).mean() + (weight * ce_d).mean()
    loss.backward()
    for mine, ref in ((method.biased, biased), (method.model, debiased)):
        for p, r in zip(mine.parameters(), ref.parameters(), strict=True):
            torch.testing.assert_close(p.grad, r.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(method.ema_biased.value[batch.index], ce_b.detach())


def test_lff_cli_trains_on_tiny_data(tiny_cmnist_root, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--dataset", "cmnist", "--data-root", str(tiny_cmnist_root)]
    args += ["--ratio", "1pct", "--method", "lff", "--seed", "41", "--epochs", "1"]
    args += ["--device", "cpu", "--out", str(out), "--no-progress", "--set", "width=8"]
    assert cli_main(args) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1
    for key in ("train_loss", "valid_acc", "test_acc", "test_acc_conflicting", "test_acc_aligned"):
        assert key in rows[0], key
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels_used"] == "none"
    # two networks of the same size, each 3x forward per example: twice ERM's dense cost
    assert summary["train_flops"] == pytest.approx(2 * summary["dense_train_flops"])


def test_lff_resume_is_exact(tiny_cmnist_root, tmp_path):
    cfg = _config(tiny_cmnist_root)
    assert_resumes_exactly(cfg, tmp_path, stop_at=1)
