"""prune as a staged run: step strings, exact densities per level, the criteria, the retraining
policies (lottery rewind of weights and data order, finetune, scratch, oneshot), extending a
finished trial by more levels, an exact resume of a killed run, the trial folder the runner
writes over the stage folders, the CLI, branches of a lottery trunk, and trunks stored before
stages (the legacy ``levels/`` layout).

A level's Trial is built the way the runner builds it: ``Trial(cfg, stage=StageStart(stage,
start))`` with ``start`` from :meth:`PrunePlan.start` on the stored earlier levels, or a start
dict made by hand where a test only needs a level's start."""

from __future__ import annotations

import json
import math
import shutil
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch

from trainables.config import ConfigError, TrialConfig
from trainables.errors import UserError
from trainables.methods.prune import (
    Prune,
    PrunePlan,
    level_name,
    select,
    stage_end,
    target_counts,
)
from trainables.results import LEGACY_LEVELS_DIR, REWIND_FILE, TrialStore, json_safe
from trainables.stages import Stage, StageStart
from trainables.steps import EpochSlice, Span, Step, parse_steps
from trainables.train import run_trial
from trainables.train.trial import Trial

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks; shared cores

VOLATILE = {"epoch_time_s", "attempt"}
STEPS_PER_EPOCH = 8  # 2000 training images / batch 256
REWIND = 3  # the lottery trunks' rewind point: mid-epoch 1


def _config(root, **overrides) -> TrialConfig:
    values = dict(
        method="prune", epochs=1, levels=2, data_root=str(root), device="cpu", width=8, seed=3
    )
    values.update(overrides)
    return TrialConfig.from_recipe("paper", **values)


def _rows(folder) -> list[dict]:
    return [json.loads(line) for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()]


def _stable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def _files(folder) -> dict[str, bytes]:
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _stage(cfg: TrialConfig, level: int) -> Stage:
    """Level ``level``'s stage of a trunk (a branch has one stage, its level)."""
    stages = PrunePlan.stages(cfg)
    return stages[0] if cfg.branch != "none" else stages[level]


def _trial(cfg: TrialConfig, level: int, start: dict[str, Any]) -> Trial:
    """Level ``level``'s Trial from a start made by hand (no folder: nothing is written)."""
    return Trial(cfg, stage=StageStart(_stage(cfg, level), start))


def _level_trial(cfg: TrialConfig, folder, level: int) -> Trial:
    """Level ``level``'s Trial as the runner starts it: from the stored earlier levels of the
    trial (or branch) folder ``folder``."""
    stage = _stage(cfg, level)
    return Trial(cfg, stage=StageStart(stage, PrunePlan.start(cfg, stage, TrialStore(str(folder)))))


def _fresh(level: int, source: dict | None = None, **more) -> dict[str, Any]:
    """A start made by hand: ``source`` pruned to the level's count, nothing else."""
    return {"level": level, "weights": None, "masks": None, "prune": source, **more}


def _level(folder, level: int) -> dict:
    """A stored level's final ``model`` and ``masks``."""
    return stage_end(TrialStore(str(folder)).stage(level_name(level)))


def _rewind(folder) -> dict:
    return torch.load(
        Path(folder) / "stages" / level_name(0) / REWIND_FILE, weights_only=True, map_location="cpu"
    )


def _trained_steps(cfg: TrialConfig, k: int) -> dict[str, torch.Tensor]:
    """Level 0's network (weights and buffers) after exactly ``k`` steps: a level-0 stage whose
    span ends at ``Step(0, k)``."""
    stage = Stage(level_name(0), {"level": 0}, Span(end=Step(0, k)))
    start = PrunePlan.start(cfg, PrunePlan.stages(cfg)[0], TrialStore("/nonexistent"))
    trial = Trial(cfg, stage=StageStart(stage, start))
    assert trial.slices == [EpochSlice(1, 0, k, 0)]
    trial.train_epoch(1)
    return {key: v.detach().clone() for key, v in trial.method.model.state_dict().items()}


def _assert_starts_at(method, weights: dict, masks: dict) -> None:
    """The network is ``weights`` (every tensor, buffers included) under ``masks``."""
    assert method.model.state_dict().keys() == weights.keys()
    for key, value in method.model.state_dict().items():
        expected = weights[key] * masks[key] if key in masks else weights[key]
        assert torch.equal(value, expected), key


def _recording(monkeypatch) -> list[tuple[int, int, list[int]]]:
    """Every training step of every Prune from now on: (level, iteration, batch indices)."""
    seen: list[tuple[int, int, list[int]]] = []
    original = Prune.train_step

    def record(self, batch):
        seen.append((self.level, self.iteration, batch.index.tolist()))
        return original(self, batch)

    monkeypatch.setattr(Prune, "train_step", record)
    return seen


class Stop(Exception):
    pass


def _killed(cfg: TrialConfig, folder, stop_at: int) -> dict:
    """Run ``cfg`` into ``folder`` killed after (trial) epoch ``stop_at``, then resumed: the
    resumed summary. The kill is recorded at the trial level too, naming the stage."""
    levels = {}

    def stop(row):
        levels[row["epoch"]] = row["level"]
        if row["epoch"] == stop_at:
            raise Stop

    with pytest.raises(Stop):
        run_trial(cfg, report=stop, checkpoint_dir=str(folder))
    state = TrialStore(str(folder)).read_state()
    assert (state["state"], state["stage"]) == ("errored", f"level {levels[stop_at]}")
    assert "Stop" in (Path(folder) / "error.txt").read_text()
    resumed = run_trial(cfg, checkpoint_dir=str(folder))
    assert TrialStore(str(folder)).read_state()["state"] == "finished"
    return resumed


# ---------------------------------------------------------------------- config and planning
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


