"""Plain (unbiased) datasets: Fashion-MNIST, CIFAR-10 and CIFAR-100 in the DisEnt layout."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from rest_sweep.cli import main as cli_main
from trainables.config import ConfigError, TrialConfig
from trainables.data import load_splits
from trainables.data.make_plain import make_plain
from trainables.data.sources import (
    CIFAR_TEST,
    CIFAR_TRAIN,
    read_cifar100,
    read_cifar_batches,
    write_cifar_batches,
)
from trainables.data.verify import verify_bundle
from trainables.datasets import DATASETS, UNBIASED_RATIO
from trainables.errors import DataError


def synthetic(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    return images, np.arange(n) % classes


def write_cifar100(directory: Path, train, test) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, (images, labels) in (("train", train), ("test", test)):
        blob = {
            b"data": images.transpose(0, 3, 1, 2).reshape(len(images), 3072),
            b"fine_labels": labels.tolist(),
            b"coarse_labels": (labels // 5).tolist(),
        }
        (directory / name).write_bytes(pickle.dumps(blob, protocol=4))


def check_plain_bundle(root: Path, dataset: str, n_train: int, n_valid: int, n_test: int):
    report = verify_bundle(root, dataset, write_manifest=False)
    assert report.ok and not report.warnings, (report.errors, report.warnings)
    splits = load_splits(root, dataset, UNBIASED_RATIO, cache_dir=str(root / "cache"))
    sizes = {name: len(split) for name, split in splits.items()}
    assert sizes == {"train": n_train, "valid": n_valid, "test": n_test}
    for split in splits.values():
        assert bool((split.labels == split.bias).all())  # every sample aligned
    assert (root / dataset / "1pct" / "align").is_dir()
    assert not (root / dataset / "1pct" / "conflict").exists()
    return splits


def test_registry_entries():
    for name, classes, size in (
        ("fashion_mnist", 10, 28),
        ("cifar10", 10, 32),
        ("cifar100", 100, 32),
    ):
        info = DATASETS.get(name)
        assert not info.biased and info.num_classes == classes and info.native_size == size
    assert all(DATASETS.get(name).biased for name in ("cmnist", "cifar10c", "bffhq"))


def test_cifar10_from_synthetic_batches(tmp_path):
    train, test = synthetic(120, 10, 0), synthetic(40, 10, 1)
    write_cifar_batches(tmp_path / "src", train, test)
    images, labels = read_cifar_batches(tmp_path / "src", "train")
    assert np.array_equal(images, train[0]) and np.array_equal(labels, train[1])
    make_plain("cifar10", tmp_path / "src", tmp_path / "root", valid_size=20)
    splits = check_plain_bundle(tmp_path / "root", "cifar10", 100, 20, 40)
    assert tuple(splits["train"].images.shape[1:]) == (3, 32, 32)


def test_cifar100_from_synthetic_files(tmp_path):
    train, test = synthetic(500, 100, 0), synthetic(100, 100, 1)
    write_cifar100(tmp_path / "src", train, test)
    images, labels = read_cifar100(tmp_path / "src", "test")
    assert np.array_equal(images, test[0]) and np.array_equal(labels, test[1])
    make_plain("cifar100", tmp_path / "src", tmp_path / "root", valid_size=100, seed=2)
    splits = check_plain_bundle(tmp_path / "root", "cifar100", 400, 100, 100)
    assert int(splits["test"].labels.max()) == 99


def test_missing_cifar_files_are_one_line_errors_naming_them(tmp_path):
    with pytest.raises(DataError) as error:
        make_plain("cifar10", tmp_path, tmp_path / "out")
    message = str(error.value)
    assert "\n" not in message and "data_batch_1" in message
    assert all(name in message for name in CIFAR_TRAIN + CIFAR_TEST)
    with pytest.raises(DataError, match=r"^source: .*train not found; .*train, test") as error:
        make_plain("cifar100", tmp_path, tmp_path / "out")
    assert "\n" not in str(error.value)


def test_fashion_mnist_end_to_end_through_the_cli(fmnist_subset_dir, tmp_path, capsys):
    argv = ["data", "make", "fashion_mnist", "--source", str(fmnist_subset_dir)]
    argv += ["--out", str(tmp_path), "--limit", "600", "--valid-size", "100"]
    assert cli_main([*argv, "--test-size", "300"]) == 0
    assert "ok: wrote" in capsys.readouterr().out
    splits = check_plain_bundle(tmp_path, "fashion_mnist", 600, 100, 300)
    train = splits["train"]
    assert tuple(train.images.shape[1:]) == (3, 28, 28)
    assert bool((train.images[:, 0] == train.images[:, 2]).all())  # gray as three equal channels
    assert set(train.labels.tolist()) == set(range(10))


def test_unbiased_config_rules():
    cfg = TrialConfig.from_recipe(dataset="fashion_mnist", method="erm")
    assert cfg.selection == "last" and cfg.ratio == UNBIASED_RATIO and cfg.model == "mlp"
    with pytest.raises(ConfigError, match="ratio: 5.0.*fashion_mnist is unbiased"):
        cfg.replace(ratio=5.0)
    with pytest.raises(ConfigError, match="selection: 'best-valid'.*last"):
        cfg.replace(selection="best-valid")
    # biased datasets keep their recipe and hashes
    assert TrialConfig.from_recipe(dataset="cmnist", method="erm").selection == "best-valid"
