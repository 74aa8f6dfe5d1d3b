"""prune: step strings, exact densities per level, the retraining policies (lottery rewind of
weights and data order, finetune, scratch), the criteria on hand-made weights, extending a
finished trial by more levels, an exact resume of a killed level, and the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from trainables.config import ConfigError, TrialConfig
from trainables.errors import UserError
from trainables.methods.prune import Slot, select, target_counts
from trainables.steps import Step, parse_steps
from trainables.train import run_trial
from trainables.train.trial import Trial

VOLATILE = {"epoch_time_s", "attempt"}


def _config(root, **overrides) -> TrialConfig:
    values = dict(
        method="prune", epochs=1, levels=2, data_root=str(root), device="cpu", width=8, seed=3
    )
    values.update(overrides)
    return TrialConfig.from_recipe("paper", **values)


def _rows(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_step_strings_parse_once_with_one_line_errors() -> None:
    assert Step.parse("160ep") == Step(160, 0)
    assert Step.parse("1000it") == Step(0, 1000)
    assert Step.parse("80ep50it") == Step(80, 50)
    assert Step.parse("2ep3it").to_iterations(10) == 23
    assert parse_steps("80,120", "milestones") == (Step(80), Step(120))
    assert parse_steps("80ep, 1000it", "milestones") == (Step(80), Step(0, 1000))
    for bad in ("", "5", "ep", "3it2ep", "1.5ep"):
        with pytest.raises(UserError, match="^finetune_steps: .* allowed: a step such as 160ep"):
            Step.parse(bad, "finetune_steps")


def test_config_checks_and_levels_outside_the_identity() -> None:
    cfg = TrialConfig.from_recipe("paper", method="prune", levels=2)
    assert cfg.lr_schedule == "none" and cfg.density == 1.0
    assert cfg.trial_hash == TrialConfig.from_recipe("paper", method="prune", levels=20).trial_hash
    erm = TrialConfig.from_recipe("paper", method="erm")
    assert not {"levels", "retrain", "prune_fraction"} & set(erm.identity())
    bad = {
        "prune_fraction": dict(prune_fraction=1.0),
        "milestones": dict(milestones="80,x"),
        "finetune_steps": dict(finetune_steps="10 epochs"),
        "density": dict(density=0.5),
        "rewind_step": dict(rewind_step=5, retrain="finetune"),
        "lr_schedule": dict(lr_schedule="cosine"),
    }
    for name, values in bad.items():
        with pytest.raises(ConfigError, match=f"^{name}: "):
            TrialConfig.from_recipe("paper", method="prune", **values)


def test_rewind_past_the_training_length_is_one_line(tiny_cmnist_root) -> None:
    with pytest.raises(UserError, match="^rewind_step: 8 is not allowed"):
        Trial(_config(tiny_cmnist_root, rewind_step=8))  # 2000 / 256 -> 8 steps per epoch


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_density_after_l_levels_is_exact(tiny_cmnist_root, scope) -> None:
    cfg = _config(
        tiny_cmnist_root, prune_scope=scope, levels=4, dense_first_layer=True, dense_last_layer=True
    )
    method = Trial(cfg).method
    kept_dense = [p for p in method.model.parameters() if p.dim() > 1][0]
    before = kept_dense.detach().clone()
    numels = {n: w.numel() for n, w in method.weights.items()}
    total = sum(numels.values())
    for level in range(1, 5):
        method._enter_level(level)
        counts = {n: int((w != 0).sum()) for n, w in method.weights.items()}
        assert counts == method.engine.layer_counts()
        if scope == "global":
            assert sum(counts.values()) == round(total * 0.8**level)
        else:
            assert counts == {n: max(1, round(k * 0.8**level)) for n, k in numels.items()}
        assert method.density() == sum(counts.values()) / total
    assert torch.equal(kept_dense, before)  # the first conv is kept dense (and unmasked)


def test_each_criterion_picks_the_expected_weights(tiny_cmnist_root) -> None:
    scores = {"a": torch.tensor([3.0, -1.0, 0.5]).abs(), "b": torch.tensor([-4.0, 0.1]).abs()}
    masks = {"a": torch.tensor([True, True, True]), "b": torch.tensor([True, False])}
    kept = select(scores, masks, 2)  # global: the two largest active scores
    assert kept["a"].tolist() == [True, False, False] and kept["b"].tolist() == [True, False]
    kept = select(scores, masks, {"a": 1, "b": 1})  # per layer
    assert kept["a"].tolist() == [True, False, False] and kept["b"].tolist() == [True, False]
    assert target_counts({"a": 10, "b": 15}, 2, 0.2, "global") == 16
    # magnitude: |w|; gradient: |w * dL/dw| on the first batch of the level's draw; random: seeded
    method = Trial(_config(tiny_cmnist_root, criterion="gradient")).method
    name, weight = next(iter(method.weights.items()))
    with torch.no_grad():
        weight.copy_(torch.linspace(-1, 1, weight.numel()).view(weight.shape))
    ref = Trial(_config(tiny_cmnist_root, criterion="gradient")).method
    ref.model.load_state_dict(method.model.state_dict())
    batch = next(iter(ref.ctx.train.batches(256, epoch=-1, seed=3, shuffle=True)))
    torch.nn.functional.cross_entropy(ref.model(batch.x), batch.y).backward()
    expected = (weight.detach() * dict(ref.model.named_parameters())[name].grad).abs()
    torch.testing.assert_close(method.scores(1)[name], expected)
    method.cfg = method.cfg.replace(criterion="magnitude")
    assert torch.equal(method.scores(1)[name], weight.detach().abs())
    method.cfg = method.cfg.replace(criterion="random")
    first, again = method.scores(1)[name], method.scores(1)[name]
    assert torch.equal(first, again) and not torch.equal(first, method.scores(2)[name])


def test_lottery_rewinds_weights_and_data_order_to_step_k(tiny_cmnist_root) -> None:
    cfg = _config(tiny_cmnist_root, retrain="lottery", rewind_step=3, levels=1)
    trial = Trial(cfg)
    method = trial.method
    seen: list[list[int]] = []
    step = method.train_step

    def record(batch):
        seen[-1].append(batch.index.tolist())
        return step(batch)

    method.train_step = record
    seen.append([])
    trial.run_epoch(1)
    # the step-3 weights, from a second trial stopped after 3 steps
    other = Trial(cfg)
    other.method.plan[0] = Slot(0, 1, 0, 3, 0, False)
    other.train_epoch(1)
    for key, value in other.method.model.state_dict().items():
        torch.testing.assert_close(method.rewind[key], value, rtol=0, atol=0)
    assert trial.method.epoch_batches(2) == (1, 3, None)  # level 1 starts at data epoch 1, step 3
    assert method.iteration == 3 and method.level == 1
    masks = method.engine.masks()
    for name, weight in method.weights.items():
        assert torch.equal(weight.detach(), other.method.weights[name].detach() * masks[name])
    seen.append([])
    trial.train_epoch(2)
    assert seen[1] == seen[0][3:]  # the same data order, from batch 3 on


def test_finetune_keeps_weights_and_scratch_reinitialises(tiny_cmnist_root) -> None:
    trial = Trial(_config(tiny_cmnist_root, retrain="finetune", finetune_lr=0.005))
    trial.run_epoch(1)
    trained = {n: w.detach().clone() for n, w in trial.method.weights.items()}
    trial.method.epoch_batches(2)
    masks = trial.method.engine.masks()
    for name, weight in trial.method.weights.items():
        assert torch.equal(weight.detach(), trained[name] * masks[name])
    assert trial.method.lr_at(0) == 0.005

    trial = Trial(_config(tiny_cmnist_root, retrain="scratch"))
    init = {n: w.detach().clone() for n, w in trial.method.weights.items()}
    trial.run_epoch(1)
    trained = {n: w.detach().clone() for n, w in trial.method.weights.items()}
    trial.method.epoch_batches(2)
    masks = trial.method.engine.masks()
    for name, weight in trial.method.weights.items():
        kept = masks[name]
        assert not torch.equal(weight.detach()[kept], init[name][kept])
        assert not torch.equal(weight.detach()[kept], trained[name][kept])
        assert torch.equal(weight.detach()[~kept], torch.zeros_like(weight.detach()[~kept]))


def test_extending_levels_trains_only_the_new_level(tiny_cmnist_root, tmp_path) -> None:
    folder = tmp_path / "trial"
    first = run_trial(_config(tiny_cmnist_root, levels=1), checkpoint_dir=str(folder))
    assert [r["level"] for r in first["levels"]] == [0, 1]
    before = _rows(folder)
    more = run_trial(_config(tiny_cmnist_root, levels=2), checkpoint_dir=str(folder))
    after = _rows(folder)
    assert after[:2] == before  # epoch times included: nothing was retrained
    assert [r["level"] for r in after] == [0, 1, 2]
    assert [r["level"] for r in more["levels"]] == [0, 1, 2]
    assert more["levels"][:2] == first["levels"]
    assert math.isclose(more["levels"][2]["density"], 0.64, abs_tol=1e-3)
    state = json.loads((folder / "state.json").read_text())
    assert state["state"] == "finished" and state["level"] == 2
    # asked again: the stored summary, nothing trained
    assert run_trial(_config(tiny_cmnist_root, levels=2), checkpoint_dir=str(folder)) == more
    whole = run_trial(_config(tiny_cmnist_root, levels=2), checkpoint_dir=str(tmp_path / "w"))
    strip = [{k: v for k, v in r.items() if k not in VOLATILE} for r in after]
    assert strip == [
        {k: v for k, v in r.items() if k not in VOLATILE} for r in _rows(tmp_path / "w")
    ]
    assert whole["levels"][2]["test_acc"] == more["levels"][2]["test_acc"]


@pytest.mark.parametrize("stop_at", [1, 2, 3])
def test_a_killed_level_resumes_exactly(tiny_cmnist_root, tmp_path, stop_at) -> None:
    cfg = _config(tiny_cmnist_root, epochs=2, levels=1, rewind_step=3, criterion="gradient")
    whole = run_trial(cfg, checkpoint_dir=str(tmp_path / "whole"))

    class Stop(Exception):
        pass

    def stop(row):
        if row["epoch"] == stop_at:
            raise Stop

    with pytest.raises(Stop):
        run_trial(cfg, report=stop, checkpoint_dir=str(tmp_path / "killed"))
    resumed = run_trial(cfg, checkpoint_dir=str(tmp_path / "killed"))
    strip = [
        [{k: v for k, v in r.items() if k not in VOLATILE} for r in _rows(tmp_path / name)]
        for name in ("whole", "killed")
    ]
    assert strip[0] == strip[1] and len(strip[0]) == 4  # epoch 1 of level 1 starts at step 3
    assert [r["level"] for r in strip[0]] == [0, 0, 1, 1]
    assert resumed["levels"][1]["test_acc"] == whole["levels"][1]["test_acc"]


def test_cli_rows_carry_level_and_density(tiny_cmnist_root, tmp_path) -> None:
    from rest_sweep.cli import main

    out = tmp_path / "prune"
    args = ["train", "--method", "prune", "--set", "levels=2", "--set", "retrain=lottery"]
    args += ["--data-root", str(tiny_cmnist_root), "--device", "cpu", "--epochs", "1"]
    args += ["--width", "8", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    rows = _rows(out)
    assert [r["level"] for r in rows] == [0, 1, 2]
    densities = [r["density"] for r in rows]
    assert densities[0] == 1.0 and math.isclose(densities[2], 0.64, abs_tol=1e-3)
    summary = json.loads((out / "summary.json").read_text())
    assert [lv["level"] for lv in summary["levels"]] == [0, 1, 2]
    assert {"density", "epoch", "test_acc", "valid_loss", "train_flops"} <= set(
        summary["levels"][1]
    )


def test_oneshot_prunes_the_dense_weights_straight_to_level_l(tiny_cmnist_root) -> None:
    trial = Trial(_config(tiny_cmnist_root, oneshot=True, retrain="finetune"))
    method = trial.method
    trial.run_epoch(1)
    dense = {n: w.detach().clone() for n, w in method.weights.items()}
    total = sum(w.numel() for w in dense.values())
    for epoch, level in ((2, 1), (3, 2)):
        method.epoch_batches(epoch)
        ones = {n: torch.ones_like(w, dtype=torch.bool) for n, w in dense.items()}
        expected = select({n: w.abs() for n, w in dense.items()}, ones, round(total * 0.8**level))
        masks = method.engine.masks()
        assert all(torch.equal(masks[n], expected[n]) for n in dense)
        for name, weight in method.weights.items():  # finetune: from the dense end weights
            assert torch.equal(weight.detach(), dense[name] * masks[name])
        if level == 1:
            trial.train_epoch(epoch)