def test_stages_are_one_per_level_with_their_spans() -> None:
    cfg = TrialConfig.from_recipe("paper", method="prune", levels=2, rewind_step=REWIND)
    stages = PrunePlan.stages(cfg)
    assert [s.name for s in stages] == ["level_0000", "level_0001", "level_0002"]
    assert [dict(s.label) for s in stages] == [{"level": 0}, {"level": 1}, {"level": 2}]
    assert [s.title for s in stages] == ["level 0", "level 1", "level 2"]
    assert [s.span for s in stages] == [Span(), Span(Step(0, REWIND)), Span(Step(0, REWIND))]
    finetune = cfg.replace(retrain="finetune", rewind_step=0, finetune_steps="5it")
    assert [s.span for s in PrunePlan.stages(finetune)] == [Span()] + 2 * [Span(end=Step(0, 5))]
    branch = cfg.replace(branch="reinit", branch_of="abc", branch_level=2)
    assert [(s.name, s.span) for s in PrunePlan.stages(branch)] == [
        ("level_0002", Span(Step(0, REWIND)))
    ]


def test_a_prune_trial_runs_only_as_stages_and_rewinding_past_its_length_is_one_line(
    tiny_cmnist_root,
) -> None:
    with pytest.raises(UserError, match="^method: 'prune' is not allowed here") as e:
        Trial(_config(tiny_cmnist_root))
    assert "\n" not in str(e.value)
    cfg = _config(tiny_cmnist_root, rewind_step=STEPS_PER_EPOCH)
    with pytest.raises(UserError, match=f"^rewind_step: {STEPS_PER_EPOCH} is not allowed") as e:
        _trial(cfg, 1, _fresh(1))
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------- levels and criteria
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_density_after_l_levels_is_exact(tiny_cmnist_root, scope) -> None:
    cfg = _config(
        tiny_cmnist_root, prune_scope=scope, levels=4, dense_first_layer=True, dense_last_layer=True
    )
    dense = _trial(cfg, 0, _fresh(0)).method
    kept_dense = [
        n for n, p in dense.model.named_parameters() if p.dim() > 1 and n not in dense.weights
    ]
    assert len(kept_dense) == 2  # the first conv and the classifier
    init = {n: w.detach().clone() for n, w in dense.model.state_dict().items()}
    numels = {n: w.numel() for n, w in dense.weights.items()}
    total = sum(numels.values())
    source = {"model": init, "masks": dense.engine.masks()}
    for level in range(1, 5):
        method = _trial(cfg, level, _fresh(level, source)).method
        counts = {n: int((w != 0).sum()) for n, w in method.weights.items()}
        assert counts == method.engine.layer_counts()
        if scope == "global":
            assert sum(counts.values()) == round(total * 0.8**level)
        else:
            assert counts == {n: max(1, round(k * 0.8**level)) for n, k in numels.items()}
        assert method.density() == sum(counts.values()) / total
        masks = method.engine.masks()
        for name, mask in masks.items():  # nested: a pruned weight stays pruned
            assert not (mask & ~source["masks"][name]).any()
        state = method.model.state_dict()
        for name in kept_dense:  # kept dense (and unmasked)
            assert torch.equal(state[name], init[name])
        source = {"model": {k: v.clone() for k, v in state.items()}, "masks": masks}


def test_each_criterion_picks_the_expected_weights(tiny_cmnist_root) -> None:
    scores = {"a": torch.tensor([3.0, -1.0, 0.5]).abs(), "b": torch.tensor([-4.0, 0.1]).abs()}
    masks = {"a": torch.tensor([True, True, True]), "b": torch.tensor([True, False])}
    kept = select(scores, masks, 2)  # global: the two largest active scores
    assert kept["a"].tolist() == [True, False, False] and kept["b"].tolist() == [True, False]
    kept = select(scores, masks, {"a": 1, "b": 1})  # per layer
    assert kept["a"].tolist() == [True, False, False] and kept["b"].tolist() == [True, False]
    assert target_counts({"a": 10, "b": 15}, 2, 0.2, "global") == 16
    # magnitude: |w|; gradient: |w * dL/dw| on the first batch of the level's draw; random: seeded
    cfg = _config(tiny_cmnist_root, criterion="gradient")
    method = _trial(cfg, 0, _fresh(0)).method
    name, weight = next(iter(method.weights.items()))
    with torch.no_grad():
        weight.copy_(torch.linspace(-1, 1, weight.numel()).view(weight.shape))
    source = {k: v.detach().clone() for k, v in method.model.state_dict().items()}

    def gradient(level: int) -> dict[str, torch.Tensor]:
        ref = _trial(cfg, 0, _fresh(0)).method
        ref.model.load_state_dict(source)
        batch = next(iter(ref.ctx.train.batches(256, epoch=-level, seed=3, shuffle=True)))
        torch.nn.functional.cross_entropy(ref.model(batch.x), batch.y).backward()
        params = dict(ref.model.named_parameters())
        return {n: (source[n] * params[n].grad).abs() for n in method.weights}

    expected = gradient(1)
    torch.testing.assert_close(method.scores(1)[name], expected[name])
    assert not torch.equal(gradient(2)[name], expected[name])  # level 2 draws another batch
    # a gradient level's mask is chosen by exactly those scores, on its source's weights
    ones = {n: torch.ones_like(w, dtype=torch.bool) for n, w in method.weights.items()}
    level1 = _trial(cfg, 1, _fresh(1, {"model": source, "masks": ones})).method
    count = round(sum(m.numel() for m in ones.values()) * 0.8)
    chosen = select(expected, ones, count)
    assert all(torch.equal(level1.engine.masks()[n], chosen[n]) for n in ones)
    by_magnitude = select({n: source[n].abs() for n in ones}, ones, count)
    assert any(not torch.equal(by_magnitude[n], chosen[n]) for n in ones)
    method.cfg = method.cfg.replace(criterion="magnitude")
    assert torch.equal(method.scores(1)[name], weight.detach().abs())
    method.cfg = method.cfg.replace(criterion="random")
    first, again = method.scores(1)[name], method.scores(1)[name]
    assert torch.equal(first, again) and not torch.equal(first, method.scores(2)[name])


