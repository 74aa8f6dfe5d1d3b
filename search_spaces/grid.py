"""Grids as data: blocks of methods x axes x fixed values, expanded to an explicit trial list.

A grid is declared, never computed: each :class:`Block` names some methods, the axes swept for
them (in order, outermost first) and fixed values. :func:`expand` turns a grid into an ordered,
de-duplicated list of :class:`TrialConfig` built with ``TrialConfig.from_recipe``, so every
trial gets its recipe's defaults and the same content hash as a trial built any other way.

Honest conditional axes: the ``density`` axis applies to sparse methods only; a dense method
(``erm``, ``erm_rw``) gets one row per combination of the other axes, never a row per density.
Rows of methods that are not registered yet (``PAPER_BASELINES_PENDING``) become
:class:`PendingRow` s: listed, counted, never run, and expanded for real, without any change to
the grid, once the method is registered in ``trainables.methods.METHODS``.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trainables.config import (
    TrialConfig,
    coerce,
    method_memo,
    parse_assignments,
    planned_batch,
    trial_label,
)
from trainables.errors import UserError
from trainables.methods import METHODS, PAPER_BASELINES_PENDING, method_takes

# Keys that are not swept or fixed per block: the recipe is chosen for the whole grid.
RESERVED_KEYS = ("method", "recipe")


class Derived:
    """A fixed value computed when the grid is expanded, from the recipe and the ``--set``
    overrides of that expansion. Why: a value that names another trial (an SDD branch's
    ``branch_of`` is its parent's hash) must follow the same overrides as that trial, or a
    ``--set`` would point it at a trial that was never planned."""

    def resolve(self, recipe: str, overrides: Mapping[str, Any]) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Block:
    """Methods that share axes. ``axes`` keep their order: the first is the outermost loop."""

    methods: tuple[str, ...]
    axes: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    fixed: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(
        cls,
        methods: Sequence[str],
        axes: Mapping[str, Sequence[Any]] | None = None,
        fixed: Mapping[str, Any] | None = None,
    ) -> Block:
        return cls(
            methods=tuple(methods),
            axes=tuple((k, tuple(v)) for k, v in (axes or {}).items()),
            fixed=tuple((fixed or {}).items()),
        )


@dataclass(frozen=True)
class Grid:
    """A named, ordered set of blocks; the union of grids is the concatenation of blocks."""

    name: str
    description: str
    blocks: tuple[Block, ...]
    recipe: str = "paper"
    source: str = "builtin"  # "builtin" or the YAML file it came from


@dataclass(frozen=True)
class PendingRow:
    """A grid row whose method is not registered yet: shown, counted, not runnable."""

    method: str
    values: dict[str, Any]

    def label(self) -> str:
        """The trial's label (``trainables.config.trial_label``, as every trial's)."""
        return trial_label({**self.values, "method": self.method})


@dataclass(frozen=True)
class Expansion:
    """The explicit trial list of a grid under some overrides (what a launch plans)."""

    grid: str
    recipe: str
    trials: tuple[TrialConfig, ...]
    pending: tuple[PendingRow, ...] = field(default=())
    overrides: tuple[tuple[str, Any], ...] = ()
    applied: tuple[tuple[str, int], ...] = ()  # --set key -> trials it applied to

    def set_notes(self) -> list[str]:
        """One line per ``--set`` key that skipped some trials (methods that do not take it)."""
        return [
            f"--set {key}: applied to {n} of {self.count} trials (the methods that take it: "
            f"{', '.join(methods_taking(key, self.per_method()))})"
            for key, n in self.applied
            if n < self.count
        ]

    @property
    def count(self) -> int:
        return len(self.trials)

    def per_method(self) -> dict[str, int]:
        return dict(Counter(t.method for t in self.trials))

    def pending_per_method(self) -> dict[str, int]:
        return dict(Counter(p.method for p in self.pending))

    def by_hash(self) -> dict[str, TrialConfig]:
        return {t.trial_hash: t for t in self.trials}


def union(name: str, description: str, grids: Sequence[Grid]) -> Grid:
    """A grid holding every block of ``grids`` (shared trials are counted once by expand)."""
    blocks = tuple(b for g in grids for b in g.blocks)
    return Grid(name=name, description=description, blocks=blocks, recipe=grids[0].recipe)


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``["epochs=2", "recipe=rest-code"]`` -> typed values (``trainables.config`` rules).

    The one ``--set`` parser of ``train``, ``run`` and ``grids``: bad keys and values are a
    one-line error naming the key and the allowed keys or values.
    """
    return parse_assignments(list(pairs))


