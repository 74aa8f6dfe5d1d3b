"""``disent``: feature swapping starts exactly at ``disent_swap_step``, the step LR decay follows
the public StepLR timing, the recipe holds the public scripts' values (BFFHQ at DisEnt's batch
64), a trial whose swap would never start is refused at planning unless allowed, the CLI trains
it and a resume (across the swap start and an LR decay) is exact."""

from __future__ import annotations

import json

import pytest
import torch

from rest_sweep.cli import main as cli_main
from tests.resume_check import assert_resumes_exactly
from trainables.config import ConfigError, TrialConfig
from trainables.methods import METHODS
from trainables.methods.disent import planned_steps, swap_permutation
from trainables.train.trial import Trial

if "disent" not in METHODS:  # registering it moves the paper grids' pinned counts (lead's call)
    pytest.skip("method 'disent' is not registered in _MODULES", allow_module_level=True)


def _config(root, **overrides) -> TrialConfig:
    # Two epochs of the real CMNIST are 430 planned steps, far below the public swap step: tests
    # that keep it allow the no-swap run explicitly (the planning check is tested below).
    values = dict(method="disent", epochs=2, data_root=str(root), device="cpu", width=8, seed=3)
    if "disent_swap_step" not in overrides:
        values["disent_allow_no_swap"] = True
    values.update(overrides)
    return TrialConfig.from_recipe("paper", **values)


def test_swap_loss_starts_exactly_after_the_configured_step(tiny_cmnist_root):
    cfg = _config(tiny_cmnist_root, disent_swap_step=2, batch_size=128)
    trial = Trial(cfg)
    method = trial.method
    swap = []
    for batch in trial.train.batches(128, epoch=1, seed=cfg.seed, shuffle=True):
        trial.zero_grad(set_to_none=True)
        method.train_step(batch)
        swap.append(float(method.last_swap_loss))
        if len(swap) == 6:
            break
    # public learner.py: `if step > curr_step` on 0-based steps: indices 0..2 have no swap loss
    assert swap[:3] == [0.0, 0.0, 0.0]
    assert all(value > 0 for value in swap[3:]), swap
    assert int(method.steps) == 6


def test_features_are_detached_across_branches(tiny_cmnist_root):
    # lambda_dis = 0 and no swap: only the weighted CE of the intrinsic head is left, and it sees
    # z_b detached, so nothing of the bias branch gets a gradient.
    cfg = _config(tiny_cmnist_root, disent_lambda_dis=0.0)
    trial = Trial(cfg)
    method = trial.method
    batch = next(trial.train.batches(cfg.batch_size, epoch=1, seed=cfg.seed, shuffle=True))
    method.train_step(batch)
    assert all(p.grad is None or not p.grad.any() for p in method.bias_model.parameters())
    assert all(p.grad is not None and p.grad.any() for p in method.model.parameters())
    assert method.model.fc.in_features == 2 * method.model.conv3.out_channels


def test_swap_permutation_is_a_seeded_permutation():
    step = torch.tensor(7)
    perm = swap_permutation(256, 1234, step)
    assert sorted(perm.tolist()) == list(range(256))
    assert torch.equal(perm, swap_permutation(256, 1234, torch.tensor(7)))
    assert not torch.equal(perm, swap_permutation(256, 1234, torch.tensor(8)))
    assert not torch.equal(perm, swap_permutation(256, 4321, step))
    assert (perm == torch.arange(256)).float().mean() < 0.05  # few fixed points


def test_step_lr_decay_follows_public_step_lr(tiny_cmnist_root):
    cfg = _config(
        tiny_cmnist_root, disent_swap_step=2, disent_lr_decay_step=2, disent_lr_gamma=0.5, lr=0.01
    )
    method = Trial(cfg).method
    lrs = []
    for step in range(1, 9):  # StepLR.step() after 0-based steps >= 2, decay every 2 of those
        method.after_step(step)
        lrs.append(round(float(method.optimizer.param_groups[0]["lr"]), 8))
    assert lrs == [0.01, 0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025, 0.00125]
    assert method.bias_optimizer.param_groups[0]["lr"] == pytest.approx(0.00125)


def test_paper_recipe_takes_the_public_scripts_values():
    cmnist = TrialConfig.from_recipe("paper", method="disent", dataset="cmnist", ratio=0.5)
    assert (cmnist.lr, cmnist.weight_decay, cmnist.disent_lambda_dis) == (0.01, 0.0, 10.0)
    assert (cmnist.disent_lambda_swap_align, cmnist.disent_lambda_swap) == (10.0, 1.0)
    assert (cmnist.disent_lr_gamma, cmnist.disent_swap_step, cmnist.disent_lr_decay_step) == (
        0.5,
        10_000,
        10_000,
    )
    c05 = TrialConfig.from_recipe("paper", method="disent", dataset="cifar10c", ratio=0.5)
    c2 = TrialConfig.from_recipe("paper", method="disent", dataset="cifar10c", ratio=2)
    assert (c05.lr, c05.disent_lambda_dis, c2.lr, c2.disent_lambda_dis) == (5e-4, 1.0, 1e-3, 5.0)
    bffhq = TrialConfig.from_recipe("paper", method="disent", dataset="bffhq", ratio=0.5)
    assert (bffhq.lr, bffhq.disent_lambda_swap, bffhq.disent_lr_gamma) == (1e-4, 0.1, 0.1)
    assert bffhq.disent_lambda_dis == bffhq.disent_lambda_swap_align == 2.0
    # DisEnt's batch sizes (learner.py data2batch_size), in both recipes; other methods keep 256
    assert (cmnist.batch_size, c05.batch_size, bffhq.batch_size) == (256, 256, 64)
    code = TrialConfig.from_recipe("rest-code", method="disent", dataset="bffhq", ratio=0.5)
    assert code.batch_size == 64 and code.disent_lr_decay_step == 0
    erm_bffhq = TrialConfig.from_recipe("paper", method="erm", dataset="bffhq", ratio=0.5)
    assert erm_bffhq.batch_size == 256
    # overrides win; other methods keep the defaults (their hashes do not move)
    mine = TrialConfig.from_recipe("paper", method="disent", lr=0.1, disent_lambda_dis=3)
    assert (mine.lr, mine.disent_lambda_dis) == (0.1, 3.0)
    erm = TrialConfig.from_recipe("paper", method="erm", dataset="cmnist")
    assert erm.disent_lambda_dis == 1.0 and erm.weight_decay == 1e-4 and erm.lr == 0.01
    with pytest.raises(ConfigError, match="disent_lr_gamma"):
        TrialConfig.from_recipe("paper", method="disent", disent_lr_gamma=0)


