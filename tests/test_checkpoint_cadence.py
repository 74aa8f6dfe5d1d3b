"""Checkpoint cadence and volume: ``checkpoint_every``, ``keep_checkpoints``, ``final_checkpoint``.

Real (tiny) Colored Fashion-MNIST trials on the CPU: which epochs are checkpointed and kept, an
exact resume from a sparser cadence, the final-weights file (complete enough to re-evaluate the
trial), the torch-free size estimate against real files, and ``grids show``'s volume line.
"""

from __future__ import annotations

import json
import math
import os
import warnings

import pytest

import search_spaces
from rest_sweep import ledger as ledgers
from rest_sweep.cli import main as cli_main
from tests.fixtures.data import cpu_config
from trainables.checkpoint_volume import FIXED_BYTES, ROW_BYTES, network_weights, trial_volume
from trainables.config import ConfigError, TrialConfig, parse_assignments
from trainables.results import (
    CHECKPOINT_DIR,
    CHECKPOINT_ROWS,
    FINAL_WEIGHTS_FILE,
    ExperimentStore,
    TrialStore,
)
from trainables.train import run_trial

VOLATILE = {"epoch_time_s", "attempt"}
# The estimate leaves out norm layers and biases and prices RNG states as a constant: real
# files measured within 4 %; the documented promise is 10 %.
TOLERANCE = 0.10


def make_config(root, **overrides) -> TrialConfig:
    return cpu_config(root, **{"epochs": 5, **overrides})


def stable(rows):
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]


class Interrupt(RuntimeError):
    pass


# ---------------------------------------------------------------------- config and --set


def test_fields_are_validated_in_one_line_and_never_change_the_hash():
    cfg = TrialConfig.from_recipe("paper", method="rest", density=0.05)
    moved = cfg.replace(checkpoint_every=10, keep_checkpoints=1, final_checkpoint="weights")
    assert moved.trial_hash == cfg.trial_hash
    assert "checkpoint_every" not in moved.identity()
    with pytest.raises(ConfigError, match=r"^checkpoint_every: 0 is not allowed; allowed: an"):
        cfg.replace(checkpoint_every=0)
    with pytest.raises(ConfigError, match=r"^keep_checkpoints: -1 is not allowed; allowed: an"):
        cfg.replace(keep_checkpoints=-1)
    with pytest.raises(ConfigError, match=r"^final_checkpoint: 'none' .* allowed: full, weights$"):
        parse_assignments(["final_checkpoint=none"])
    assert parse_assignments(["checkpoint_every=5"]) == {"checkpoint_every": 5}


def test_set_applies_to_every_trial_and_resume_keeps_the_planned_cadence(tmp_path):
    grid = search_spaces.resolve("baselines")  # dense, sparse and two-network methods
    plain = search_spaces.expand(grid)
    sets = search_spaces.parse_overrides(["checkpoint_every=5", "final_checkpoint=weights"])
    cadenced = search_spaces.expand(grid, sets)
    assert [t.trial_hash for t in cadenced.trials] == [t.trial_hash for t in plain.trials]
    assert {(t.checkpoint_every, t.final_checkpoint) for t in cadenced.trials} == {(5, "weights")}
    assert not cadenced.set_notes()  # a core field: no trial skipped
    # The ledger keeps the planned configs, so `resume` launches them with the same cadence.
    store = ExperimentStore(str(tmp_path), "exp")
    ledgers.record_plan(store, cadenced, str(tmp_path))
    planned = ledgers.planned_configs(store.read_ledger())
    assert {(c.checkpoint_every, c.final_checkpoint) for c in planned.values()} == {(5, "weights")}
    # A later `run` of the same grid with another cadence: the same trials, the new cadence.
    ledgers.record_plan(store, plain, str(tmp_path))
    replanned = ledgers.planned_configs(store.read_ledger())
    assert list(replanned) == list(planned)
    assert {(c.checkpoint_every, c.final_checkpoint) for c in replanned.values()} == {(1, "full")}


