"""Per-layer densities from a global density: uniform, ER and ERK (RigL's epsilon solver).

Pure Python on shapes only, so the CLI and the grid cost model can call it without a model.
Shapes use PyTorch's layout ``[out, in, kh, kw]`` (linear: ``[out, in]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from trainables.errors import UserError
from trainables.registry import Registry

Shapes = dict[str, tuple[int, ...]]
DensityRule = Callable[[Shapes, float], dict[str, float]]

DENSITY_RULES: Registry[DensityRule] = Registry("density rule")

# The one rule for a global density (the config's ``density`` and :func:`layer_densities`).
DENSITY_ALLOWED = "a number in (0, 1]"


def density_allowed(density: float) -> bool:
    """Whether ``density`` is a global density a sparse network can have (``DENSITY_ALLOWED``)."""
    return 0 < density <= 1


def _er_score(shape: tuple[int, ...]) -> float:
    """Erdos-Renyi (SET): (n_in + n_out) / (n_in * n_out) over the first two dims."""
    out, inp = shape[0], shape[1]
    return (out + inp) / (out * inp)


def _erk_score(shape: tuple[int, ...]) -> float:
    """Erdos-Renyi-Kernel (RigL): sum of all dims over their product."""
    return sum(shape) / math.prod(shape)


def solve_epsilon(shapes: Shapes, density: float, score: Callable[[tuple[int, ...]], float]):
    """RigL's solver: scale scores by one epsilon to hit the global budget.

    A layer whose scaled score exceeds 1 cannot be denser than dense: every layer sharing the
    largest raw score is fixed at density 1 and epsilon is solved again for the rest, until no
    layer saturates. Returns the per-layer densities.
    """
    numel = {name: math.prod(shape) for name, shape in shapes.items()}
    raw = {name: score(shape) for name, shape in shapes.items()}
    dense: set[str] = set()
    while True:
        free = [name for name in shapes if name not in dense]
        if not free:
            break
        rhs = sum(density * numel[n] for n in free) - sum((1 - density) * numel[n] for n in dense)
        div = sum(raw[n] * numel[n] for n in free)
        eps = rhs / div
        top = max(raw[n] for n in free)
        if eps * top <= 1:
            break
        dense.update(n for n in free if raw[n] == top)
    return {name: 1.0 if name in dense else eps * raw[name] for name in shapes}


@DENSITY_RULES.decorator("uniform")
def uniform(shapes: Shapes, density: float) -> dict[str, float]:
    """Every maskable layer at the global density (REST's ``uniform``: nothing exempt)."""
    return dict.fromkeys(shapes, density)


@DENSITY_RULES.decorator("er")
def erdos_renyi(shapes: Shapes, density: float) -> dict[str, float]:
    return solve_epsilon(shapes, density, _er_score)


@DENSITY_RULES.decorator("erk")
def erdos_renyi_kernel(shapes: Shapes, density: float) -> dict[str, float]:
    return solve_epsilon(shapes, density, _erk_score)


def layer_densities(shapes: Shapes, density: float, rule: str) -> dict[str, float]:
    """Target density of each layer so that ``sum d_l N_l == density * sum N_l``."""
    if not density_allowed(density):
        raise UserError(f"density: {density!r} is not allowed; allowed: {DENSITY_ALLOWED}")
    if rule not in DENSITY_RULES:
        raise UserError(
            f"sparse_init: {rule!r} is not allowed; allowed: {', '.join(DENSITY_RULES)}"
        )
    if density == 1:
        return dict.fromkeys(shapes, 1.0)
    return DENSITY_RULES.get(rule)(shapes, density)
