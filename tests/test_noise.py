"""Label noise: documented transition matrices, seeded exact draws, config, and the trial metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainables.config import ConfigError, TrialConfig
from trainables.data.noise import (
    CIFAR10_MAP,
    MNIST_MAP,
    noisy_labels,
    transition_matrix,
)
from trainables.errors import UserError
from trainables.train import run_trial
from trainables.train.metrics import NoiseAccumulator

pytestmark = pytest.mark.usefixtures("one_thread")

NOISE_ROW_KEYS = {"train_acc_clean", "train_acc_noisy", "memorised"}


def off_diagonal(matrix: np.ndarray) -> np.ndarray:
    return matrix.sum(axis=1) - np.diag(matrix)


@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.45])
@pytest.mark.parametrize("k", [2, 10, 100])
def test_symmetric_and_pairflip_structure(fraction, k):
    sym = transition_matrix("symmetric", fraction, k)
    assert np.allclose(sym.sum(axis=1), 1) and np.allclose(off_diagonal(sym), fraction)
    others = sym[~np.eye(k, dtype=bool)]
    assert np.allclose(others, fraction / (k - 1))  # uniform over the other classes
    pair = transition_matrix("pairflip", fraction, k)
    assert np.allclose(pair.sum(axis=1), 1) and np.allclose(off_diagonal(pair), fraction)
    for c in range(k):
        if k > 1 and fraction:
            assert pair[c, (c + 1) % k] == pytest.approx(fraction)
            assert np.count_nonzero(pair[c]) == 2


def test_random_labels_matrix_can_redraw_the_true_class():
    matrix = transition_matrix("random", 0.2, 10)
    assert np.allclose(matrix.sum(axis=1), 1)
    assert np.allclose(off_diagonal(matrix), 0.2 * 9 / 10)  # SDD: 18 % wrong at f = 0.2


@pytest.mark.parametrize(
    ("dataset", "mapping"),
    [("cifar10", CIFAR10_MAP), ("cifar10c", CIFAR10_MAP), ("fashion_mnist", MNIST_MAP)],
)
def test_asymmetric_maps(dataset, mapping):
    matrix = transition_matrix("asymmetric", 0.3, 10, dataset)
    assert np.allclose(matrix.sum(axis=1), 1)
    for c in range(10):
        if c in mapping:
            assert matrix[c, c] == pytest.approx(0.7) and matrix[c, mapping[c]] == 0.3
        else:
            assert matrix[c, c] == 1.0  # untouched classes
    assert CIFAR10_MAP == {9: 1, 2: 0, 3: 5, 5: 3, 4: 7}  # truck->car, bird->plane, cat<->dog...
    assert MNIST_MAP == {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}  # Patrini et al.


def test_cifar100_asymmetric_is_cyclic_in_blocks_of_five():
    matrix = transition_matrix("asymmetric", 0.2, 100, "cifar100")
    assert np.allclose(off_diagonal(matrix), 0.2)
    assert matrix[4, 0] == pytest.approx(0.2) and matrix[0, 1] == pytest.approx(0.2)
    assert matrix[99, 95] == pytest.approx(0.2)


def test_asymmetric_without_a_map_is_an_error():
    with pytest.raises(UserError, match="no map for 'bffhq'"):
        transition_matrix("asymmetric", 0.2, 2, "bffhq")


def labels_of(n_per_class: int, k: int = 10) -> np.ndarray:
    return np.repeat(np.arange(k), n_per_class)


@pytest.mark.parametrize("kind", ["symmetric", "pairflip", "asymmetric"])
def test_realised_flip_rate_is_exact_per_class(kind):
    clean = labels_of(500)
    noisy, flipped = noisy_labels(clean, 10, kind, 0.2, seed=3, dataset="cifar10")
    assert np.array_equal(flipped, noisy != clean)
    matrix = transition_matrix(kind, 0.2, 10, "cifar10")
    for c in range(10):
        rate = flipped[clean == c].mean()
        assert rate == pytest.approx(off_diagonal(matrix)[c])
        # flipped labels land only where the matrix has mass
        targets = set(noisy[(clean == c) & flipped].tolist())
        assert all(matrix[c, t] > 0 for t in targets)


def test_symmetric_flips_are_spread_uniformly():
    clean = labels_of(2000)
    noisy, flipped = noisy_labels(clean, 10, "symmetric", 0.4, seed=0)
    counts = np.bincount(noisy[(clean == 0) & flipped], minlength=10)
    assert counts[0] == 0 and counts[1:].min() > 0.7 * counts[1:].mean()


def test_random_labels_fraction_rate():
    clean = labels_of(1000)
    noisy, flipped = noisy_labels(clean, 10, "random", 0.2, seed=1)
    assert flipped.mean() == pytest.approx(0.18, abs=0.01)


def test_same_seed_same_noise_other_seed_other_noise():
    clean = labels_of(100)
    a = noisy_labels(clean, 10, "symmetric", 0.2, seed=7)[0]
    b = noisy_labels(clean, 10, "symmetric", 0.2, seed=7)[0]
    c = noisy_labels(clean, 10, "symmetric", 0.2, seed=8)[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_no_noise_is_the_identity():
    clean = labels_of(10)
    noisy, flipped = noisy_labels(clean, 10, "none", 0.0, seed=0)
    assert np.array_equal(noisy, clean) and not flipped.any()


def test_config_defaults_keep_hashes_and_errors_name_the_field():
    base = TrialConfig.from_recipe(dataset="cmnist", method="erm")
    assert "noise_type" not in base.identity() and base.noise_fraction == 0.0
    noisy = base.replace(noise_type="symmetric", noise_fraction=0.2)
    assert noisy.trial_hash != base.trial_hash
    assert noisy.identity()["noise_fraction"] == 0.2
    for bad, match in (
        (dict(noise_type="symmetric", noise_fraction=1.0), "noise_fraction: 1.0.*\\[0, 1\\)"),
        (dict(noise_fraction=0.2), "noise_fraction: 0.2.*noise_type is none"),
        (dict(random_labels_fraction=-0.1), "random_labels_fraction: -0.1"),
        (
            dict(noise_type="pairflip", noise_fraction=0.1, random_labels_fraction=0.1),
            "random_labels_fraction.*exclusive",
        ),
        (dict(noise_type="gaussian"), "noise_type: 'gaussian'"),
    ):
        with pytest.raises(ConfigError, match=match):
            base.replace(**bad)
    with pytest.raises(ConfigError, match="noise_type: 'asymmetric'.*bffhq"):
        TrialConfig.from_recipe(
            dataset="bffhq", ratio=0.5, method="erm", noise_type="asymmetric", noise_fraction=0.2
        )


def test_noise_accumulator_definitions():
    clean = torch.tensor([0, 1, 2, 3])
    noisy = torch.tensor([0, 2, 2, 0])
    acc = NoiseAccumulator(clean, noisy != clean)
    logits = torch.nn.functional.one_hot(torch.tensor([0, 2, 2, 3]), 4).float()
    acc.update(logits, noisy, torch.arange(4))
    out = acc.compute()
    assert out["train_acc_clean"] == pytest.approx(3 / 4)  # sample 1 predicted its noisy label
    assert out["train_acc_noisy"] == pytest.approx(3 / 4)
    assert out["memorised"] == pytest.approx(1 / 2)  # of the two flipped, sample 1 memorised


def plain_config(root, **overrides) -> TrialConfig:
    values = dict(
        dataset="fashion_mnist",
        method="erm",
        model="simple_cnn",
        epochs=2,
        batch_size=128,
        data_root=str(root),
        device="cpu",
        seed=5,
        width=8,
    )
    values.update(overrides)
    return TrialConfig.from_recipe("paper", **values)


def test_trial_trains_on_noisy_labels_and_reports_noise(tiny_fmnist_root, tmp_path):
    from trainables.results import TrialStore
    from trainables.train.trial import Trial

    cfg = plain_config(tiny_fmnist_root, noise_type="symmetric", noise_fraction=0.2)
    trial = Trial(cfg)
    n = trial.train.n
    assert abs(trial.noisy_labels - 0.2 * n) <= 10  # exact per class, up to one ceil each
    assert trial.noisy_labels == int((trial.train.labels != trial.train.clean_labels).sum())
    # groups come from the clean labels; valid and test are never touched
    assert bool((trial.train.aligned == (trial.train.clean_labels == trial.train.bias)).all())
    assert trial.valid.flipped is None and trial.test.flipped is None
    assert torch.equal(trial.valid.labels, trial.valid.bias)
    assert torch.equal(trial.test.labels, trial.test.bias)
    again = Trial(cfg)
    assert torch.equal(again.train.labels, trial.train.labels)  # same seed -> same noise

    summary = run_trial(cfg, checkpoint_dir=str(tmp_path / "noisy"))
    rows = TrialStore(str(tmp_path / "noisy")).read_metrics()
    assert summary["noisy_labels"] == trial.noisy_labels > 0
    for row in rows:
        assert set(row) >= NOISE_ROW_KEYS
        assert 0 <= row["memorised"] <= 1 and 0 <= row["train_acc_clean"] <= 1
        assert row["train_acc_noisy"] == pytest.approx(row["train_acc"])


def test_rows_are_unchanged_without_noise(tiny_fmnist_root, tmp_path):
    from trainables.results import TrialStore

    cfg = plain_config(tiny_fmnist_root, epochs=1)
    summary = run_trial(cfg, checkpoint_dir=str(tmp_path / "clean"))
    (row,) = TrialStore(str(tmp_path / "clean")).read_metrics()
    assert not NOISE_ROW_KEYS & set(row)
    assert summary["noisy_labels"] == 0


def test_random_labels_trial(tiny_fmnist_root):
    from trainables.train.trial import Trial

    trial = Trial(plain_config(tiny_fmnist_root, random_labels_fraction=0.5))
    assert 0.35 * trial.train.n < trial.noisy_labels <= 0.5 * trial.train.n
    assert trial.noise_acc is not None


def test_train_cli_with_noise_on_an_unbiased_dataset(tiny_fmnist_root, tmp_path, capsys):
    import json

    from rest_sweep.cli import main as cli_main

    argv = ["train", "--method", "erm", "--dataset", "fashion_mnist", "--model", "simple_cnn"]
    argv += ["--data-root", str(tiny_fmnist_root), "--device", "cpu", "--out", str(tmp_path)]
    sets = ["noise_type=pairflip", "noise_fraction=0.2", "epochs=1", "width=8"]
    argv += [item for pair in sets for item in ("--set", pair)]
    assert cli_main([*argv, "--no-progress"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["test_worst_group_acc"] is None and 0 < line["test_unbiased_acc"] <= 1
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["noise_type"], config["noise_fraction"]) == ("pairflip", 0.2)
