"""The Sparse Double Descent grids: iterative pruning under label noise (method ``prune``).

They run the exemplary runs of the second seed (``sparse_double_descent_README.md``, "Exemplary
Runs") over the OpenLTH/SDD defaults those commands rely on (``--default_hparams``; reference
``sdd_openlth.md`` §1.10): a CIFAR-10 ResNet-18 (CIFAR stem) trained 160 epochs per level on all
50,000 training images (``train_on_valid``: SDD has no validation split) with SGD (lr 0.1,
momentum 0.9, weight decay 1e-4, batch 128, lr x 0.1 at epochs 80 and 120), 20 % random labels
(``random_labels_fraction``: redrawn uniformly over all 10 classes, so about 18 % wrong), 30
levels of 20 % global magnitude pruning over every conv and linear weight (the seed's ResNet
ignores no layer), lottery rewinding to iteration 1000. The grids vary one thing each: the
retraining policy, the criterion, the noise type (then ``noise_type``/``noise_fraction`` 0.2
instead of random labels), or one-shot pruning. ``sdd-retrain-mnist`` is the retraining study on
the seed's MNIST recipe (LeNet-300-100, SGD 0.1 without momentum, constant lr, 160 epochs, the
classifier kept dense). Every fixed value carries its source; docs/methods.md (prune, "What the
SDD grids run") has the table. ``sdd-demo`` is a demo, not a seed grid: the study on
Fashion-MNIST with the LeNet-300-100 MLP, small enough for a CPU (8 levels of 2 epochs).

The branch grids (re-dense training, README 4; random re-initialisation and random pruning,
README 5) read the stored levels and rewind point of a lottery run: ``sdd-redense-cifar10`` and
``sdd-reinit-cifar10`` those of ``sdd-retrain-cifar10``'s, ``sdd-redense-cifar100`` those of
``sdd-lottery-cifar100`` (README 4's CIFAR-100 trunk, 40 % random labels). A branch names its
parent by trial hash, computed when the grid is expanded (:class:`LotteryParent`) from the
parent's values here and the same recipe and ``--set`` overrides, less the branch-only keys; so
the parent grid run with the same ``--set`` is the parent the branches read (with ``--set
epochs=E`` on a re-dense grid, set ``redense_step`` too: its 160ep lies inside 320 epochs only).
Run the parent grid first (into the same experiment); a branch whose parent level is not stored
yet errors with a one-line message and runs again on ``resume``.
Other branches: ``--set branch=... --set branch_of=<hash> --set branch_level=L``
(docs/methods.md, prune, "Level files and branches").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from search_spaces.grid import Block, Derived, Grid
from trainables.methods.prune import BranchParams

SEEDS = (41,)
# Sources, cited by line: the seed's README (../shared/seeds/sparse_double_descent_README.md,
# "Exemplary Runs"), SDD = he-zh/sparse-double-descent at f9bbdcc, OpenLTH =
# facebookresearch/open_lth at 2ce732f; the reference is ../shared/reference/sdd_openlth.md.
#
# The seed's CIFAR-10 recipe: the README's commands over SDD's cifar_pytorch_resnet_18 defaults
# (SDD models/cifar_pytorch_resnet.py:118-152; reference §1.10, §1.11).
CIFAR_FIXED = {
    "dataset": "cifar10",  # README:56 --dataset_name=cifar10 (the defaults say cifar100)
    "model": "resnet18",  # README:56 --default_hparams=cifar_pytorch_resnet_18
    "stem": "cifar",  # 3x3 stride-1 stem, no max-pool (SDD models/cifar_pytorch_resnet.py:24-27)
    # model_init='kaiming_normal', batchnorm_init='uniform' (SDD models/cifar_pytorch_resnet.py:
    # 122-123, applied over the constructor's init at :73; models/initializers.py:16-18,
    # models/bn_initializers.py:9-12; reference §1.9).
    "init": "openlth",
    # Normalize with ImageNet's mean/std (SDD datasets/cifar10.py:54, datasets/cifar100.py:55).
    "normalisation": "sdd",
    # RandomHorizontalFlip + RandomCrop(32, 4) on train only (SDD datasets/cifar10.py:43).
    "augment": "disent",
    "optimizer": "sgd",  # SDD models/cifar_pytorch_resnet.py:132
    "lr": 0.1,  # README:56 --lr=0.1
    "momentum": 0.9,  # SDD models/cifar_pytorch_resnet.py:133
    "weight_decay": 1e-4,  # SDD models/cifar_pytorch_resnet.py:137 (no README command sets it)
    "batch_size": 128,  # SDD models/cifar_pytorch_resnet.py:128
    "epochs": 160,  # README:56 --training_steps=160ep (per level)
    # OpenLTH ran PyTorch's default numerics: TF32 convolutions on Ampere and newer GPUs. Not
    # the ResNet default (bf16, verified on REST only): the noisy-label memorisation behind the
    # double descent is not known to survive bf16 (docs/performance.md, "Precision").
    "precision": "tf32",
    "milestones": "80,120",  # README:56 --milestone_steps=80ep,120ep
    "gamma": 0.1,  # README:56 --gamma=0.1
    "levels": 30,  # README:56 --levels=30
    "prune_fraction": 0.2,  # SDD models/cifar_pytorch_resnet.py:143
    "criterion": "magnitude",  # SDD models/cifar_pytorch_resnet.py:142
    "prune_scope": "global",  # SDD models/cifar_pytorch_resnet.py:144
    # cifar_pytorch_resnet sets no pruning_layers_to_ignore (SDD models/cifar_pytorch_resnet.py:
    # 141-145; reference §1.4): the first conv and the classifier are pruned like the rest.
    "dense_first_layer": False,
    "dense_last_layer": False,
    # README:56,60,64,68,72,90 --random_labels_fraction=0.2: 20 % of the labels redrawn over
    # all classes (reference §1.5). The noise grid replaces it by noise_type/noise_fraction.
    "random_labels_fraction": 0.2,
    # Every lottery command rewinds to iteration 1000 (README:56,72,76,81,90
    # --rewinding_steps=1000it; 2 epochs 218 iterations at 391 steps per epoch). Lottery's
    # alone: the other policies get 0 (_retrain_blocks).
    "rewind_step": 1000,
    "finetune_lr": 0.001,  # README:60 --finetune_lr=0.001 (finetune_steps '': 160ep, README:60)
    # SDD trains on the whole 50,000-image training set (SDD datasets/cifar10.py:33; no
    # validation split, reference §1.9): our bundle's 45,000 train + 5,000 valid.
    "train_on_valid": True,
    # The last epoch of each level (SDD show_result.py:69 "last test acc"; nothing to select on).
    "selection": "last",
}
# The seed's MNIST recipe: SDD's mnist_mlp_300_100 defaults (SDD models/mnist_mlp.py:70-102;
# reference §1.10). The README has no MNIST command, so the study's knobs (levels, noise) are
# the CIFAR commands' (docs/methods.md, prune, "What the SDD grids run").
MNIST_FIXED = {
    "dataset": "mnist",  # SDD models/mnist_mlp.py:79
    "model": "mlp",  # LeNet-300-100: mnist_mlp_300_100 (SDD models/mnist_mlp.py:73)
    "augment": "none",  # no augmentation for MNIST (SDD datasets/mnist.py:29)
    # model_init='kaiming_normal', batchnorm_init='uniform' (SDD models/mnist_mlp.py:74-75,
    # applied at :30; the MLP has no BatchNorm).
    "init": "openlth",
    "normalisation": "sdd",  # Normalize(mean=[0.1307], std=[0.3081]) (SDD datasets/mnist.py:41)
    "optimizer": "sgd",  # SDD models/mnist_mlp.py:84
    "lr": 0.1,  # SDD models/mnist_mlp.py:85
    "momentum": 0.0,  # not set there: TrainingHparams default 0.0 (SDD foundations/hparams.py:163)
    "weight_decay": 0.0,  # not set there: weight_decay = None (SDD foundations/hparams.py:168)
    "batch_size": 128,  # SDD models/mnist_mlp.py:80
    # SDD models/mnist_mlp.py:86 (160ep; OpenLTH's mnist_lenet_300_100 trains 40ep,
    # OpenLTH models/mnist_lenet.py:87).
    "epochs": 160,
    "milestones": "",  # constant lr: no milestone_steps in the defaults (models/mnist_mlp.py:83-87)
    "precision": "fp32",  # no convolution; PyTorch's default fp32 matmuls (the model's default)
    "levels": 30,  # no MNIST command: the README's --levels=30 (README:56)
    "prune_fraction": 0.2,  # SDD models/mnist_mlp.py:91
    "criterion": "magnitude",  # SDD models/mnist_mlp.py:90
    "prune_scope": "global",  # SDD models/mnist_mlp.py:92
    "dense_first_layer": False,  # only fc.weight is ignored (SDD models/mnist_mlp.py:93)
    "dense_last_layer": True,  # pruning_layers_to_ignore='fc.weight' (SDD models/mnist_mlp.py:93)
    # Lottery rewinds to the initialisation: the MNIST defaults set no rewinding_steps (SDD
    # experiments/lottery/desc.py:49, default None) and no README command covers MNIST.
    "rewind_step": 0,
    "finetune_lr": 0.1,  # SDD models/mnist_mlp.py:98 (160ep at :99 = epochs: finetune_steps '')
    # No MNIST noise level in the seed (README, reference): the README's CIFAR-10 level
    # (README:56 --random_labels_fraction=0.2), so the MNIST and CIFAR-10 curves compare.
    "random_labels_fraction": 0.2,
    "train_on_valid": True,  # all 60,000 training images (SDD datasets/mnist.py:19)
    "selection": "last",  # as CIFAR_FIXED
}
# retrain's values other than lottery: they start at step 0, whatever the recipe's rewind.
NOT_LOTTERY = ("lr_rewind", "finetune", "scratch")


def _block(axes: dict, fixed: dict) -> Block:
    return Block.of(["prune"], {"seed": SEEDS, **axes}, fixed)


def _grid(name: str, description: str, axes: dict, fixed: dict) -> Grid:
    return Grid(
        name=name, description=description, blocks=(_block(axes, {**CIFAR_FIXED, **fixed}),)
    )


def _retrain_blocks(fixed: dict) -> tuple[Block, ...]:
    """The four retraining policies on ``fixed``: lottery keeps the recipe's ``rewind_step``;
    lr_rewind, finetune and scratch get 0 (a rewind step is lottery's alone: PruneParams)."""
    return (
        _block({}, {**fixed, "retrain": "lottery"}),
        _block({"retrain": NOT_LOTTERY}, {**fixed, "rewind_step": 0}),
    )


# The branch points: README:85 lottery_branch retrain --levels=0,3,6,9,12,15,19,22,26 (README 4,
# re-dense; level 0 is the dense trunk) and README:94 lottery_branch randomly_reinitialize
# --levels=1-27 (README 5; random_prune, OpenLTH's, is not in the README: the same levels).
REDENSE_LEVELS = (0, 3, 6, 9, 12, 15, 19, 22, 26)
REINIT_LEVELS = tuple(range(1, 28))
# The prune fields only a branch has (prune's BranchParams group): a --set of one of them never
# reaches the branch's parent.
BRANCH_ONLY = frozenset(f.name for f in dataclasses.fields(BranchParams))
# README 4's trunk (README:81): the CIFAR-10 recipe's lottery on --dataset_name=cifar100 with
# --random_labels_fraction=0.4 (its other flags are README:56's). sdd-lottery-cifar100 plans it.
CIFAR100_NOISY = {"dataset": "cifar100", "random_labels_fraction": 0.4}
# README 4's re-dense branch (README:85, lottery_branch retrain): --retrain_t_training_steps=320ep
# and --retrain_t_regain_pruned_weights_steps=160ep: 160 epochs sparse from the rewind point
# (iteration 1000) on the whole schedule, then 160 dense at the lr the schedule has reached
# (0.001: both milestones passed; reference 1.6). Its other --retrain_t_* / --retrain_d_* flags
# repeat the trunk's (lr 0.1, milestones 80ep,120ep, gamma 0.1, momentum 0.9, weight decay 1e-4,
# batch 128, the dataset and its random labels), so the branch keeps its parent's values.
REDENSE = {"epochs": 320, "redense_step": "160ep"}


def lottery_parent(
    seed: int,
    recipe: str = "paper",
    overrides: Mapping[str, Any] | None = None,
    parent: Mapping[str, Any] | None = None,
) -> str:
    """Trial hash of the lottery trial of ``seed`` (a branch's parent) that a grid of
    ``parent``'s values over ``CIFAR_FIXED`` plans under ``recipe`` and ``overrides``:
    ``sdd-retrain-cifar10`` with ``parent`` empty, ``sdd-lottery-cifar100`` with
    ``CIFAR100_NOISY``."""
    from trainables.config import TrialConfig

    values = {**CIFAR_FIXED, **(parent or {}), **(overrides or {}), "seed": seed}
    values["retrain"] = "lottery"
    return TrialConfig.from_recipe(recipe, method="prune", **values).trial_hash


@dataclass(frozen=True)
class LotteryParent(Derived):
    """A branch's ``branch_of``: the lottery parent of ``seed`` (planned from ``parent``'s
    values over ``CIFAR_FIXED``) under the expansion's recipe and overrides, less the keys that
    only a branch has (they never reach the parent). Every other override reaches both, so a
    grid and its parent grid run with the same ``--set`` pair up."""

    seed: int
    parent: tuple[tuple[str, Any], ...] = ()

    def resolve(self, recipe: str, overrides: Mapping[str, Any]) -> str:
        shared = {k: v for k, v in overrides.items() if k not in BRANCH_ONLY}
        return lottery_parent(self.seed, recipe, shared, dict(self.parent))


def _branch_grid(
    name: str,
    description: str,
    branches: tuple[str, ...],
    levels: tuple[int, ...],
    parent: Mapping[str, Any],
    extra: Mapping[str, Any],
) -> Grid:
    """``branches`` at ``levels`` of the lottery trial planned from ``parent`` over
    ``CIFAR_FIXED``: the branch takes its parent's values (``rewind_step`` included: a branch
    starts at its parent's rewind point) plus ``extra``, what only the branch sets."""
    blocks = tuple(
        Block.of(
            ["prune"],
            {"branch": branches, "branch_level": levels},
            {
                **CIFAR_FIXED,
                **parent,
                "retrain": "lottery",  # the parent's (the default: the branch reads no trunk)
                "seed": seed,
                "branch_of": LotteryParent(seed, tuple(parent.items())),
                **extra,
            },
        )
        for seed in SEEDS
    )
    return Grid(name=name, description=description, blocks=blocks)


def sdd_grids() -> list[Grid]:
    """Every SDD preset, in the order ``rest-sweep grids`` lists them."""
    return [
        Grid(
            name="sdd-retrain-cifar10",
            description="SDD on CIFAR-10, 20% random labels: lottery (rewind to iteration "
            "1000), LR rewinding, fine-tuning, scratch; 30 levels (README 1.1-1.4)",
            blocks=_retrain_blocks(CIFAR_FIXED),
        ),
        _grid(
            "sdd-criteria-cifar10",
            "SDD on CIFAR-10, 20% random labels: magnitude, gradient and random pruning with "
            "lottery rewinding (README 2)",
            {"criterion": ("magnitude", "gradient", "random")},
            {"retrain": "lottery"},
        ),
        _grid(
            "sdd-noise-cifar10",
            "SDD on CIFAR-10: symmetric, asymmetric and pair-flip noise (20%) instead of random "
            "labels, lottery (README 3)",
            {"noise_type": ("symmetric", "asymmetric", "pairflip")},
            # README:76 --noisy_labels_type=... --noisy_labels_fraction=0.2, no random labels
            # (the two exclude each other in SDD too: SDD datasets/registry.py:33-34).
            {"retrain": "lottery", "random_labels_fraction": 0.0, "noise_fraction": 0.2},
        ),
        _branch_grid(
            "sdd-redense-cifar10",
            "SDD on CIFAR-10, 20% random labels: re-dense training of the lottery run's levels "
            "0..26 from its rewind point, 160 epochs sparse then 160 dense (README 4's branch on "
            "the CIFAR-10 trunk)",
            ("redense",),
            REDENSE_LEVELS,
            {},
            REDENSE,
        ),
        _branch_grid(
            "sdd-reinit-cifar10",
            "SDD on CIFAR-10, 20% random labels: the lottery run's level masks (1..27) with a new "
            "initialisation, and random masks of the same layer densities on the rewind-point "
            "weights (README 5)",
            ("reinit", "random_prune"),
            REINIT_LEVELS,
            {},
            {},
        ),
        _grid(
            "sdd-lottery-cifar100",
            "SDD on CIFAR-100, 40% random labels: the lottery run (rewind to iteration 1000) "
            "that sdd-redense-cifar100 branches from; 30 levels (README 4's trunk)",
            {},
            {"retrain": "lottery", **CIFAR100_NOISY},
        ),
        _branch_grid(
            "sdd-redense-cifar100",
            "SDD on CIFAR-100, 40% random labels: re-dense training of sdd-lottery-cifar100's "
            "levels 0..26 from its rewind point, 160 epochs sparse then 160 dense (README 4)",
            ("redense",),
            REDENSE_LEVELS,
            CIFAR100_NOISY,
            REDENSE,
        ),
        _grid(
            "sdd-oneshot-cifar10",
            "SDD on CIFAR-10, 20% random labels: one-shot pruning to every level's density, "
            "lottery rewinding (README 6's one-shot branch on the CIFAR-10 recipe)",
            {},
            {"retrain": "lottery", "oneshot": True},
        ),
        Grid(
            name="sdd-retrain-mnist",
            description="SDD on MNIST, LeNet-300-100, 20% random labels: lottery, LR rewinding, "
            "fine-tuning, scratch; 30 levels of 160 epochs (SDD's mnist_mlp_300_100 defaults)",
            blocks=_retrain_blocks(MNIST_FIXED),
        ),
        Grid(
            name="sdd-demo",
            description="SDD on Fashion-MNIST (CPU, minutes): MLP 300-100, 20% symmetric "
            "noise, 8 levels of 2 epochs, lottery vs fine-tuning",
            blocks=(
                Block.of(
                    ["prune"],
                    {"seed": SEEDS, "retrain": ("lottery", "finetune")},
                    {
                        "dataset": "fashion_mnist",
                        "model": "mlp",
                        "optimizer": "sgd",
                        "lr": 0.1,
                        "momentum": 0.9,
                        "weight_decay": 0.0,
                        "batch_size": 128,
                        "epochs": 2,
                        "levels": 8,
                        "prune_fraction": 0.2,
                        "finetune_lr": 0.01,
                        "noise_type": "symmetric",
                        "noise_fraction": 0.2,
                        "selection": "last",
                    },
                ),
            ),
        ),
    ]