# ---------------------------------------------------------------------- cadence and keep-last-N


@pytest.mark.parametrize(
    "every,keep,epochs,written,kept",
    [(2, 2, 5, [2, 4, 5], [4, 5]), (3, 1, 4, [3, 4], [4])],
)
def test_checkpoints_follow_the_cadence_and_keep_the_newest(
    tiny_cmnist_root, tmp_path, monkeypatch, every, keep, epochs, written, kept
):
    saved = []
    original = TrialStore.save_checkpoint

    def recording(self, epoch, state):
        saved.append((epoch, [int(r["epoch"]) for r in state[CHECKPOINT_ROWS]]))
        original(self, epoch, state)

    monkeypatch.setattr(TrialStore, "save_checkpoint", recording)
    cfg = make_config(
        tiny_cmnist_root, epochs=epochs, checkpoint_every=every, keep_checkpoints=keep
    )
    run_trial(cfg, checkpoint_dir=str(tmp_path))
    store = TrialStore(str(tmp_path))
    # Each checkpoint keeps the rows of every epoch so far, so metrics.jsonl can be rebuilt.
    assert saved == [(e, list(range(1, e + 1))) for e in written]
    assert store.checkpoint_epochs() == kept
    assert [r["epoch"] for r in store.read_metrics()] == list(range(1, epochs + 1))
    state = store.read_state()
    assert (state["state"], state["epoch"], state["checkpoint_epoch"]) == (
        "finished",
        epochs,
        epochs,
    )


def test_train_command_takes_the_cadence(tiny_cmnist_root, tmp_path, capsys):
    out = tmp_path / "t"
    args = ["train", "--data-root", str(tiny_cmnist_root), "--method", "erm", "--epochs", "3"]
    args += ["--device", "cpu", "--out", str(out), "--no-progress", "--set", "width=8"]
    args += ["--set", "checkpoint_every=2", "--keep-checkpoints", "5"]
    assert cli_main(args) == 0
    assert TrialStore(str(out)).checkpoint_epochs() == [2, 3]
    assert json.loads((out / "config.json").read_text())["checkpoint_every"] == 2


# ---------------------------------------------------------------------- exact resume


def test_resume_from_a_sparser_cadence_replays_exactly(tiny_cmnist_root, tmp_path):
    values = dict(method="rest", density=0.1, update_frequency=4, epochs=5)
    straight = run_trial(
        make_config(tiny_cmnist_root, **values), checkpoint_dir=str(tmp_path / "a")
    )
    cfg = make_config(tiny_cmnist_root, checkpoint_every=2, **values)

    def crash_after_epoch_3(row):
        if row["epoch"] == 3:
            raise Interrupt("lost the machine")

    folder = str(tmp_path / "b")
    with pytest.raises(Interrupt):
        run_trial(cfg, report=crash_after_epoch_3, checkpoint_dir=folder)
    store = TrialStore(folder)
    state = store.read_state()
    assert (state["epoch"], state["checkpoint_epoch"]) == (3, 2)
    assert store.checkpoint_epochs() == [2]
    assert [r["epoch"] for r in store.read_metrics()] == [1, 2, 3]  # row 3 has no checkpoint

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a row past the checkpoint is normal
        resumed = run_trial(cfg, checkpoint_dir=folder)
    assert store.read_state()["resumed_from_epoch"] == 2
    assert stable(store.read_metrics()) == stable(TrialStore(str(tmp_path / "a")).read_metrics())
    assert resumed["train_flops"] == straight["train_flops"]
    assert stable([resumed["selected"]]) == stable([straight["selected"]])
    assert store.checkpoint_epochs() == [4, 5]


# ---------------------------------------------------------------------- final weights