# ---------------------------------------------------------------------- the parent trunk
class Parent(NamedTuple):
    cfg: TrialConfig
    folder: Path  # <experiment>/trials/<hash>
    summary: dict
    steps: list[tuple[int, int, list[int]]]  # every training step: (level, iteration, batch)
    states: list[dict]  # the trial folder's state.json at every reported row


@pytest.fixture(scope="module")
def parent(tiny_cmnist_root, tmp_path_factory) -> Parent:
    """A finished 2-level lottery trunk rewinding to iteration 3, in ``<experiment>/trials/<hash>``
    (the branches' parent), with every training step and the trial's state at every row."""
    cfg = _config(tiny_cmnist_root, levels=2, rewind_step=REWIND)
    folder = tmp_path_factory.mktemp("experiment") / "trials" / cfg.trial_hash
    states: list[dict] = []

    def report(row):
        states.append({"row": row, **TrialStore(str(folder)).read_state()})

    with pytest.MonkeyPatch.context() as patch:
        steps = _recording(patch)
        summary = run_trial(cfg, report=report, checkpoint_dir=str(folder))
    return Parent(cfg, folder, summary, steps, states)


def _copy_parent(parent: Parent, tmp_path) -> Parent:
    """The parent in an experiment folder of its own (tests that change it, or add siblings)."""
    folder = tmp_path / "trials" / parent.folder.name
    shutil.copytree(parent.folder, folder)
    return parent._replace(folder=folder)


def test_the_trial_folder_holds_every_stage_with_epochs_and_flops_across_stages(parent) -> None:
    folder, summary = parent.folder, parent.summary
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "metrics.jsonl",
        "stages",
        "state.json",
        "summary.json",
    ]
    store = TrialStore(str(folder))
    assert store.stage_names() == ["level_0000", "level_0001", "level_0002"]
    subs = [store.stage(level_name(n)) for n in range(3)]
    sub_summaries = [s.read_summary() for s in subs]
    rows = _rows(folder)
    assert [(r["epoch"], r["level"]) for r in rows] == [(1, 0), (2, 1), (3, 2)]
    flops = 0.0
    for level, (sub, sub_summary) in enumerate(zip(subs, sub_summaries, strict=True)):
        (local,) = sub.read_metrics()  # stage-local epochs, no label column
        assert local["epoch"] == 1 and "level" not in local
        # the trial's config; every stage but the last keeps only its final weights
        stored = json.loads((folder / "config.json").read_text())
        if level < 2:
            stored["final_checkpoint"] = "weights"
        assert json.loads(sub.loc.read_bytes("config.json")) == stored
        assert sub.has_final_weights() == (level < 2) and bool(sub.checkpoint_epochs()) == (
            level == 2
        )
        expected = {**local, "epoch": level + 1, "level": level}
        expected["train_flops"] = flops + local["train_flops"]
        assert rows[level] == expected
        flops += sub_summary["train_flops"]
        assert sub.read_state()["state"] == "finished"
    assert [r["train_flops"] for r in rows] == sorted(r["train_flops"] for r in rows)
    # the summary: the last stage's, with the totals and one result per stage
    assert summary == store.read_summary()
    assert summary["epochs"] == 3 and summary["final"] == rows[-1]
    assert summary["train_flops"] == rows[-1]["train_flops"] == flops
    assert summary["dense_train_flops"] == sum(s["dense_train_flops"] for s in sub_summaries)
    assert summary["wall_time_s"] == pytest.approx(sum(s["wall_time_s"] for s in sub_summaries))
    assert summary["density"] == sub_summaries[2]["density"]
    assert math.isclose(summary["density"], 0.64, abs_tol=1e-3)
    assert "levels" not in summary
    results = summary["stages"]
    assert [(r["stage"], r["level"], r["epoch"]) for r in results] == [
        ("level_0000", 0, 1),
        ("level_0001", 1, 2),
        ("level_0002", 2, 3),
    ]
    for result, row, sub_summary in zip(results, rows, sub_summaries, strict=True):
        assert {"density", "train_loss", "train_acc", "valid_loss", "test_acc"} <= set(result)
        assert result["density"] == sub_summary["density"] == row["density"]
        assert result["train_flops"] == row["train_flops"]
        assert result["test_acc"] == row["test_acc"]
    # the state: epochs across stages and the stage's title, while running and finished
    assert [(s["state"], s["epoch"], s["epochs"], s["stage"]) for s in parent.states] == [
        ("running", 1, 3, "level 0"),
        ("running", 2, 3, "level 1"),
        ("running", 3, 3, "level 2"),
    ]
    assert [json_safe(s["row"]) for s in parent.states] == rows  # Tune reports the same rows
    state = store.read_state()
    assert (state["state"], state["epoch"], state["epochs"], state["stage"]) == (
        "finished",
        3,
        3,
        "level 2",
    )


def test_a_prune_run_stores_every_level_mask_and_weights_and_its_rewind_point(parent) -> None:
    folder = parent.folder
    assert [p.name for p in sorted((folder / "stages").glob("*/rewind.pt"))] == ["rewind.pt"]
    assert (folder / "stages" / "level_0000" / "rewind.pt").is_file()
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
    rewind = _rewind(folder)
    assert rewind["step"] == REWIND and rewind["model"].keys() == levels[0]["model"].keys()
    assert not all(torch.equal(v, levels[0]["model"][k]) for k, v in rewind["model"].items())


