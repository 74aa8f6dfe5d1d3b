"""The Sparse Double Descent grids: iterative pruning under label noise (method ``prune``).

They mirror the exemplary runs of the second seed (``sparse_double_descent_README.md``): a
CIFAR-10 ResNet-18 (CIFAR stem) trained 160 epochs per level with SGD (lr 0.1, momentum 0.9,
weight decay 5e-4, batch 128, lr x 0.1 at epochs 80 and 120), 20 % symmetric label noise, 30
levels of 20 % global magnitude pruning with the first conv and the classifier kept dense. The
grids vary one thing each: the retraining policy, the criterion, the noise type, or one-shot
pruning. ``sdd-demo`` is the same study on Fashion-MNIST with the LeNet-300-100 MLP, small
enough for a CPU: 8 levels of 2 epochs.

The branch grids (re-dense training; random re-initialisation and random pruning) read the
stored levels of the ``sdd-retrain-cifar10`` lottery run: a branch names its parent by trial
hash, computed when the grid is expanded (:class:`LotteryParent`) from the parent's values here
and the same recipe and ``--set`` overrides, less the branch-only keys; so the parent grid run
with the same ``--set`` is the parent the branches read. Run the parent grid first (into the same experiment); a branch whose
parent level is not stored yet errors with a one-line message and runs again on ``resume``.
Other branches: ``--set branch=... --set branch_of=<hash> --set branch_level=L``
(docs/methods.md, prune, "Level files and branches").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from search_spaces.grid import Block, Derived, Grid

SEEDS = (41,)
# The seed's CIFAR-10 training recipe (sparse_double_descent_README.md; OpenLTH's
# cifar_resnet_18 defaults with SDD's noise and 30 levels).
CIFAR_FIXED = {
    "dataset": "cifar10",
    "model": "resnet18",
    "stem": "cifar",
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "batch_size": 128,
    "epochs": 160,
    # OpenLTH ran PyTorch's default numerics: TF32 convolutions on Ampere and newer GPUs. Not
    # the ResNet default (bf16, verified on REST only): the noisy-label memorisation behind the
    # double descent is not known to survive bf16 (docs/performance.md, "Precision").
    "precision": "tf32",
    "milestones": "80,120",
    "gamma": 0.1,
    "levels": 30,
    "prune_fraction": 0.2,
    "dense_first_layer": True,
    "dense_last_layer": True,
    "noise_type": "symmetric",
    "noise_fraction": 0.2,
    "selection": "last",
}


def _grid(name: str, description: str, axes: dict, fixed: dict) -> Grid:
    return Grid(
        name=name,
        description=description,
        blocks=(Block.of(["prune"], {"seed": SEEDS, **axes}, {**CIFAR_FIXED, **fixed}),),
    )


BRANCH_LEVELS = (5, 10, 15, 20, 25, 30)
# The prune fields only a branch has (branch, branch_of, branch_level, redense_*): a --set of
# one of them never reaches the branch's parent.
BRANCH_ONLY_PREFIXES = ("branch", "redense")


def lottery_parent(
    seed: int, recipe: str = "paper", overrides: Mapping[str, Any] | None = None
) -> str:
    """Trial hash of the ``sdd-retrain-cifar10`` lottery trial of ``seed`` (a branch's parent)
    as that grid plans it under ``recipe`` and ``overrides``."""
    from trainables.config import TrialConfig

    values = {**CIFAR_FIXED, **(overrides or {}), "seed": seed, "retrain": "lottery"}
    return TrialConfig.from_recipe(recipe, method="prune", **values).trial_hash


@dataclass(frozen=True)
class LotteryParent(Derived):
    """A branch's ``branch_of``: the lottery parent of ``seed`` under the expansion's recipe
    and overrides, less the keys that only the branch has (they never reach the parent)."""

    seed: int
    branch_keys: frozenset[str]

    def resolve(self, recipe: str, overrides: Mapping[str, Any]) -> str:
        shared = {
            k: v
            for k, v in overrides.items()
            if k not in self.branch_keys and not k.startswith(BRANCH_ONLY_PREFIXES)
        }
        return lottery_parent(self.seed, recipe, shared)


def _branch_grid(name: str, description: str, branches: tuple[str, ...], extra: dict) -> Grid:
    own = frozenset({"branch", "branch_level", "branch_of", *extra})
    blocks = tuple(
        Block.of(
            ["prune"],
            {"branch": branches, "branch_level": BRANCH_LEVELS},
            {**CIFAR_FIXED, "seed": seed, "branch_of": LotteryParent(seed, own), **extra},
        )
        for seed in SEEDS
    )
    return Grid(name=name, description=description, blocks=blocks)


def sdd_grids() -> list[Grid]:
    """Every SDD preset, in the order ``rest-sweep grids`` lists them."""
    return [
        _grid(
            "sdd-retrain-cifar10",
            "SDD on CIFAR-10, 20% symmetric noise: lottery, LR rewinding, fine-tuning, scratch; "
            "30 levels",
            {"retrain": ("lottery", "lr_rewind", "finetune", "scratch")},
            {},
        ),
        _grid(
            "sdd-criteria-cifar10",
            "SDD on CIFAR-10: magnitude, gradient and random pruning with lottery rewinding",
            {"criterion": ("magnitude", "gradient", "random")},
            {"retrain": "lottery"},
        ),
        _grid(
            "sdd-noise-cifar10",
            "SDD on CIFAR-10: symmetric, asymmetric and pair-flip noise (20%), lottery",
            {"noise_type": ("symmetric", "asymmetric", "pairflip")},
            {"retrain": "lottery"},
        ),
        _branch_grid(
            "sdd-redense-cifar10",
            "SDD on CIFAR-10: re-dense training of the lottery run's levels 5..30 (all pruned "
            "weights return at zero after 80 epochs, lr 0.001)",
            ("redense",),
            {"redense_step": "80ep", "redense_lr": 0.001},
        ),
        _branch_grid(
            "sdd-reinit-cifar10",
            "SDD on CIFAR-10: the lottery run's level masks with a new initialisation, and random "
            "masks of the same layer densities",
            ("reinit", "random_prune"),
            {},
        ),
        _grid(
            "sdd-oneshot-cifar10",
            "SDD on CIFAR-10: one-shot pruning to every level's density, lottery rewinding",
            {},
            {"retrain": "lottery", "oneshot": True},
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