def takes(method: str, key: str) -> bool:
    """Whether ``method`` has the field ``key``; a pending (unregistered) method takes every key."""
    if method not in METHODS:
        return True
    memo = method_memo()  # asked per trial and key: computed once per method and key
    if ("takes", method, key) not in memo:
        memo["takes", method, key] = method_takes(method, key)
    return memo["takes", method, key]


def methods_taking(key: str, among: Sequence[str] | None = None) -> list[str]:
    """The methods (registered ones, or those of ``among``) that take ``key``."""
    names = METHODS.names() if among is None else [m for m in among if m in METHODS]
    return [m for m in names if method_takes(m, key)]


def check_sets(keys: Sequence[str], methods: Sequence[str], where: str) -> None:
    """The ``--set`` rule: a key that no method of the command takes is an error.

    ``recipe`` picks the recipe and is always taken; ``method`` is checked by the caller.
    """
    for key in keys:
        if key == "recipe" or any(takes(m, key) for m in methods):
            continue
        takers = ", ".join(methods_taking(key)) or "none"
        raise UserError(
            f"--set {key}: no trial of {where} takes it (its methods: {', '.join(methods)}); "
            f"methods that take {key}: {takers}"
        )


def expand(grid: Grid, overrides: Mapping[str, Any] | None = None) -> Expansion:
    """Every trial of ``grid`` in order, de-duplicated by ``trial_hash`` (first one wins).

    ``overrides`` (``--set``) set a field for every trial whose method takes it, axes included
    (overriding an axis collapses it, and the duplicates it creates are dropped); ``recipe``
    picks the recipe. A key that no method of the grid takes is an error naming the methods
    that take it, and ``method`` cannot be set (it is an axis). :meth:`Expansion.set_notes`
    says which keys skipped some trials.
    """
    values = dict(overrides or {})
    if "method" in values:
        raise UserError(
            "--set method: not allowed on a grid (the method is an axis); pick a grid, or write "
            "a YAML grid with the methods you want"
        )
    recipe = str(values.pop("recipe", grid.recipe))
    for key in values:
        values[key] = coerce(key, values[key])  # unknown keys fail, naming the allowed ones
    methods = list(dict.fromkeys(m for block in grid.blocks for m in block.methods))
    check_sets(list(values), methods, f"grid {grid.name}")
    trials: dict[str, TrialConfig] = {}
    pending: dict[tuple, PendingRow] = {}
    with planned_batch():  # the method registry checked once, not per trial
        for block in grid.blocks:
            for method in block.methods:
                _expand_method(grid, block, method, recipe, values, trials, pending)
        applied = tuple((k, sum(takes(t.method, k) for t in trials.values())) for k in values)
    return Expansion(
        grid=grid.name,
        recipe=recipe,
        trials=tuple(trials.values()),
        pending=tuple(pending.values()),
        overrides=tuple(sorted((k, v) for k, v in (overrides or {}).items())),
        applied=applied,
    )


def _expand_method(
    grid: Grid,
    block: Block,
    method: str,
    recipe: str,
    values: dict[str, Any],
    trials: dict[str, TrialConfig],
    pending: dict[tuple, PendingRow],
) -> None:
    """Add the trials (or pending rows) of ``method`` in ``block`` (first occurrence wins)."""
    sets = {k: v for k, v in values.items() if takes(method, k)}
    for row in _rows(block, method):
        row.update(sets)
        row = {
            k: v.resolve(recipe, values) if isinstance(v, Derived) else v for k, v in row.items()
        }
        if method in METHODS:
            cfg = TrialConfig.from_recipe(recipe, method=method, **row)
            trials.setdefault(cfg.trial_hash, cfg)
        elif method in PAPER_BASELINES_PENDING:
            key = (method, tuple(sorted(row.items())))
            pending.setdefault(key, PendingRow(method, row))
        else:
            allowed = ", ".join([*METHODS.names(), *PAPER_BASELINES_PENDING])
            raise UserError(
                f"grid {grid.name}: method {method!r} is not allowed; allowed: {allowed}"
            )


def _rows(block: Block, method: str) -> list[dict[str, Any]]:
    """The axis products of ``block`` for ``method`` (density dropped for dense methods)."""
    dense = method in METHODS and not METHODS.get(method).sparse
    axes = [(k, v) for k, v in block.axes if not (dense and k == "density")]
    fixed = {k: v for k, v in block.fixed if not (dense and k == "density")}
    names = [k for k, _ in axes]
    rows = []
    for combo in itertools.product(*(v for _, v in axes)):
        row = dict(fixed)
        row.update(zip(names, combo, strict=True))
        rows.append(row)
    return rows
