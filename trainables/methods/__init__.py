"""The method registry: one module per method, registered by one line in ``_MODULES``.

Each module holds its ``METHOD`` (a :class:`MethodInfo`: parameters, labels used, graphable)
and its code (a :class:`Method` subclass); docs/methods.md walks through adding one. Importing
this package does not import torch (planning reads it).
"""

from __future__ import annotations

import importlib

from trainables.methods.base import LABELS, Method, MethodInfo, SparseMethod, TrialContext
from trainables.methods.params import (
    ObjectiveParams,
    ParamGroup,
    ReweightParams,
    SparseParams,
    param,
)
from trainables.registry import Registry

# One line per method, in the order reports list them (dense baselines, then sparse training).
_MODULES = (
    "erm",
    "erm_rw",
    "jtt",
    "groupdro",
    "dfr",
    "lff",
    "mrm",
    "disent",
    "static",
    "set_",  # the module name avoids shadowing the builtin `set` in this package
    "rigl",
    "rest",
    "prune",
)

METHODS: Registry[MethodInfo] = Registry("method")
for _name in _MODULES:
    _info = importlib.import_module(f"trainables.methods.{_name}").METHOD
    METHODS.register(_info.name, _info)

# Methods of the paper's grids that are not implemented yet. Grids keep their rows and report
# them as pending until a method of that name is registered above.
PAPER_BASELINES_PENDING: tuple[str, ...] = tuple(m for m in ("mrm", "disent") if m not in METHODS)


def objectives() -> list[str]:
    """Names a sparse-training method can take as ``objective`` (``erm`` first)."""
    return [METHODS.get(m).objective for m in METHODS if METHODS.get(m).objective is not None]


def effective_method(method: str, objective: str = "erm") -> MethodInfo:
    """The method a trial trains: ``method`` itself, or a sparse-training method combined with
    the objective named ``objective`` (an unknown name is an error listing the allowed ones).

    A trial config reaches it as ``TrialConfig.method_info``. A combination is built once and
    the same object returned after (:func:`_combination`)."""
    info = METHODS.get(method)
    if objective == "erm" or not info.takes_objective:
        return info
    for name in METHODS:
        if METHODS.get(name).objective == objective:
            return _combination(info, METHODS.get(name))
    from trainables.errors import UserError

    allowed = ", ".join(objectives())
    raise UserError(f"objective: {objective!r} is not allowed; allowed: {allowed}")


# (id of the sparse entry, id of the objective's) -> (both entries, their combination). Keyed by
# the registered objects, not their names, so an entry replaced in METHODS (a plug-in, a test)
# gets its own combination; the entries are held, so their ids are not reused meanwhile.
_COMBINATIONS: dict[tuple[int, int], tuple[MethodInfo, MethodInfo, MethodInfo]] = {}


def _combination(sparse: MethodInfo, objective: MethodInfo) -> MethodInfo:
    """``sparse.with_objective(objective)``, built once per pair of registry entries."""
    key = (id(sparse), id(objective))
    if key not in _COMBINATIONS:
        _COMBINATIONS[key] = (sparse, objective, sparse.with_objective(objective))
    return _COMBINATIONS[key][2]


def param_groups() -> list[type[ParamGroup]]:
    """Every parameter group of a registered method, once each, by ``ParamGroup.order``."""
    groups: list[type[ParamGroup]] = []
    for name in METHODS:
        groups.extend(g for g in METHODS.get(name).params if g not in groups)
    return sorted(groups, key=lambda group: group.order)


def method_takes(method: str, key: str) -> bool:
    """Whether ``key`` is a parameter of ``method`` (False for another method's parameter).

    A sparse-training method that takes an objective takes every objective's parameters too
    (which of them a trial may set depends on its ``objective``; validation says so)."""
    import dataclasses

    info = METHODS.get(method)
    groups = set(info.params)
    if info.takes_objective:
        groups.update(g for name in METHODS for g in METHODS.get(name).params)
    for group in param_groups():
        if key in {f.name for f in dataclasses.fields(group)}:
            return group in groups
    return True  # a core field: every method has it


__all__ = [
    "LABELS",
    "METHODS",
    "PAPER_BASELINES_PENDING",
    "Method",
    "MethodInfo",
    "ObjectiveParams",
    "ParamGroup",
    "ReweightParams",
    "SparseMethod",
    "SparseParams",
    "TrialContext",
    "effective_method",
    "method_takes",
    "objectives",
    "param",
    "param_groups",
]
