"""The SDD grids run the seed's protocol.

The expected values are written here from the sources, never read back from
``search_spaces/sdd.py``: the seed's README commands (``README`` below, "Exemplary Runs", cited
by line), the OpenLTH/SDD defaults those commands rely on (``--default_hparams``), as the
reference ``../shared/reference/sdd_openlth.md`` reads them (cited by section), and SDD's code
(he-zh/sparse-double-descent at f9bbdcc, cited by file and line).
"""

from __future__ import annotations

import json

import pytest

from search_spaces import GRIDS, expand

README = "../shared/seeds/sparse_double_descent_README.md"

# Every CIFAR-10 command of the README (lines 56-72, 90-94) with the cifar_pytorch_resnet_18
# defaults (reference §1.10; SDD models/cifar_pytorch_resnet.py:118-152).
CIFAR10_RECIPE = {
    "dataset": "cifar10",  # README:56 --dataset_name=cifar10
    "model": "resnet18",  # --default_hparams=cifar_pytorch_resnet_18 (reference §1.9)
    "stem": "cifar",  # 3x3 stem, no max-pool (reference §1.9)
    # model_init=kaiming_normal, batchnorm_init=uniform (reference §1.9-1.10; SDD
    # models/cifar_pytorch_resnet.py:122-123)
    "init": "openlth",
    "normalisation": "sdd",  # ImageNet mean/std (reference §1.9; SDD datasets/cifar10.py:54)
    "optimizer": "sgd",  # reference §1.10
    "lr": 0.1,  # README:56 --lr=0.1
    "momentum": 0.9,  # reference §1.10
    "weight_decay": 1e-4,  # reference §1.10 (the README sets none)
    "batch_size": 128,  # reference §1.10
    "epochs": 160,  # README:56 --training_steps=160ep
    "milestones": "80,120",  # README:56 --milestone_steps=80ep,120ep
    "gamma": 0.1,  # README:56 --gamma=0.1
    "levels": 30,  # README:56 --levels=30
    "prune_fraction": 0.2,  # reference §1.10 (magnitude, global, 0.2)
    "criterion": "magnitude",
    "prune_scope": "global",
    "dense_first_layer": False,  # reference §1.4: cifar_pytorch_resnet ignores no layer
    "dense_last_layer": False,
    "train_on_valid": True,  # reference §1.9: all 50k training images, no validation split
    "selection": "last",  # no validation split to select on; show_result's last epoch (§1.11)
}
RANDOM_LABELS = {"random_labels_fraction": 0.2, "noise_type": "none", "noise_fraction": 0.0}
REWIND = 1000  # every lottery command: --rewinding_steps=1000it (README:56,72,76,90,94)

# SDD's mnist_mlp_300_100 defaults (reference §1.10; SDD models/mnist_mlp.py:70-102). The
# README has no MNIST command: levels and noise are the CIFAR-10 commands' (README:56).
MNIST_RECIPE = {
    "dataset": "mnist",
    "model": "mlp",  # LeNet-300-100
    "init": "openlth",  # kaiming_normal + uniform BN (reference §1.10; SDD models/mnist_mlp.py:74-75)
    "normalisation": "sdd",  # mean 0.1307, std 0.3081 (SDD datasets/mnist.py:41)
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.0,  # "no momentum" (reference §1.10)
    "weight_decay": 0.0,  # "none"
    "batch_size": 128,
    "epochs": 160,  # SDD's mnist_mlp (OpenLTH's lenet: 40ep)
    "milestones": "",  # constant lr
    "levels": 30,
    "prune_fraction": 0.2,
    "criterion": "magnitude",
    "prune_scope": "global",
    "dense_first_layer": False,  # ignores fc.weight only
    "dense_last_layer": True,
    "finetune_lr": 0.1,  # the mnist_mlp fine-tuning lr
    "finetune_steps": "",  # 160ep = epochs
    "train_on_valid": True,  # all 60k (SDD datasets/mnist.py:19)
    "selection": "last",
    **RANDOM_LABELS,
}


def _trials(name: str) -> list:
    trials = expand(GRIDS.get(name)).trials
    assert trials and {t.method for t in trials} == {"prune"}
    return list(trials)


def _assert_recipe(trials: list, recipe: dict) -> None:
    for t in trials:
        got = {k: getattr(t, k) for k in recipe}
        assert got == recipe, f"{t.trial_hash} ({t.retrain}, {t.criterion}, {t.noise_type})"