def test_a_trunk_rerun_from_scratch_rewrites_its_rewind_point(
    tiny_cmnist_root, parent, tmp_path
) -> None:
    """A trunk re-run in a folder that kept an earlier run's rewind.pt (everything else gone)
    stores its own rewind point with level 0: a branch never pairs its masks with another
    run's weights."""
    folder = _copy_parent(parent, tmp_path).folder
    old = _rewind(folder)["model"]
    for path in [p for p in folder.rglob("*") if p.is_file() and p.name != REWIND_FILE]:
        path.unlink()
    cfg = _config(tiny_cmnist_root, levels=0, rewind_step=REWIND, seed=4)
    run_trial(cfg, checkpoint_dir=str(folder))
    rewind = _rewind(folder)
    assert rewind["step"] == REWIND
    expected = _trained_steps(cfg, REWIND)
    assert rewind["model"].keys() == expected.keys()
    assert all(torch.equal(v, expected[k]) for k, v in rewind["model"].items())
    assert not all(torch.equal(v, old[k]) for k, v in rewind["model"].items())


def test_lottery_rewinds_weights_and_data_order_to_step_k(parent) -> None:
    cfg, folder = parent.cfg, parent.folder
    # the rewind point is level 0's network after exactly k steps (buffers included)
    rewind = _rewind(folder)["model"]
    trained = _trained_steps(cfg, REWIND)
    assert rewind.keys() == trained.keys()
    for key, value in trained.items():
        assert torch.equal(rewind[key], value), key
    # every level >= 1 trains the batches of data epoch 1 from batch k on, at iterations k..
    by_level = defaultdict(list)
    for level, iteration, batch in parent.steps:
        by_level[level].append((iteration, batch))
    assert [i for i, _ in by_level[0]] == list(range(STEPS_PER_EPOCH))
    assert by_level[1] == by_level[0][REWIND:] and by_level[2] == by_level[0][REWIND:]
    # level 1's start: data epoch 1 from batch k, the rewind weights under the level's mask
    trial = _level_trial(cfg, folder, 1)
    assert trial.slices == [EpochSlice(1, REWIND, None, REWIND)] and trial.total_epochs == 1
    method = trial.method
    assert method.iteration == method.first_iteration == REWIND and method.level == 1
    masks = method.engine.masks()
    assert all(torch.equal(masks[n], m) for n, m in _level(folder, 1)["masks"].items())
    _assert_starts_at(method, rewind, masks)
    assert method.rewind is None  # only level 0 keeps a rewind point


def test_finetune_keeps_weights_and_its_constant_lr(tiny_cmnist_root, tmp_path) -> None:
    cfg = _config(tiny_cmnist_root, retrain="finetune", finetune_lr=0.005, levels=1)
    run_trial(cfg.replace(levels=0), checkpoint_dir=str(tmp_path))
    trained = _level(tmp_path, 0)["model"]
    trial = _level_trial(cfg, tmp_path, 1)
    method = trial.method
    _assert_starts_at(method, trained, method.engine.masks())
    assert method.density() < 1.0
    assert method.lr_at(0) == method.lr_at(10_000) == 0.005
    assert _level_trial(cfg, tmp_path, 0).method.lr_at(0) == cfg.lr  # level 0: the schedule
    lrs = []
    step = method.train_step

    def record(batch):
        out = step(batch)
        lrs.append(method.optimizer.param_groups[0]["lr"])
        return out

    method.train_step = record
    trial.train_epoch(1)
    assert lrs == [0.005] * STEPS_PER_EPOCH
    # finetune_steps: levels >= 1 train that long from the start of the data order
    short = cfg.replace(finetune_steps="5it")
    assert _level_trial(short, tmp_path, 1).slices == [EpochSlice(1, 0, 5, 0)]


def test_scratch_reinitialises(tiny_cmnist_root, tmp_path) -> None:
    cfg = _config(tiny_cmnist_root, retrain="scratch", levels=1)
    run_trial(cfg.replace(levels=0), checkpoint_dir=str(tmp_path))
    init = {n: w.detach().clone() for n, w in _level_trial(cfg, tmp_path, 0).method.weights.items()}
    trained = _level(tmp_path, 0)["model"]
    method = _level_trial(cfg, tmp_path, 1).method
    masks = method.engine.masks()
    assert method.density() < 1.0
    for name, weight in method.weights.items():
        kept = masks[name]
        assert not torch.equal(weight.detach()[kept], init[name][kept])
        assert not torch.equal(weight.detach()[kept], trained[name][kept])
        assert not weight.detach()[~kept].any()


def test_oneshot_prunes_the_dense_weights_straight_to_level_l(tiny_cmnist_root, tmp_path) -> None:
    cfg = _config(tiny_cmnist_root, oneshot=True, retrain="finetune")
    run_trial(cfg.replace(levels=0), checkpoint_dir=str(tmp_path))
    dense = _level(tmp_path, 0)["model"]
    # level 2 starts with level 1 never trained: it reads level 0 only
    for level in (1, 2):
        method = _level_trial(cfg, tmp_path, level).method
        names = list(method.weights)
        ones = {n: torch.ones_like(dense[n], dtype=torch.bool) for n in names}
        total = sum(m.numel() for m in ones.values())
        scores = {n: dense[n].abs() for n in names}
        expected = select(scores, ones, round(total * 0.8**level))
        masks = method.engine.masks()
        assert all(torch.equal(masks[n], expected[n]) for n in names)
        _assert_starts_at(method, dense, masks)  # finetune: from the dense end weights
    assert not (tmp_path / "stages" / "level_0001").exists()