@pytest.mark.parametrize(
    "values,others",
    [
        ({"method": "rest", "density": 0.1, "update_frequency": 4}, 0),
        ({"method": "disent", "disent_allow_no_swap": True}, 1),  # 2 epochs: no swap
    ],
)
def test_final_weights_replace_the_checkpoints_and_reproduce_the_model(
    tiny_cmnist_root, tmp_path, values, others
):
    from trainables.train.trial import Trial

    cfg = make_config(tiny_cmnist_root, epochs=2, final_checkpoint="weights", **values)
    summary = run_trial(cfg, checkpoint_dir=str(tmp_path))
    store = TrialStore(str(tmp_path))
    assert not (tmp_path / CHECKPOINT_DIR).exists() and store.checkpoint_epochs() == []
    assert store.read_state()["checkpoint_epoch"] is None
    weights = store.load_final_weights()  # weights_only=True: tensors and containers only
    assert set(weights) == {
        "epoch",
        "trial_hash",
        "model",
        "masks",
        "other_networks",
        CHECKPOINT_ROWS,
    }
    assert (weights["epoch"], weights["trial_hash"]) == (2, cfg.trial_hash)
    assert len(weights["other_networks"]) == others
    if cfg.is_sparse:
        kept = sum(int(m.sum()) for m in weights["masks"].values())
        total = sum(m.numel() for m in weights["masks"].values())
        assert kept / total == pytest.approx(summary["density"], abs=1e-6)
    # Everything the prediction reads is there: a fresh trial loaded from it scores the same.
    trial = Trial(cfg)
    trial.method.model.load_state_dict(weights["model"])
    networks = [m for m in trial.method.modules() if m is not trial.method.model]
    for module, state in zip(networks, weights["other_networks"], strict=True):
        module.load_state_dict(state)
    again = trial.evaluate(trial.test, "test", epoch=2)
    assert again["test_acc"] == summary["final"]["test_acc"]
    assert again["test_loss"] == pytest.approx(summary["final"]["test_loss"], rel=1e-6)
    assert run_trial(cfg, checkpoint_dir=str(tmp_path)) == summary  # finished: nothing trained


def test_checkpoints_left_by_a_crash_after_the_summary_are_removed(tiny_cmnist_root, tmp_path):
    cfg = make_config(tiny_cmnist_root, epochs=1, final_checkpoint="weights")
    summary = run_trial(cfg, checkpoint_dir=str(tmp_path))
    store = TrialStore(str(tmp_path))
    store.save_checkpoint(1, {"epoch": 1})  # as if the removal had not happened
    assert run_trial(cfg, checkpoint_dir=str(tmp_path)) == summary
    assert store.checkpoint_epochs() == [] and store.has_final_weights()
    # The same trial finished under `full` keeps its checkpoints (no weights file to keep).
    full = tmp_path / "full"
    run_trial(cfg.replace(final_checkpoint="full"), checkpoint_dir=str(full))
    run_trial(cfg, checkpoint_dir=str(full))
    assert TrialStore(str(full)).checkpoint_epochs() == [1]


