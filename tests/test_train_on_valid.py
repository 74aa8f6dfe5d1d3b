"""``train_on_valid``: a trial trains on train + valid (SDD's whole training set), the label
noise is drawn over all of it, the config refuses what would rank epochs on trained-on images,
the default keeps every hash, and a killed trial resumes exactly."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.fixtures.data import cpu_config
from trainables.config import ConfigError, TrialConfig
from trainables.data import load_splits
from trainables.data.noise import noisy_labels
from trainables.train import run_trial
from trainables.train.trial import Trial

pytestmark = pytest.mark.usefixtures("one_thread")

VOLATILE = {"epoch_time_s", "attempt"}


def _config(root, **overrides) -> TrialConfig:
    values = dict(dataset="fashion_mnist", model="mlp", batch_size=128, seed=5)
    values.update(overrides)
    return cpu_config(root, **values)


def test_trains_on_train_and_valid_with_noise_over_both(tiny_fmnist_root) -> None:
    splits = load_splits(tiny_fmnist_root, "fashion_mnist", 1.0)
    n_train, n_valid = len(splits["train"]), len(splits["valid"])
    cfg = _config(tiny_fmnist_root, train_on_valid=True, random_labels_fraction=0.2)
    trial = Trial(cfg)
    assert trial.train.n == n_train + n_valid == 1200
    assert trial.train.ids == [*splits["train"].ids, *splits["valid"].ids]
    assert trial.steps_per_epoch == math.ceil((n_train + n_valid) / 128)
    merged = torch.cat([splits["train"].labels, splits["valid"].labels])
    assert torch.equal(trial.train.clean_labels, merged)
    # one draw over the union (ceil(0.2 N) of all N samples), not one per split
    expected, _ = noisy_labels(merged.numpy(), 10, "random", 0.2, cfg.seed, cfg.dataset)
    assert torch.equal(trial.train.labels, torch.from_numpy(expected))
    assert trial.train.flipped is not None and bool(trial.train.flipped[n_train:].any())
    assert trial.noisy_labels == int(trial.train.flipped.sum())
    # the valid split is still evaluated, on its clean labels
    assert trial.valid.n == n_valid and trial.valid.flipped is None
    assert torch.equal(trial.valid.labels, splits["valid"].labels)
    plain = Trial(_config(tiny_fmnist_root, random_labels_fraction=0.2))
    assert plain.train.n == n_train


def test_config_default_keeps_hashes_and_refuses_ranking_on_trained_images() -> None:
    base = TrialConfig.from_recipe("paper")
    assert "train_on_valid" not in base.identity()
    with pytest.raises(ConfigError, match="^selection: 'best-valid' is not allowed; allowed: last"):
        base.replace(train_on_valid=True)  # cmnist ranks epochs on valid by default
    last = base.replace(selection="last")
    assert last.replace(train_on_valid=True).trial_hash != last.trial_hash
    with pytest.raises(ConfigError, match="^train_on_valid: True is not allowed; allowed: false"):
        TrialConfig.from_recipe("paper", method="dfr", train_on_valid=True, selection="last")


def test_a_killed_trial_resumes_exactly(tiny_fmnist_root, tmp_path) -> None:
    cfg = _config(
        tiny_fmnist_root,
        method="prune",
        epochs=2,
        levels=1,
        rewind_step=3,
        train_on_valid=True,
        random_labels_fraction=0.2,
    )
    whole = run_trial(cfg, checkpoint_dir=str(tmp_path / "whole"))

    class Stop(Exception):
        pass

    def stop(row):
        if row["epoch"] == 3:  # inside level 1
            raise Stop

    with pytest.raises(Stop):
        run_trial(cfg, report=stop, checkpoint_dir=str(tmp_path / "killed"))
    resumed = run_trial(cfg, checkpoint_dir=str(tmp_path / "killed"))
    rows = [
        [
            {k: v for k, v in json.loads(line).items() if k not in VOLATILE}
            for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        ]
        for name in ("whole", "killed")
    ]
    assert rows[0] == rows[1] and len(rows[0]) == 4
    assert resumed["train_samples"] == whole["train_samples"] == 1200
    assert resumed["noisy_labels"] == whole["noisy_labels"] > 0