# ---------------------------------------------------------------------- extending and resuming
def test_extending_levels_trains_only_the_new_level(tiny_cmnist_root, parent, tmp_path) -> None:
    cfg = parent.cfg  # levels=2; the same trial with levels=1 first
    folder = tmp_path / "trial"
    first = run_trial(cfg.replace(levels=1), checkpoint_dir=str(folder))
    assert [r["level"] for r in first["stages"]] == [0, 1]
    before = _rows(folder)
    old = {n: _files(folder / "stages" / level_name(n)) for n in (0, 1)}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        more = run_trial(cfg, checkpoint_dir=str(folder))
    after = _rows(folder)
    assert after[:2] == before  # epoch times included: nothing was retrained
    assert {n: _files(folder / "stages" / level_name(n)) for n in (0, 1)} == old
    assert [r["level"] for r in after] == [0, 1, 2]
    assert [r["level"] for r in more["stages"]] == [0, 1, 2]
    assert more["stages"][:2] == first["stages"]
    assert math.isclose(more["stages"][2]["density"], 0.64, abs_tol=1e-3)
    state = json.loads((folder / "state.json").read_text())
    assert (state["state"], state["epoch"], state["stage"]) == ("finished", 3, "level 2")
    # asked again: the stored summary, nothing trained
    assert run_trial(cfg, checkpoint_dir=str(folder)) == more
    assert _rows(folder) == after
    # asked for fewer levels than it holds: the stored summary too
    assert run_trial(cfg.replace(levels=1), checkpoint_dir=str(folder)) == more
    # the same as the whole run (the parent: this config trained in one go)
    assert _stable(after) == _stable(_rows(parent.folder))
    assert more["stages"] == parent.summary["stages"]
    assert more["train_flops"] == parent.summary["train_flops"]


@pytest.fixture(scope="module")
def gradient_trunk(tiny_cmnist_root, tmp_path_factory):
    """An uninterrupted 2-epoch, 1-level gradient-criterion trunk rewinding mid-epoch: level 1
    trains data epoch 1 from batch 3, then data epoch 2 (4 rows)."""
    cfg = _config(tiny_cmnist_root, epochs=2, levels=1, rewind_step=REWIND, criterion="gradient")
    folder = tmp_path_factory.mktemp("gradient") / "whole"
    return cfg, folder, run_trial(cfg, checkpoint_dir=str(folder))


@pytest.mark.parametrize("stop_at", [1, 2, 3])
def test_a_killed_run_resumes_exactly(gradient_trunk, tmp_path, stop_at) -> None:
    """Killed within level 0 (1), at its end before its summary (2), within level 1 (3)."""
    cfg, whole_folder, whole = gradient_trunk
    resumed = _killed(cfg, tmp_path, stop_at)
    rows = _stable(_rows(tmp_path))
    assert rows == _stable(_rows(whole_folder)) and len(rows) == 4
    assert [r["level"] for r in rows] == [0, 0, 1, 1]
    assert resumed["stages"] == whole["stages"]
    assert resumed["train_flops"] == whole["train_flops"]
    assert _stable([resumed["selected"]]) == _stable([whole["selected"]])
    for level in (0, 1):
        final = [_level(f, level) for f in (whole_folder, tmp_path)]
        for key, value in final[0]["model"].items():
            assert torch.equal(value, final[1]["model"][key]), key
    for key, value in _rewind(whole_folder)["model"].items():
        assert torch.equal(value, _rewind(tmp_path)["model"][key]), key


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
    assert [lv["level"] for lv in summary["stages"]] == [0, 1, 2]
    assert {"stage", "density", "epoch", "test_acc", "valid_loss", "train_flops"} <= set(
        summary["stages"][1]
    )


# ---------------------------------------------------------------------- branches
def _branch_start(cfg: TrialConfig, folder) -> dict[str, Any]:
    return PrunePlan.start(cfg, PrunePlan.stages(cfg)[0], TrialStore(str(folder)))


def _branch(root, parent: Parent, level=2, folder=None, **overrides) -> tuple[TrialConfig, Trial]:
    """A branch of ``parent``'s level ``level`` (in the folder beside it unless ``folder``) and
    its stage's Trial, started as the runner starts it."""
    values = dict(branch_of=parent.cfg.trial_hash, branch_level=level, rewind_step=REWIND)
    cfg = _config(root, **{**values, **overrides})
    return cfg, _level_trial(cfg, folder or parent.folder.parent / cfg.trial_hash, level)


def _record(method) -> list[dict]:
    """Every training step of ``method``: its iteration, lr and optimizer."""
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
    before = _files(parent.folder)
    cfg, trial = _branch(tiny_cmnist_root, parent, branch="reinit")
    method = trial.method
    stored = _level(parent.folder, 2)
    parent_init = _trial(parent.cfg, 0, _fresh(0)).method.weights
    rewind = _rewind(parent.folder)["model"]
    masks = method.engine.masks()
    for name, weight in method.weights.items():
        kept = stored["masks"][name]
        assert torch.equal(masks[name], kept)
        assert not weight.detach()[~kept].any()
        assert not torch.equal(weight.detach()[kept], parent_init[name].detach()[kept])
        assert not torch.equal(weight.detach()[kept], rewind[name][kept])
    # OpenLTH/SDD randomly_reinitialize: the LR schedule and data order start at iteration k
    assert trial.slices == [EpochSlice(1, REWIND, None, REWIND)]
    assert method.iteration == REWIND and method.level == 2
    folder = parent.folder.parent / cfg.trial_hash
    summary = run_trial(cfg, checkpoint_dir=str(folder))
    assert [r["level"] for r in summary["stages"]] == [2]
    assert [r["stage"] for r in summary["stages"]] == ["level_0002"]
    assert math.isclose(summary["stages"][0]["density"], 0.64, abs_tol=1e-3)
    assert [r["level"] for r in _rows(folder)] == [2]
    assert TrialStore(str(folder)).stage_names() == ["level_0002"]
    assert not (folder / "stages" / "level_0002" / REWIND_FILE).exists()
    assert _files(parent.folder) == before  # the parent is only read