def test_extending_a_weights_only_prune_trial_trains_only_the_new_level(tiny_cmnist_root, tmp_path):
    """Each level is a stage that keeps its own final_weights.pt, all the next level starts
    from: more levels asked of a weights-only trial train only the new ones (no retraining, no
    warning), and the trial equals a whole run."""
    values = dict(method="prune", epochs=1, width=8, seed=3, final_checkpoint="weights")
    folder = tmp_path / "t"
    first = run_trial(make_config(tiny_cmnist_root, levels=1, **values), checkpoint_dir=str(folder))
    store = TrialStore(str(folder))
    rows = store.read_metrics()

    def stage_files():
        stages = folder / "stages"
        return {
            str(p.relative_to(stages)): p.read_bytes() for p in stages.rglob("*") if p.is_file()
        }

    before = stage_files()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        more = run_trial(
            make_config(tiny_cmnist_root, levels=2, **values), checkpoint_dir=str(folder)
        )
    assert store.read_metrics()[:2] == rows  # epoch times included: nothing was retrained
    after = stage_files()
    assert {k: v for k, v in after.items() if k in before} == before
    assert store.stage_names() == ["level_0000", "level_0001", "level_0002"]
    for name in store.stage_names():  # every level: its final weights, no checkpoint
        sub = store.stage(name)
        assert sub.has_final_weights() and sub.checkpoint_epochs() == []
    assert not (folder / CHECKPOINT_DIR).exists() and not store.has_final_weights()
    whole = run_trial(
        make_config(tiny_cmnist_root, levels=2, **values), checkpoint_dir=str(tmp_path / "w")
    )
    assert stable(store.read_metrics()) == stable(TrialStore(str(tmp_path / "w")).read_metrics())
    assert more["stages"][:2] == first["stages"]
    assert more["stages"] == whole["stages"]


# ---------------------------------------------------------------------- the volume estimate


@pytest.mark.parametrize(
    "values",
    [
        {"method": "erm", "width": 16},  # simple_cnn, Adam
        {"method": "lff", "width": 16},  # two networks, per-sample loss EMAs
        {"method": "erm", "width": 16, "recipe": "rest-code"},  # SGD with momentum
        # two levels (stages) of two epochs: each writes its epoch-1 checkpoint and keeps its
        # final weights; level 0 keeps the rewind point too
        {"method": "prune", "width": 16, "epochs": 2, "levels": 1},
        {
            "dataset": "cifar10c",
            "ratio": 5.0,
            "method": "rest",
            "density": 0.05,
            "width": 64,
        },  # the paper's ResNet-18 with masks and Adam
    ],
    ids=["simple_cnn-erm", "simple_cnn-lff", "simple_cnn-sgd", "simple_cnn-prune", "resnet18-rest"],
)
def test_estimate_is_within_ten_percent_of_real_files(
    tiny_cmnist_root, tiny_cifar10c_root, tmp_path, values
):
    values = dict(values)
    root = tiny_cifar10c_root if values.get("dataset") == "cifar10c" else tiny_cmnist_root
    recipe = values.pop("recipe", "paper")
    cfg = TrialConfig.from_recipe(
        recipe,
        **{"epochs": 2, "data_root": str(root), "device": "cpu", **values},
        final_checkpoint="weights",
    )
    sizes = {}

    def measure(row):  # after each checkpoint, before the trial (or its stage) removes it
        for path in tmp_path.rglob(f"{CHECKPOINT_DIR}/*.pt"):
            sizes.setdefault(str(path.relative_to(tmp_path)), os.path.getsize(path))

    summary = run_trial(cfg, report=measure, checkpoint_dir=str(tmp_path))
    volume = trial_volume(cfg, train_samples=summary["train_samples"])
    first = f"{CHECKPOINT_DIR}/{TrialStore.checkpoint_name(1)}"
    # A staged trial (prune's levels): every stage is a lifecycle of its own, in its folder.
    staged = [f"stages/level_000{n}/{first}" for n in range(cfg.levels + 1)]
    assert sorted(sizes) == (staged if cfg.method == "prune" else [first])
    assert volume.writes == len(sizes)
    assert volume.largest_checkpoint_bytes == pytest.approx(max(sizes.values()), rel=TOLERANCE)
    # What stays: the final weights (every stage's), and prune's rewind point.
    kept = sorted(tmp_path.rglob("*.pt"))
    assert {p.name for p in kept} <= {FINAL_WEIGHTS_FILE, "rewind.pt"}
    real_kept = sum(os.path.getsize(path) for path in kept)
    assert volume.kept_bytes == pytest.approx(real_kept, rel=TOLERANCE)
    assert volume.written_bytes == pytest.approx(sum(sizes.values()) + real_kept, rel=TOLERANCE)


