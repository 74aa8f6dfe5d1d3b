"""A module imported on first use, so planning code can import method modules without torch.

Method modules hold their parameters (read by config validation, grids, status and analysis,
which must start in well under a second) next to their training code (which needs torch).
``torch = lazy_module("torch")`` at the top of such a module costs nothing until the training
code touches an attribute; ``sys.modules`` stays free of torch until then.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands in for module ``name``; the first attribute access imports it."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy_module(name: str) -> ModuleType:
    """A stand-in for ``import name`` that imports on first attribute access."""
    return LazyModule(name)  # type: ignore[return-value]