def test_random_prune_keeps_the_per_layer_counts_from_the_rewind_weights(
    tiny_cmnist_root, parent
) -> None:
    _, trial = _branch(tiny_cmnist_root, parent, branch="random_prune")
    stored = _level(parent.folder, 2)["masks"]
    masks = trial.method.engine.masks()
    assert {n: int(m.sum()) for n, m in masks.items()} == {
        n: int(m.sum()) for n, m in stored.items()
    }
    assert any(not torch.equal(masks[n], stored[n]) for n in stored)
    # OpenLTH's randomly_prune, start_at=rewind: the rewind-point weights, from iteration k
    _assert_starts_at(trial.method, _rewind(parent.folder)["model"], masks)
    assert trial.slices == [EpochSlice(1, REWIND, None, REWIND)]
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
    _, trial = _redense(tiny_cmnist_root, parent)
    method = trial.method
    stored = _level(parent.folder, 2)
    rewind = _rewind(parent.folder)["model"]
    # the parent's rewind-point weights under the level's mask, from iteration k (SDD README 4)
    _assert_starts_at(method, rewind, stored["masks"])
    assert all(torch.equal(method.engine.masks()[n], m) for n, m in stored["masks"].items())
    assert method.redense_at == 10
    assert trial.slices == [EpochSlice(1, REWIND, None, REWIND), EpochSlice(2, 0, None, 8)]
    steps = _record(method)
    trial.run_epoch(1)
    trial.run_epoch(2)
    assert [s["iteration"] for s in steps] == list(range(REWIND, 16))
    # the data order: the parent's level-0 order from batch k on (its epoch 1)
    level0 = [batch for level, _, batch in parent.steps if level == 0]
    assert [s["batch"] for s in steps[:5]] == level0[REWIND:]
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


@pytest.fixture(scope="module")
def redense_whole(tiny_cmnist_root, parent, tmp_path_factory):
    """A 3-epoch re-dense branch regaining at iteration 12 (epoch 2), run uninterrupted beside
    a copy of the parent."""
    copy = _copy_parent(parent, tmp_path_factory.mktemp("redense"))
    cfg = _config(
        tiny_cmnist_root,
        branch="redense",
        branch_of=parent.cfg.trial_hash,
        branch_level=2,
        rewind_step=REWIND,
        epochs=3,
        redense_step="1ep4it",
        milestones="5it,14it",
        optimizer="sgd",
        lr=0.1,
    )
    trials = copy.folder.parent
    return cfg, trials, run_trial(cfg, checkpoint_dir=str(trials / "whole"))


@pytest.mark.parametrize("stop_at", [1, 2])
def test_redense_resumes_across_the_regain_bit_identically(redense_whole, stop_at) -> None:
    """Killed before (1) or after (2) the regain at iteration 12 (epoch 2), then resumed: the rows
    and final network equal an uninterrupted run's, dense after the regain (SDD's resume
    re-masks the regained weights; this one does not)."""
    cfg, trials, whole = redense_whole
    resumed = _killed(cfg, trials / f"killed-{stop_at}", stop_at)
    rows = [_stable(_rows(trials / n)) for n in ("whole", f"killed-{stop_at}")]
    assert rows[0] == rows[1] and [r["density"] for r in rows[0]][1:] == [1.0, 1.0]
    assert [r["level"] for r in rows[0]] == [2, 2, 2]
    assert resumed["stages"] == whole["stages"]
    final = [_level(trials / n, 2) for n in ("whole", f"killed-{stop_at}")]
    for key, value in final[0]["model"].items():
        assert torch.equal(value, final[1]["model"][key]), key
    assert all(m.all() for m in final[1]["masks"].values())


def test_branch_level_0_starts_dense_from_the_rewind_point(tiny_cmnist_root, parent) -> None:
    _, trial = _redense(tiny_cmnist_root, parent, level=0, redense_step="")
    method = trial.method
    assert method.density() == 1.0 and method.redense_at == REWIND
    _assert_starts_at(method, _rewind(parent.folder)["model"], {})
    trial.run_epoch(1)
    assert method.density() == 1.0


def test_a_stage_that_fails_before_training_is_recorded_in_the_trial_folder(
    tiny_cmnist_root, parent
) -> None:
    """A failure outside a stage's lifecycle (here: the branch's start, its parent missing) is
    recorded where status and the failure recorder look, as any trial's error is."""
    cfg = _config(tiny_cmnist_root, branch="reinit", branch_of="0123456789abcdef", branch_level=1)
    folder = parent.folder.parent / cfg.trial_hash
    with pytest.raises(UserError, match=r"^branch_of: '0123456789abcdef' is not allowed"):
        run_trial(cfg, checkpoint_dir=str(folder))
    state = json.loads((folder / "state.json").read_text())
    assert state["state"] == "errored"
    assert state["error"].startswith("UserError: branch_of: '0123456789abcdef' is not allowed")
    assert "branch_of" in (folder / "error.txt").read_text()
    shutil.rmtree(folder)