def test_volume_follows_cadence_keep_and_final_weights():
    cfg = TrialConfig.from_recipe("paper", method="erm", epochs=10)  # simple_cnn, Adam
    weights = network_weights(cfg.model, cfg.num_classes, cfg.width, cfg.stem)
    n = 1000

    def checkpoint(epoch):  # one network and Adam's two moments, float32
        return 4 * 3 * weights + FIXED_BYTES + ROW_BYTES * epoch

    every_epoch = trial_volume(cfg, train_samples=n)
    assert every_epoch.writes == 10
    assert every_epoch.written_bytes == pytest.approx(math.fsum(map(checkpoint, range(1, 11))))
    assert every_epoch.kept_bytes == pytest.approx(checkpoint(9) + checkpoint(10))
    sparse = trial_volume(cfg.replace(checkpoint_every=4, keep_checkpoints=5), train_samples=n)
    assert sparse.writes == 3  # epochs 4, 8 and the last
    assert sparse.kept_bytes == pytest.approx(checkpoint(4) + checkpoint(8) + checkpoint(10))
    final = trial_volume(cfg.replace(checkpoint_every=4, final_checkpoint="weights"), n)
    assert final.writes == 2  # epochs 4 and 8; the last writes only the weights
    assert final.kept_bytes < 4 * weights * 1.01  # one float32 network, no optimizer state
    assert final.written_bytes == pytest.approx(checkpoint(4) + checkpoint(8) + final.kept_bytes)


def test_grids_show_prints_the_volume_next_to_the_flops(capsys):
    assert cli_main(["grids", "show", "demo", "--limit", "0"]) == 0
    text = capsys.readouterr().out.splitlines()
    flops = next(i for i, line in enumerate(text) if line.startswith("estimated training"))
    assert text[flops + 1].startswith("estimated checkpoint volume: ")
    assert "checkpoint every epoch, newest 2 kept" in text[flops + 1]

    def volume(*sets):
        args = ["grids", "show", "demo", "--json"] + [a for s in sets for a in ("--set", s)]
        assert cli_main(args) == 0
        return json.loads(capsys.readouterr().out)["checkpoint_volume"]

    demo = search_spaces.expand(search_spaces.resolve("demo"))
    plain = volume()
    assert plain["trials"] == demo.count and plain["writes"] == 3 * demo.count  # 3 epochs
    every2 = volume("checkpoint_every=2")
    assert every2["writes"] == 2 * demo.count  # epochs 2 and 3
    assert every2["kept_bytes"] == pytest.approx(plain["kept_bytes"])  # the newest 2 either way
    weights = volume("checkpoint_every=2", "final_checkpoint=weights")
    assert weights["writes"] == demo.count  # epoch 2; the last writes the weights file
    assert weights["kept_bytes"] < plain["kept_bytes"] / 2
    assert weights["cadences"] == [
        {
            "checkpoint_every": 2,
            "keep_checkpoints": 2,
            "final_checkpoint": "weights",
            "trials": demo.count,
        }
    ]
    assert cli_main(["grids", "show", "demo", "--json", "--no-cost"]) == 0
    assert json.loads(capsys.readouterr().out)["checkpoint_volume"] is None


def test_volume_counts_the_valid_images_a_trial_trains_on():
    """``train_on_valid`` trains on train + valid: per-sample state (LfF's loss EMAs) covers
    them all, as the cost estimate counts them (planned_train_samples)."""
    from trainables.datasets import DATASETS

    cfg = TrialConfig.from_recipe("paper", method="lff", dataset="cmnist", selection="last")
    info = DATASETS.get("cmnist")
    merged = info.train_samples + info.valid_samples
    assert trial_volume(cfg.replace(train_on_valid=True)) == trial_volume(cfg, merged)
    assert trial_volume(cfg) == trial_volume(cfg, info.train_samples) != trial_volume(cfg, merged)
