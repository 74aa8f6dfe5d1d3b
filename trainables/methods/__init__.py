"""The method registry: one module per method, registered by one line in ``_MODULES``.

Each module holds its ``METHOD`` (a :class:`MethodInfo`: parameters, labels used, graphable)
and its code (a :class:`Method` subclass); docs/methods.md walks through adding one. Importing
this package does not import torch (planning reads it).
"""

from __future__ import annotations

import importlib

from trainables.methods.base import LABELS, Method, MethodInfo, SparseMethod, TrialContext
from trainables.methods.params import ParamGroup, ReweightParams, SparseParams, param
from trainables.registry import Registry

# One line per method, in the order grids and reports list them.
_MODULES = (
    "erm",
    "erm_rw",
    "static",
    "set",
    "rigl",
    "rest",
)

METHODS: Registry[MethodInfo] = Registry("method")
for _name in _MODULES:
    _info = importlib.import_module(f"trainables.methods.{_name}").METHOD
    METHODS.register(_info.name, _info)

# Methods of the paper's grids that are not implemented yet. Grids keep their rows and report
# them as pending until a method of that name is registered above.
PAPER_BASELINES_PENDING: tuple[str, ...] = tuple(m for m in ("mrm", "disent") if m not in METHODS)


def param_groups() -> list[type[ParamGroup]]:
    """Every parameter group of a registered method, once each, by ``ParamGroup.order``."""
    groups: list[type[ParamGroup]] = []
    for name in METHODS:
        groups.extend(g for g in METHODS.get(name).params if g not in groups)
    return sorted(groups, key=lambda group: group.order)


def method_takes(method: str, key: str) -> bool:
    """Whether ``key`` is a parameter of ``method`` (False for another method's parameter)."""
    import dataclasses

    info = METHODS.get(method)
    for group in param_groups():
        if key in {f.name for f in dataclasses.fields(group)}:
            return info.takes(group)
    return True  # a core field: every method has it


__all__ = [
    "LABELS",
    "METHODS",
    "PAPER_BASELINES_PENDING",
    "Method",
    "MethodInfo",
    "ParamGroup",
    "ReweightParams",
    "SparseMethod",
    "SparseParams",
    "TrialContext",
    "method_takes",
    "param",
    "param_groups",
]