def test_a_missing_parent_level_or_rewind_point_is_one_line(
    tiny_cmnist_root, parent, tmp_path
) -> None:
    cfg = _config(tiny_cmnist_root, branch="reinit", branch_of="0123456789abcdef", branch_level=1)
    with pytest.raises(UserError, match=r"^branch_of: '0123456789abcdef' is not allowed") as e:
        _branch_start(cfg, parent.folder.parent / cfg.trial_hash)
    assert "\n" not in str(e.value) and parent.cfg.trial_hash in str(e.value)
    with pytest.raises(UserError, match=r"^branch_level: 5 is not allowed.*\(0, 1, 2\)$"):
        _branch(tiny_cmnist_root, parent, level=5, branch="reinit")
    with pytest.raises(UserError, match="^redense_step: '9ep' is not allowed"):
        _branch(tiny_cmnist_root, parent, branch="redense", redense_step="9ep")
    with pytest.raises(UserError, match="^redense_step: '2it' is not allowed"):  # before k
        _branch(tiny_cmnist_root, parent, branch="redense", redense_step="2it")
    with pytest.raises(UserError, match=f"^rewind_step: 0 is not allowed; allowed: {REWIND} "):
        _branch(tiny_cmnist_root, parent, branch="reinit", rewind_step=0)
    # a trunk level whose previous level or rewind point is not stored
    old = _copy_parent(parent, tmp_path)
    (old.folder / "stages" / level_name(0) / REWIND_FILE).unlink()
    store = TrialStore(str(old.folder))
    with pytest.raises(UserError, match=r"^rewind_step: 3 is not allowed; .*rewind\.pt is miss"):
        PrunePlan.start(old.cfg, PrunePlan.stages(old.cfg)[1], store)
    four = old.cfg.replace(levels=4)
    with pytest.raises(UserError, match=r"^levels: .*level_0003 is not allowed; allowed: a fini"):
        PrunePlan.start(four, PrunePlan.stages(four)[4], store)
    # a parent level not finished (its stage in progress): not a branch point
    (old.folder / "stages" / level_name(2) / "summary.json").rename(old.folder / "summary.bak")
    with pytest.raises(UserError, match=r"^branch_level: 2 is not allowed.*\(0, 1\)$"):
        _branch(tiny_cmnist_root, old, branch="reinit")
    (old.folder / "summary.bak").rename(old.folder / "stages" / level_name(2) / "summary.json")
    # a parent without its rewind point (and no legacy checkpoint holding it): one line naming
    # the missing file
    folder = old.folder.parent / "branch"
    before = _files(old.folder)
    with pytest.raises(UserError, match=r"^branch_of: .*/level_0000/rewind\.pt is missing") as e:
        _branch(tiny_cmnist_root, old, folder=folder, branch="redense")
    assert "\n" not in str(e.value)
    _branch(tiny_cmnist_root, old, folder=folder, branch="reinit")  # needs no rewind weights
    assert _files(old.folder) == before  # only read
    # a parent that does not rewind (not a lottery trunk)
    config = json.loads((old.folder / "config.json").read_text())
    config.update(retrain="finetune", rewind_step=0)
    (old.folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=r"^branch_of: .* allowed: a lottery trunk"):
        _branch(tiny_cmnist_root, old, folder=folder, branch="reinit", rewind_step=0)


# ---------------------------------------------------------------------- trunks stored before stages
def _legacy(parent: Parent, tmp_path, rewind: bool = True, checkpoint: bool = True) -> Path:
    """``parent`` as a trunk stored before stages: every level in one folder, its final masks
    and weights in ``levels/level_NNNN.pt``, the rewind point in ``levels/rewind.pt``, rows
    numbered across levels with a ``level`` column, a summary listing ``levels``, and the last
    level's checkpoint at the top (holding the rewind point, as checkpoints did then)."""
    folder = tmp_path / "trials" / parent.folder.name
    folder.mkdir(parents=True)
    new, old = TrialStore(str(parent.folder)), TrialStore(str(folder))
    levels = TrialStore(str(folder / LEGACY_LEVELS_DIR))
    for level in range(parent.cfg.levels + 1):
        levels.save_tensors(f"{level_name(level)}.pt", _level(parent.folder, level))
    point = _rewind(parent.folder)
    if rewind:
        levels.save_tensors(REWIND_FILE, point)
    for name in ("config.json", "metrics.jsonl"):
        shutil.copy(parent.folder / name, folder / name)
    summary = new.read_summary()
    summary["levels"] = [
        {k: v for k, v in r.items() if k != "stage"} for r in summary.pop("stages")
    ]
    old.write_summary(summary)
    old.write_state("finished", epoch=3, epochs=3, level=2)
    if checkpoint:
        last = new.stage(level_name(2)).load_latest_checkpoint()[1]
        last["prune"] = {"level": 2, "rewind": point["model"]}
        old.save_checkpoint(3, last)
    assert not (folder / "stages").exists()
    return folder


def test_a_branch_reads_a_trunk_stored_before_stages(tiny_cmnist_root, parent, tmp_path) -> None:
    legacy = _legacy(parent, tmp_path)
    before = _files(legacy)
    for branch in ("reinit", "random_prune", "redense"):
        values = dict(branch=branch, branch_of=parent.cfg.trial_hash, branch_level=2)
        cfg = _config(tiny_cmnist_root, rewind_step=REWIND, **values)
        starts = [_branch_start(cfg, f.parent / "branch") for f in (legacy, parent.folder)]
        assert starts[0].keys() == starts[1].keys()
        for key in ("masks", "weights"):
            if starts[1][key] is None:
                assert starts[0][key] is None
                continue
            assert starts[0][key].keys() == starts[1][key].keys()
            assert all(torch.equal(v, starts[1][key][k]) for k, v in starts[0][key].items())
    level0 = _config(
        tiny_cmnist_root, rewind_step=REWIND, branch="redense", branch_of=parent.cfg.trial_hash
    )
    start = _branch_start(level0, legacy.parent / "branch")
    assert all(m.all() for m in start["masks"].values())
    assert _files(legacy) == before  # only read
    assert not (legacy.parent / "branch").exists()
    # without levels/rewind.pt: the rewind point its newest checkpoint holds, read only
    (legacy / LEGACY_LEVELS_DIR / REWIND_FILE).unlink()
    before = _files(legacy)
    _, trial = _branch(tiny_cmnist_root, parent._replace(folder=legacy), branch="random_prune")
    _assert_starts_at(trial.method, _rewind(parent.folder)["model"], trial.method.engine.masks())
    assert _files(legacy) == before
    # ... without a checkpoint either: one line naming the missing file
    shutil.rmtree(legacy / "checkpoints")
    with pytest.raises(UserError, match=r"^branch_of: .*rewind\.pt is missing") as e:
        _branch(tiny_cmnist_root, parent._replace(folder=legacy), branch="redense")
    assert "\n" not in str(e.value)
    _branch(tiny_cmnist_root, parent._replace(folder=legacy), branch="reinit")
    with pytest.raises(UserError, match=r"^branch_level: 3 is not allowed.*\(0, 1, 2\)$"):
        _branch(tiny_cmnist_root, parent._replace(folder=legacy), level=3, branch="reinit")


