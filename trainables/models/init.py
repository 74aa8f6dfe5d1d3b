"""Weight initialisations a trial can ask for (the config field ``init``), applied in place to
a network right after its constructor, drawing from the global torch RNG (so seeded as the
constructor is: the trial seed, or prune's per-level re-initialisation seed).

``INITS`` maps a name to a function of the built network; torch is imported only when one runs,
so planning (config validation) reads the names without torch.

* ``constructor`` (the default): nothing. The network keeps its constructor's init: PyTorch's
  layer defaults, and for ``resnet18`` kaiming-normal fan_out convs with BatchNorm at identity
  (Sagawa/REST). It draws nothing, so every existing trial builds the same tensors.
* ``openlth``: OpenLTH's ``--model_init=kaiming_normal --batchnorm_init=uniform``, which every
  SDD model's defaults use (reference ``sdd_openlth.md`` §1.9-1.10; open_lth
  models/initializers.py, models/bn_initializers.py, models/registry.py; SDD has the same
  files). Every ``Conv2d`` and ``Linear`` weight is redrawn from N(0, 2 / fan_in)
  (``kaiming_normal_``'s defaults) and their biases keep the constructor's values (OpenLTH
  touches only ``weight``); every ``BatchNorm2d`` weight is drawn from U(0, 1) and its bias
  set to 0. As in OpenLTH, one function visits the modules in ``Module.apply`` order (children
  before parents) and does both on each.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from trainables.registry import Registry

if TYPE_CHECKING:
    from torch import nn

INITS: Registry[Callable[[nn.Module], None]] = Registry("init")


def _constructor(model: nn.Module) -> None:
    """Keep the constructor's initialisation (draws nothing)."""
    del model


def _openlth(model: nn.Module) -> None:
    """OpenLTH's ``kaiming_normal`` model init and ``uniform`` BatchNorm init, per module."""
    from torch import nn

    def per_module(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Conv2d):
            nn.init.kaiming_normal_(module.weight)  # fan_in, gain sqrt(2)
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.0, 1.0)
            nn.init.zeros_(module.bias)

    model.apply(per_module)


INITS.register("constructor", _constructor)
INITS.register("openlth", _openlth)


__all__ = ["INITS"]