def test_public_swap_and_decay_happen_within_the_recipe_runs():
    # BFFHQ at DisEnt's batch 64: 100 x ceil(19,200 / 64) = 30,000 steps, so the swap (0-based
    # steps > 10,000) and the first LR decay (after step 20,000) both happen; at the grid's old
    # batch 256 the run ended at step 7,500 with neither.
    bffhq = TrialConfig.from_recipe("paper", method="disent", dataset="bffhq", ratio=0.5)
    assert planned_steps(bffhq) == 30_000
    assert planned_steps(bffhq) - 1 > bffhq.disent_swap_step
    assert planned_steps(bffhq) >= bffhq.disent_swap_step + bffhq.disent_lr_decay_step
    for dataset, steps in (("cmnist", 21_500), ("cifar10c", 17_600)):
        cfg = TrialConfig.from_recipe("paper", method="disent", dataset=dataset, ratio=1.0)
        assert planned_steps(cfg) == steps and steps - 1 > cfg.disent_swap_step


def test_a_run_that_never_swaps_is_refused_unless_allowed():
    values = dict(method="disent", dataset="bffhq", ratio=0.5)
    with pytest.raises(ConfigError) as info:
        TrialConfig.from_recipe("paper", batch_size=256, **values)
    message = str(info.value)
    assert "\n" not in message
    for word in ("disent_swap_step", "epochs 100", "batch_size 256", "7,500 steps", "19,200"):
        assert word in message, (word, message)
    assert "approximate" in message and "disent_allow_no_swap" in message
    with pytest.raises(ConfigError, match="disent_swap_step"):
        TrialConfig.from_recipe("paper", method="disent", epochs=2)  # 430 steps of CMNIST
    # the last 0-based step must exceed the swap step: 7,500 steps end at index 7,499
    TrialConfig.from_recipe("paper", batch_size=256, disent_swap_step=7_498, **values)
    with pytest.raises(ConfigError, match="disent_swap_step"):
        TrialConfig.from_recipe("paper", batch_size=256, disent_swap_step=7_499, **values)
    # the explicit opt-out plans it, and does not enter the trial's identity
    allowed = TrialConfig.from_recipe("paper", batch_size=256, disent_allow_no_swap=True, **values)
    assert allowed.disent_swap_step == 10_000 and "disent_allow_no_swap" not in allowed.identity()
    # other methods never see the check
    TrialConfig.from_recipe("paper", method="erm", dataset="bffhq", ratio=0.5, epochs=1)


def test_disent_cli_trains_on_tiny_data(tiny_cmnist_root, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--dataset", "cmnist", "--data-root", str(tiny_cmnist_root)]
    args += ["--ratio", "1pct", "--method", "disent", "--seed", "41", "--epochs", "1"]
    args += ["--device", "cpu", "--out", str(out), "--no-progress", "--set", "width=8"]
    args += ["--set", "disent_allow_no_swap=true"]  # one epoch: 215 planned steps, no swap
    assert cli_main(args) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1
    for key in ("train_loss", "valid_acc", "test_acc", "test_acc_conflicting", "test_acc_aligned"):
        assert key in rows[0], key
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels_used"] == "none"
    # two encoders (plus tiny heads): a bit over twice ERM's dense cost
    ratio = summary["train_flops"] / summary["dense_train_flops"]
    assert 2.0 < ratio < 2.1, ratio
    # the prediction uses both encoders and the intrinsic head over [z_i, z_b]
    assert 1.9 < summary["inference_flops"] / summary["dense_inference_flops"] < 2.1


def test_disent_resume_is_exact_across_swap_start_and_lr_decay(tiny_cmnist_root, tmp_path):
    # 2000 samples / 256 = 8 steps per epoch: swap from 0-based step 4, LR decays after steps 6,
    # 9, 12 and 15 (1-based), so both happen in epoch 1 and go on in epoch 2
    cfg = _config(tiny_cmnist_root, disent_swap_step=3, disent_lr_decay_step=3)
    whole, _ = assert_resumes_exactly(cfg, tmp_path, stop_at=1)
    assert whole["final"]["lr"] < cfg.lr  # the decay happened inside the run