def test_extending_a_trunk_stored_before_stages_adopts_it_into_stages(parent, tmp_path) -> None:
    legacy = _legacy(parent, tmp_path / "legacy")
    legacy_rows = _rows(legacy)
    stored = json.loads((legacy / "summary.json").read_text())
    # asked for the levels it holds: its summary, nothing converted or trained
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert run_trial(parent.cfg, checkpoint_dir=str(legacy)) == stored
    assert not (legacy / "stages").exists()
    # one more level: the stored levels become stage folders, and only level 3 trains
    cfg = parent.cfg.replace(levels=3)
    with pytest.warns(RuntimeWarning, match=r"stored before stages; levels \[0, 1, 2\] became"):
        more = run_trial(cfg, checkpoint_dir=str(legacy))
    store = TrialStore(str(legacy))
    assert store.stage_names() == [level_name(n) for n in range(4)]
    assert store.checkpoint_epochs() == []  # the old top-level checkpoints are gone
    for level in range(3):
        sub = store.stage(level_name(level))
        assert sub.read_summary()["adopted_from"] == LEGACY_LEVELS_DIR
        assert sub.read_state()["state"] == "finished"
        (row,) = sub.read_metrics()
        assert row["epoch"] == 1 and "level" not in row
        kept = sub.load_final_weights()
        original = _level(parent.folder, level)
        for part in ("model", "masks"):
            assert all(torch.equal(v, original[part][k]) for k, v in kept[part].items())
    adopted = store.stage(level_name(0)).load_tensors(REWIND_FILE)
    assert adopted["step"] == REWIND
    assert all(
        torch.equal(v, _rewind(parent.folder)["model"][k]) for k, v in adopted["model"].items()
    )
    rows = _rows(legacy)
    assert rows[:3] == legacy_rows  # the stored rows, epoch times included
    assert [(r["epoch"], r["level"]) for r in rows] == [(1, 0), (2, 1), (3, 2), (4, 3)]
    # level 3 is what extending the trunk stored with stages trains
    extended = _copy_parent(parent, tmp_path / "new")
    new = run_trial(cfg, checkpoint_dir=str(extended.folder))
    assert _stable(rows) == _stable(_rows(extended.folder))
    assert more["stages"] == new["stages"]
    assert more["train_flops"] == new["train_flops"]
    state = store.read_state()
    assert (state["state"], state["epoch"], state["stage"]) == ("finished", 4, "level 3")
    # one stored before stages and killed during level 3: the finished levels are adopted and
    # level 3 restarts from its start (its old row and the top-level checkpoint are dropped)
    killed = _legacy(parent, tmp_path / "killed")
    (killed / "summary.json").unlink()
    TrialStore(str(killed)).write_state("interrupted", epoch=4, epochs=4, level=3)
    stale = {**legacy_rows[-1], "epoch": 4, "level": 3, "test_acc": -1.0}
    with (killed / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(stale) + "\n")
    with pytest.warns(RuntimeWarning, match=r"levels \[0, 1, 2\] .* level in progress restarts"):
        resumed = run_trial(cfg, checkpoint_dir=str(killed))
    assert not (killed / "checkpoints").exists()
    assert _stable(_rows(killed)) == _stable(rows)
    assert resumed["stages"] == more["stages"]


def test_adopting_a_trunk_stored_before_rewind_files_keeps_its_rewind_point(
    parent, tmp_path
) -> None:
    """A trunk stored before rewind files kept its rewind point only in its checkpoints
    (``state["prune"]["rewind"]``, which branches still read): adopting it into stages keeps
    that point as level 0's rewind.pt before the top-level checkpoints go, so its next lottery
    level (and every later branch) still starts from it."""
    legacy = _legacy(parent, tmp_path, rewind=False, checkpoint=True)
    with pytest.warns(RuntimeWarning, match="stored before stages"):
        more = run_trial(parent.cfg.replace(levels=3), checkpoint_dir=str(legacy))
    assert [r["level"] for r in more["stages"]] == [0, 1, 2, 3]
    adopted = _rewind(legacy)
    assert adopted["step"] == REWIND
    expected = _rewind(parent.folder)["model"]
    assert all(torch.equal(v, expected[k]) for k, v in adopted["model"].items())


def test_adopting_a_killed_trunk_stored_before_stages_gives_a_complete_summary(
    parent, tmp_path
) -> None:
    """A trunk stored before stages with every asked level stored but no summary (killed after
    its last level file, or asked for fewer levels than it was training): adopting it trains
    nothing, and the trial's summary still has a finished trial's keys."""
    legacy = _legacy(parent, tmp_path)
    (legacy / "summary.json").unlink()
    with pytest.warns(RuntimeWarning, match="stored before stages"):
        summary = run_trial(parent.cfg, checkpoint_dir=str(legacy))
    assert [r["level"] for r in summary["stages"]] == [0, 1, 2]
    assert _stable(_rows(legacy)) == _stable(_rows(parent.folder))
    expected = {k: v for k, v in parent.summary.items() if k not in VOLATILE}
    # (train_samples, FLOPs and wall times of the levels were never stored for such a trunk)
    for key in ("trial_hash", "status", "nonzero_params", "total_params"):
        assert summary.get(key) == expected[key], key
