"""prune: step strings, exact densities per level, the retraining policies (lottery rewind of
weights and data order, finetune, scratch), the criteria on hand-made weights, extending a
finished trial by more levels, an exact resume of a killed level, and the CLI."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from trainables.config import ConfigError, TrialConfig
from trainables.errors import UserError
from trainables.methods.prune import Slot, select, target_counts
from trainables.results import TrialStore
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


def _whole_and_killed(cfg, folder, stop_at: int):
    """Run ``cfg`` uninterrupted into ``folder/whole``, and killed after epoch ``stop_at`` then
    resumed into ``folder/killed``: (whole summary, resumed summary, both runs' rows less the
    volatile columns)."""
    whole = run_trial(cfg, checkpoint_dir=str(folder / "whole"))

    class Stop(Exception):
        pass

    def stop(row):
        if row["epoch"] == stop_at:
            raise Stop

    with pytest.raises(Stop):
        run_trial(cfg, report=stop, checkpoint_dir=str(folder / "killed"))
    resumed = run_trial(cfg, checkpoint_dir=str(folder / "killed"))
    rows = [
        [{k: v for k, v in r.items() if k not in VOLATILE} for r in _rows(folder / name)]
        for name in ("whole", "killed")
    ]
    return whole, resumed, rows


@pytest.mark.parametrize("stop_at", [1, 2, 3])
def test_a_killed_level_resumes_exactly(tiny_cmnist_root, tmp_path, stop_at) -> None:
    cfg = _config(tiny_cmnist_root, epochs=2, levels=1, rewind_step=3, criterion="gradient")
    whole, resumed, strip = _whole_and_killed(cfg, tmp_path, stop_at)
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


# ---------------------------------------------------------------------- branches
REWIND = 3  # the parent's rewind point: 8 steps per epoch (2000 / 256), so mid-epoch 1


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def parent(tiny_cmnist_root, tmp_path_factory):
    """A finished 2-level lottery run rewinding to iteration 3, in ``<experiment>/trials/<hash>``
    (the branches' parent)."""
    cfg = _config(tiny_cmnist_root, levels=2, rewind_step=REWIND)
    trials = tmp_path_factory.mktemp("experiment") / "trials"
    folder = trials / cfg.trial_hash
    run_trial(cfg, checkpoint_dir=str(folder))
    return cfg, folder


def _copy_parent(parent, tmp_path):
    """The parent in an experiment folder of its own (tests that change it, or add siblings)."""
    folder = tmp_path / "trials" / parent[1].name
    shutil.copytree(parent[1], folder)
    return parent[0], folder


def _level(folder, level: int) -> dict:
    return torch.load(folder / "levels" / f"level_{level:04d}.pt", weights_only=True)


def _rewind(folder) -> dict:
    return torch.load(folder / "levels" / "rewind.pt", weights_only=True)


def _branch(root, parent, level=2, folder=None, **overrides) -> tuple[TrialConfig, Trial]:
    values = dict(branch_of=parent[0].trial_hash, branch_level=level, rewind_step=REWIND)
    cfg = _config(root, **{**values, **overrides})
    return cfg, Trial(cfg, trial_dir=str(folder or parent[1].parent / cfg.trial_hash))


def _assert_starts_at(method, weights: dict, masks: dict) -> None:
    """The network is ``weights`` (every tensor, buffers included) under ``masks``."""
    for key, value in method.model.state_dict().items():
        expected = weights[key] * masks[key] if key in masks else weights[key]
        assert torch.equal(value, expected), key


def _record(method) -> list[dict]:
    """Every training step of ``method``: its level-local iteration, lr and optimizer."""
    steps: list[dict] = []
    step = method.train_step

    def record(batch):
        steps.append(
            {
                "iteration": method.iteration,
                "batch": batch.index.tolist(),
                "dense": all(m.all() for m in method.engine.masks().values()),
                "weights": {n: w.detach().clone() for n, w in method.weights.items()},
                "optimizer": method.optimizer,
            }
        )
        out = step(batch)
        steps[-1]["lr"] = method.optimizer.param_groups[0]["lr"]
        return out

    method.train_step = record
    return steps


def test_a_prune_run_stores_every_level_mask_and_weights_and_its_rewind_point(parent) -> None:
    cfg, folder = parent
    assert sorted(p.name for p in (folder / "levels").iterdir()) == [
        "level_0000.pt",
        "level_0001.pt",
        "level_0002.pt",
        "rewind.pt",
    ]
    levels = [_level(folder, n) for n in range(3)]
    total = sum(m.numel() for m in levels[0]["masks"].values())
    for n, stored in enumerate(levels):
        masks = stored["masks"]
        assert all(m.dtype == torch.bool for m in masks.values())
        assert sum(int(m.sum()) for m in masks.values()) == round(total * 0.8**n)
        for name, mask in masks.items():  # the final weights are zero where pruned
            assert not stored["model"][name][~mask].any()
    for name, mask in levels[2]["masks"].items():  # nested
        assert not (mask & ~levels[1]["masks"][name]).any()
    # the rewind point: what the checkpoint keeps (level 0's weights after 3 steps, tested above)
    rewind = _rewind(folder)
    _, state = TrialStore(str(folder)).load_latest_checkpoint()
    assert rewind["step"] == REWIND and rewind["model"].keys() == state["prune"]["rewind"].keys()
    assert all(torch.equal(v, state["prune"]["rewind"][k]) for k, v in rewind["model"].items())


def test_a_trunk_rerun_from_scratch_rewrites_its_rewind_point(tiny_cmnist_root, parent, tmp_path):
    """A trunk re-run in a folder that kept an earlier run's rewind.pt (checkpoints and level
    files gone) stores its own rewind point with level 0: a branch never pairs its masks with
    another run's weights."""
    _, folder = _copy_parent(parent, tmp_path)
    old = _rewind(folder)
    for path in [p for p in folder.rglob("*") if p.is_file() and p.name != "rewind.pt"]:
        path.unlink()
    cfg = _config(tiny_cmnist_root, levels=0, rewind_step=REWIND, seed=4)
    run_trial(cfg, checkpoint_dir=str(folder))
    rewind = _rewind(folder)
    _, state = TrialStore(str(folder)).load_latest_checkpoint()
    assert rewind["model"].keys() == state["prune"]["rewind"].keys()
    assert all(torch.equal(v, state["prune"]["rewind"][k]) for k, v in rewind["model"].items())
    assert not all(torch.equal(v, old["model"][k]) for k, v in rewind["model"].items())


def test_branch_configs_have_one_line_checks() -> None:
    bad = {
        "branch_of": dict(branch="reinit", branch_level=1),
        "branch_level": dict(branch="reinit", branch_of="abc", branch_level=-1),
        "redense_step": dict(branch="reinit", branch_of="abc", branch_level=1, redense_step="1ep"),
        "redense_lr": dict(redense_lr=0.01),  # retired: the lr follows the schedule
        "branch": dict(branch="regrow"),
    }
    for name, values in bad.items():
        with pytest.raises(ConfigError, match=f"^{name}: "):
            TrialConfig.from_recipe("paper", method="prune", **values)
    with pytest.raises(ConfigError, match="^branch_of: "):  # set without a branch
        TrialConfig.from_recipe("paper", method="prune", branch_of="abc")
    with pytest.raises(ConfigError, match="^branch_level: "):  # set without a branch
        TrialConfig.from_recipe("paper", method="prune", branch_level=1)
    level0 = TrialConfig.from_recipe("paper", method="prune", branch="redense", branch_of="abc")
    assert level0.branch_level == 0  # level 0 (the dense trunk) is a branch point too


def test_reinit_trains_the_parents_mask_from_a_new_init_at_the_rewind_step(
    tiny_cmnist_root, parent
) -> None:
    before = _files(parent[1])
    cfg, trial = _branch(tiny_cmnist_root, parent, branch="reinit")
    method = trial.method
    stored = _level(parent[1], 2)
    parent_init = Trial(parent[0]).method.weights
    masks = method.engine.masks()
    for name, weight in method.weights.items():
        kept = stored["masks"][name]
        assert torch.equal(masks[name], kept)
        assert not weight.detach()[~kept].any()
        assert not torch.equal(weight.detach()[kept], parent_init[name].detach()[kept])
        assert not torch.equal(weight.detach()[kept], _rewind(parent[1])["model"][name][kept])
    # OpenLTH/SDD randomly_reinitialize: the LR schedule and data order start at iteration k
    assert method.plan == [Slot(2, 1, REWIND, None, REWIND, True)]
    assert method.epoch_batches(1) == (1, REWIND, None) and method.iteration == REWIND
    summary = run_trial(cfg, checkpoint_dir=str(parent[1].parent / cfg.trial_hash))
    assert [lv["level"] for lv in summary["levels"]] == [2]
    assert math.isclose(summary["levels"][0]["density"], 0.64, abs_tol=1e-3)
    assert [r["level"] for r in _rows(parent[1].parent / cfg.trial_hash)] == [2]
    assert _files(parent[1]) == before  # the parent is only read


def test_random_prune_keeps_the_per_layer_counts_from_the_rewind_weights(
    tiny_cmnist_root, parent
) -> None:
    _, trial = _branch(tiny_cmnist_root, parent, branch="random_prune")
    stored = _level(parent[1], 2)["masks"]
    masks = trial.method.engine.masks()
    assert {n: int(m.sum()) for n, m in masks.items()} == {
        n: int(m.sum()) for n, m in stored.items()
    }
    assert any(not torch.equal(masks[n], stored[n]) for n in stored)
    # OpenLTH's randomly_prune, start_at=rewind: the rewind-point weights, from iteration k
    _assert_starts_at(trial.method, _rewind(parent[1])["model"], masks)
    assert trial.method.plan == [Slot(2, 1, REWIND, None, REWIND, True)]
    _, again = _branch(tiny_cmnist_root, parent, branch="random_prune")
    assert all(torch.equal(again.method.engine.masks()[n], masks[n]) for n in masks)  # seeded


def _redense(root, parent, **overrides) -> tuple[TrialConfig, Trial]:
    """Re-dense with SGD (SDD's optimizer), 2 epochs, the masks opening at iteration 10 between
    the milestones at 5 and 12: lr 0.1, 0.01 from 5, 0.001 from 12."""
    values = dict(
        branch="redense",
        epochs=2,
        redense_step="1ep2it",
        milestones="5it,12it",
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
    )
    return _branch(root, parent, **{**values, **overrides})


def test_redense_runs_sdds_retrain_from_the_rewind_point_then_regains_at_zero(
    tiny_cmnist_root, parent
) -> None:
    cfg, trial = _redense(tiny_cmnist_root, parent)
    method = trial.method
    stored = _level(parent[1], 2)
    rewind = _rewind(parent[1])["model"]
    # the parent's rewind-point weights under the level's mask, from iteration k (SDD README 4)
    _assert_starts_at(method, rewind, stored["masks"])
    assert all(torch.equal(method.engine.masks()[n], m) for n, m in stored["masks"].items())
    steps = _record(method)
    trial.run_epoch(1)
    trial.run_epoch(2)
    assert [s["iteration"] for s in steps] == list(range(REWIND, 16))
    # the data order: the parent's level-0 order from batch k on (its epoch 1)
    reference = Trial(parent[0])
    order = _record(reference.method)
    reference.run_epoch(1)
    assert [s["batch"] for s in steps[:5]] == [s["batch"] for s in order[REWIND:]]
    # sparse until iteration 10, dense from it: the pruned weights at exactly zero there
    assert [s["dense"] for s in steps] == [s["iteration"] >= 10 for s in steps]
    first_dense = next(s for s in steps if s["dense"])
    for name, mask in stored["masks"].items():
        assert not first_dense["weights"][name][~mask].any()
        assert (method.weights[name].detach()[~mask] != 0).any()  # then they train
    assert method.density() == 1.0
    # the optimizer is kept (SDD's) and the lr follows the schedule through the regain
    assert all(s["optimizer"] is steps[0]["optimizer"] for s in steps)
    expected = [
        0.1 if s["iteration"] < 5 else 0.01 if s["iteration"] < 12 else 0.001 for s in steps
    ]
    assert [s["lr"] for s in steps] == pytest.approx(expected, rel=1e-12)
    assert method.lr_at(10) == pytest.approx(0.01)  # the schedule's, no constant


@pytest.mark.parametrize("stop_at", [1, 2])
def test_redense_resumes_across_the_regain_bit_identically(
    tiny_cmnist_root, parent, tmp_path, stop_at
) -> None:
    """Killed before (1) or after (2) the regain at iteration 12 (epoch 2), then resumed: the rows
    and final network equal an uninterrupted run's, dense after the regain (SDD's resume
    re-masks the regained weights; this one does not)."""
    parent = _copy_parent(parent, tmp_path)
    cfg = _config(
        tiny_cmnist_root,
        branch="redense",
        branch_of=parent[0].trial_hash,
        branch_level=2,
        rewind_step=REWIND,
        epochs=3,
        redense_step="1ep4it",
        milestones="5it,14it",
        optimizer="sgd",
        lr=0.1,
    )
    trials = parent[1].parent
    whole, resumed, rows = _whole_and_killed(cfg, trials, stop_at)
    assert rows[0] == rows[1] and [r["density"] for r in rows[0]][1:] == [1.0, 1.0]
    assert resumed["levels"] == whole["levels"]
    final = [TrialStore(str(trials / n)).load_latest_checkpoint()[1] for n in ("whole", "killed")]
    for key, value in final[0]["model"].items():
        assert torch.equal(value, final[1]["model"][key]), key
    assert all(m.all() for m in final[1]["engine"]["masks"].values())


def test_branch_level_0_starts_dense_from_the_rewind_point(tiny_cmnist_root, parent) -> None:
    _, trial = _redense(tiny_cmnist_root, parent, level=0, redense_step="")
    method = trial.method
    assert method.density() == 1.0 and method.redense_at == REWIND
    _assert_starts_at(method, _rewind(parent[1])["model"], {})
    trial.run_epoch(1)
    assert method.density() == 1.0


def test_a_missing_parent_level_or_rewind_point_is_one_line(
    tiny_cmnist_root, parent, tmp_path
) -> None:
    cfg = _config(tiny_cmnist_root, branch="reinit", branch_of="0123456789abcdef", branch_level=1)
    with pytest.raises(UserError, match=r"^branch_of: '0123456789abcdef' is not allowed") as e:
        Trial(cfg, trial_dir=str(parent[1].parent / cfg.trial_hash))
    assert "\n" not in str(e.value) and parent[0].trial_hash in str(e.value)
    with pytest.raises(UserError, match=r"^branch_level: 5 is not allowed.*\(0, 1, 2\)$"):
        _branch(tiny_cmnist_root, parent, level=5, branch="reinit")
    with pytest.raises(UserError, match="^redense_step: '9ep' is not allowed"):
        _branch(tiny_cmnist_root, parent, branch="redense", redense_step="9ep")
    with pytest.raises(UserError, match="^redense_step: '2it' is not allowed"):  # before k
        _branch(tiny_cmnist_root, parent, branch="redense", redense_step="2it")
    with pytest.raises(UserError, match=f"^rewind_step: 0 is not allowed; allowed: {REWIND} "):
        _branch(tiny_cmnist_root, parent, branch="reinit", rewind_step=0)
    # a parent run before rewind files: its checkpoint's rewind point, read only
    old = _copy_parent(parent, tmp_path)
    (old[1] / "levels" / "rewind.pt").unlink()
    before = _files(old[1])
    folder = old[1].parent / "branch"
    _, trial = _branch(tiny_cmnist_root, old, folder=folder, branch="random_prune")
    _assert_starts_at(trial.method, _rewind(parent[1])["model"], trial.method.engine.masks())
    assert _files(old[1]) == before
    # ... without a checkpoint either: one line naming the missing file
    shutil.rmtree(old[1] / "checkpoints")
    with pytest.raises(UserError, match=r"^branch_of: .*/levels/rewind\.pt is missing") as e:
        _branch(tiny_cmnist_root, old, folder=folder, branch="redense")
    assert "\n" not in str(e.value)
    _branch(tiny_cmnist_root, old, folder=folder, branch="reinit")  # needs no rewind weights
    # a parent that does not rewind (not a lottery trunk)
    config = json.loads((old[1] / "config.json").read_text())
    config.update(retrain="finetune", rewind_step=0)
    (old[1] / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=r"^branch_of: .* allowed: a lottery trunk"):
        _branch(tiny_cmnist_root, old, folder=folder, branch="reinit", rewind_step=0)
