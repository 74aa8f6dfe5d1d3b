"""The dataset registry is the one place for dataset facts: every reader agrees with it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trainables.datasets import AUGMENT_PRESETS, CIFAR_MEAN, CIFAR_STD, DATASETS


def test_entries_are_consistent():
    assert DATASETS.names() == [
        "cmnist",
        "cifar10c",
        "bffhq",
        "mnist",
        "fashion_mnist",
        "cifar10",
        "cifar100",
    ]
    for name in DATASETS:
        info = DATASETS.get(name)
        assert info.name == name
        assert info.native_size in info.stored_sizes
        assert set(info.trained_sizes) == set(AUGMENT_PRESETS)
        assert info.trained_size("none") == info.native_size
        assert set(info.crop_flip_presets) <= set(AUGMENT_PRESETS) - {"none"}
        assert set(info.paper_ratios) == set(info.paper_upweights)
        assert info.paper_metric in ("unbiased", "conflicting")
    assert DATASETS.get("cmnist").normalisation is None
    assert DATASETS.get("cifar10c").normalisation == (CIFAR_MEAN, CIFAR_STD)
    assert DATASETS.get("bffhq").normalisation == (CIFAR_MEAN, CIFAR_STD)  # as DisEnt and REST


def test_planning_modules_read_the_registry_without_torch():
    code = (
        "import sys\n"
        "import analysis.cells, analysis.tables, search_spaces.catalog\n"
        "import rest_sweep.commands.data, trainables.data.layout, trainables.data.verify\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_analysis_names_and_paper_metric_come_from_the_registry():
    from analysis.cells import MetricChoice
    from analysis.tables import DATASET_NAMES

    for name in DATASETS:
        info = DATASETS.get(name)
        assert DATASET_NAMES[name] == info.display_name
        assert MetricChoice("paper").metric_for(name) == info.paper_metric
    assert MetricChoice("paper").metric_for("other") == "unbiased"
    assert MetricChoice("worst-group").metric_for("bffhq") == "worst-group"


def test_paper_grids_use_the_registry_ratios_and_names():
    from search_spaces import GRIDS, expand

    for name in DATASETS:
        info = DATASETS.get(name)
        if not info.biased:  # plain datasets (pruning family) have no paper grid
            assert f"paper-table2-{name}" not in GRIDS
            continue
        for table in ("table2", "table3"):
            grid = GRIDS.get(f"paper-{table}-{name}")
            assert info.title in grid.description
            assert {t.ratio for t in expand(grid).trials} == set(info.paper_ratios)


def test_data_command_offers_the_registry_datasets():
    import argparse

    from rest_sweep.commands import data

    parser = argparse.ArgumentParser()
    data.register(parser.add_subparsers())
    for name in DATASETS:
        args = parser.parse_args(["data", "verify", "--data-root", "x", "--dataset", name])
        assert args.dataset == name
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "verify", "--data-root", "x", "--dataset", "svhn"])
    args = parser.parse_args(["data", "make", "cmnist", "--source", "s", "--out", "o"])
    assert args.ratios == DATASETS.get("cmnist").paper_ratios


@pytest.mark.parametrize("dataset", DATASETS.names())
def test_transform_facts_come_from_the_registry(dataset):
    from trainables.data import make_transform

    info = DATASETS.get(dataset)
    for preset in AUGMENT_PRESETS:
        train = make_transform(preset, dataset, train=True)
        assert train.output_size == info.trained_size(preset)
        assert train.augments is (preset in info.crop_flip_presets)
        assert (train.mean, train.std) == (info.normalisation or (None, None))