def test_sdd_retrain_cifar10_runs_readme_1() -> None:
    trials = _trials("sdd-retrain-cifar10")
    _assert_recipe(trials, {**CIFAR10_RECIPE, **RANDOM_LABELS})
    assert {t.retrain for t in trials} == {"lottery", "lr_rewind", "finetune", "scratch"}
    # only lottery rewinds (README:56); the other commands pass no --rewinding_steps
    assert {t.retrain: t.rewind_step for t in trials} == {
        "lottery": REWIND,
        "lr_rewind": 0,
        "finetune": 0,
        "scratch": 0,
    }
    finetune = next(t for t in trials if t.retrain == "finetune")
    # README:60 --finetune_lr=0.001 --finetune_training_steps=160ep ('' is the 160 epochs)
    assert finetune.finetune_lr == 0.001 and finetune.finetune_steps in ("", "160ep")
    assert all(not t.oneshot and t.branch == "none" for t in trials)


def test_sdd_criteria_and_oneshot_cifar10_rewind_the_lottery_to_1000() -> None:
    criteria = _trials("sdd-criteria-cifar10")
    recipe = {k: v for k, v in CIFAR10_RECIPE.items() if k != "criterion"}  # the axis
    _assert_recipe(criteria, {**recipe, **RANDOM_LABELS, "retrain": "lottery"})
    assert {t.criterion for t in criteria} == {"magnitude", "gradient", "random"}  # README:70
    assert {t.rewind_step for t in criteria} == {REWIND}  # README:72
    assert {t.gradient_batches for t in criteria} == {1}  # one batch (reference §1.4)
    oneshot = _trials("sdd-oneshot-cifar10")
    _assert_recipe(oneshot, {**CIFAR10_RECIPE, **RANDOM_LABELS, "retrain": "lottery"})
    assert [(t.oneshot, t.rewind_step) for t in oneshot] == [(True, REWIND)]  # README:100


def test_sdd_noise_cifar10_uses_the_noisy_labels_flags_of_readme_3() -> None:
    trials = _trials("sdd-noise-cifar10")
    # README:76 --noisy_labels_type=... --noisy_labels_fraction=0.2 and no random labels
    _assert_recipe(
        trials,
        {
            **CIFAR10_RECIPE,
            "retrain": "lottery",
            "rewind_step": REWIND,
            "noise_fraction": 0.2,
            "random_labels_fraction": 0.0,
        },
    )
    # README:74 (asymmetric/pairflip) and "Overview" (symmetric, asymmetric, pair-flip)
    assert {t.noise_type for t in trials} == {"symmetric", "asymmetric", "pairflip"}


def test_sdd_reinit_branches_share_the_cifar10_recipe() -> None:
    # README:90-94: the lottery trunk and its randomly_reinitialize branch, same flags
    trials = _trials("sdd-reinit-cifar10")
    _assert_recipe(trials, {**CIFAR10_RECIPE, **RANDOM_LABELS})


def test_sdd_retrain_mnist_runs_the_mnist_mlp_defaults() -> None:
    trials = _trials("sdd-retrain-mnist")
    _assert_recipe(trials, MNIST_RECIPE)
    assert {t.retrain for t in trials} == {"lottery", "lr_rewind", "finetune", "scratch"}
    # the mnist_mlp defaults set no rewinding_steps: lottery rewinds to the initialisation
    assert {t.rewind_step for t in trials} == {0}


def test_every_sdd_seed_grid_runs_the_seeds_init_and_normalisation() -> None:
    # every family initialises with kaiming_normal + uniform BN (reference §1.10, "All
    # families"); SDD normalises CIFAR-10/100 with ImageNet's statistics and MNIST with its own
    # (reference §1.9; SDD datasets/cifar10.py:54, cifar100.py:55, mnist.py:41)
    seed_grids = [name for name in GRIDS.names() if name.startswith("sdd-") and name != "sdd-demo"]
    assert {"sdd-retrain-cifar10", "sdd-lottery-cifar100", "sdd-retrain-mnist"} <= set(seed_grids)
    for name in seed_grids:
        trials = _trials(name)
        assert {(t.init, t.normalisation) for t in trials} == {("openlth", "sdd")}, name
        assert {t.dataset for t in trials} <= {"cifar10", "cifar100", "mnist"}
    # sdd-demo is a demo: the defaults (Fashion-MNIST has no SDD statistics)
    demo = _trials("sdd-demo")
    assert {(t.init, t.normalisation) for t in demo} == {("constructor", "dataset")}


def test_grids_show_json_shows_the_seed_values(capsys: pytest.CaptureFixture[str]) -> None:
    from rest_sweep.cli import main

    assert main(["grids", "show", "sdd-retrain-cifar10", "--json", "--no-cost"]) == 0
    rows = json.loads(capsys.readouterr().out)["trials"]
    assert len(rows) == 4
    for row in rows:
        assert row["weight_decay"] == 0.0001
        assert row["dense_first_layer"] is False and row["dense_last_layer"] is False
        assert row["train_on_valid"] is True and row["random_labels_fraction"] == 0.2
        assert row["rewind_step"] == (REWIND if row["retrain"] == "lottery" else 0)
