"""The training loop of one trial; ``run_trial`` is the library entry point.

``run_trial`` (:mod:`trainables.train.run`) is resolved lazily (PEP 562): importing one module
of this package (``optim``'s epoch schedules, from a method module) does not load the loop,
the stage runner, the results store or torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["run_trial"]

if TYPE_CHECKING:
    from trainables.train.run import run_trial


def __getattr__(name: str) -> Any:
    if name != "run_trial":
        raise AttributeError(f"module 'trainables.train' has no attribute {name!r}")
    value = importlib.import_module("trainables.train.run").run_trial
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
