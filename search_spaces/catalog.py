"""The registered grids: the paper's Table 2, Table 3, Figure 3, their union, the debiasing
baselines on Colored MNIST, and the demo.

Axis order is seed, ratio, density (outermost first), so the first third of a paper sweep is
one complete seed of every table cell. The Sparse Double Descent runs are not registered: they
need pruning-and-retraining methods and their own knobs (pruning rounds, rewind epoch) that
``TrialConfig`` does not have, so a pending row could not say what it would run.
"""

from __future__ import annotations

from search_spaces.grid import Block, Grid, union
from search_spaces.sdd import sdd_grids
from trainables.datasets import DATASETS
from trainables.methods import METHODS
from trainables.registry import Registry

GRIDS: Registry[Grid] = Registry("grid")

# The paper's sweep axes that are not dataset facts (the ratios are: ``paper_ratios`` in
# ``trainables.datasets``): 14 densities and 3 seeds.
PAPER_DENSITIES: tuple[float, ...] = (
    0.0005,
    0.001,
    0.005,
    0.01,
    0.05,
    0.1,
    0.2,
    0.3,
    0.4,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
)
PAPER_SEEDS: tuple[int, ...] = (41, 42, 43)

DEMO_DENSITIES = (0.05, 0.2)

# The ``baselines`` grid: every registered method but the pure sparse-training ablations
# (static masks, SET's random growth: Table 3's territory, not debiasing baselines) and the
# Sparse Double Descent pruning trunk (its density follows from its levels: no density axis).
SPARSE_ABLATIONS: tuple[str, ...] = ("static", "set", "prune")
BASELINES_DENSITY = 0.05


def _paper_axes(dataset: str, sparse: bool) -> dict[str, tuple]:
    axes: dict[str, tuple] = {"seed": PAPER_SEEDS, "ratio": DATASETS.get(dataset).paper_ratios}
    if sparse:
        axes["density"] = PAPER_DENSITIES
    return axes


def table2(dataset: str) -> Grid:
    """Dense baselines (ERM, ERM+rw, DisEnt) per ratio and seed; the sparse ones (MRM, REST)
    at every density (the tables show each at its best density)."""
    fixed = {"dataset": dataset}
    title = DATASETS.get(dataset).title
    return Grid(
        name=f"paper-table2-{dataset}",
        description=f"Table 2 on {title}: ERM, ERM+reweighting, DisEnt; MRM and REST at every "
        "density",
        blocks=(
            Block.of(["erm", "erm_rw", "disent"], _paper_axes(dataset, False), fixed),
            Block.of(["mrm", "rest"], _paper_axes(dataset, True), fixed),
        ),
    )


def table3(dataset: str) -> Grid:
    """RigL against REST over the 14 densities."""
    return Grid(
        name=f"paper-table3-{dataset}",
        description=f"Table 3 on {DATASETS.get(dataset).title}: RigL and REST at 14 densities",
        blocks=(Block.of(["rigl", "rest"], _paper_axes(dataset, True), {"dataset": dataset}),),
    )


def figure3() -> Grid:
    """CIFAR-10-C accuracy against density: dense ERM as the reference line."""
    fixed = {"dataset": "cifar10c"}
    title = DATASETS.get("cifar10c").title
    return Grid(
        name="paper-fig3",
        description=f"Figure 3 on {title}: dense ERM, REST and RigL over 14 densities",
        blocks=(
            Block.of(["erm"], _paper_axes("cifar10c", False), fixed),
            Block.of(["rest", "rigl"], _paper_axes("cifar10c", True), fixed),
        ),
    )


def baseline_methods() -> list[str]:
    """The registered methods of the ``baselines`` grid, in registry order."""
    return [m for m in METHODS.names() if m not in SPARSE_ABLATIONS]


def baselines() -> Grid:
    """Every debiasing baseline side by side: Colored MNIST 1 %, 3 seeds, the paper recipe,
    sparse methods at density 0.05 (dense ones get no density axis). Built from the methods
    registered at import, so a method that is not registered yet is simply absent."""
    methods = baseline_methods()
    return Grid(
        name="baselines",
        description=f"Colored MNIST, ratio 1%, seeds 41-43: {', '.join(methods)} "
        f"(sparse ones at density {BASELINES_DENSITY:g})",
        blocks=(
            Block.of(
                methods,
                {"seed": PAPER_SEEDS},
                {"dataset": "cmnist", "ratio": 1.0, "density": BASELINES_DENSITY},
            ),
        ),
    )


def demo() -> Grid:
    """A few minutes on a 2-core CPU with the small real Colored MNIST bundle that
    ``scripts/demo.sh`` makes (8,000 training images: 32 steps of 256 per epoch).

    Mask updates every 16 steps so RigL and REST really move their masks: 4 updates before
    RigL's schedule stops at 75 % of the 96 steps (the paper's 1000 steps would never fire in
    3 short epochs).
    """
    return Grid(
        name="demo",
        description="Colored MNIST (the demo's small bundle), ratio 1%, ERM / ERM+rw / RigL / "
        "REST at densities 0.05 and 0.2, 1 seed, 3 epochs",
        blocks=(
            Block.of(
                ["erm", "erm_rw", "rigl", "rest"],
                {"density": DEMO_DENSITIES},
                {
                    "dataset": "cmnist",
                    "ratio": 1.0,
                    "seed": 41,
                    "epochs": 3,
                    "update_frequency": 16,
                },
            ),
        ),
    )


def _register_all() -> None:
    tables = []
    biased = [d for d in DATASETS if DATASETS.get(d).biased]  # the paper's datasets
    for dataset in biased:
        tables.append(GRIDS.register(f"paper-table2-{dataset}", table2(dataset)))
    for dataset in biased:
        tables.append(GRIDS.register(f"paper-table3-{dataset}", table3(dataset)))
    tables.append(GRIDS.register("paper-fig3", figure3()))
    GRIDS.register(
        "paper-all", union("paper-all", "Every paper grid above (shared trials once)", tables)
    )
    GRIDS.register("baselines", baselines())
    for grid in sdd_grids():
        GRIDS.register(grid.name, grid)
    GRIDS.register("demo", demo())


_register_all()
