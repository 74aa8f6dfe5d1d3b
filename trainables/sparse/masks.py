"""Which weights are masked, how many stay active per layer, and exact-count random masks."""

from __future__ import annotations

import math

import torch
from torch import nn

# Module types whose ``weight`` is masked; biases and normalisation parameters stay dense.
MASKABLE_MODULES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)


def maskable_parameters(
    model: nn.Module, dense_first_layer: bool = False, dense_last_layer: bool = False
) -> dict[str, nn.Parameter]:
    """Every Conv2d/Linear weight in module order, keyed by its parameter name.

    REST masks the stem conv, the 1x1 shortcuts and the classifier alike; RigL keeps the first
    (and optionally last) layer dense, which the two flags reproduce. Excluded layers are simply
    absent here, so they stay dense and do not enter the density budget.
    """
    found = [
        (f"{name}.weight" if name else "weight", module.weight)
        for name, module in model.named_modules()
        if isinstance(module, MASKABLE_MODULES)
    ]
    if dense_last_layer and found:
        found = found[:-1]
    if dense_first_layer and found:
        found = found[1:]
    return dict(found)


def layer_counts(shapes: dict[str, tuple[int, ...]], densities: dict[str, float]) -> dict[str, int]:
    """Active weights per layer: ``round(d_l * N_l)``, at least 1 so no layer is cut off."""
    counts = {}
    for name, shape in shapes.items():
        numel = math.prod(shape)
        counts[name] = min(numel, max(1, round(densities[name] * numel)))
    return counts


def random_mask(
    shape: tuple[int, ...], count: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """A contiguous bool mask with exactly ``count`` True entries, chosen by ``randperm``.

    REST samples Bernoulli(d_l) per entry; an exact count makes every (density, seed) cell of
    the sweep hold exactly its nominal number of weights.
    """
    numel = math.prod(shape)
    flat = torch.zeros(numel, dtype=torch.bool, device=device)
    if count >= numel:
        flat.fill_(True)
    else:
        chosen = torch.randperm(numel, generator=generator, device=generator.device)[:count]
        flat[chosen.to(device)] = True
    return flat.view(shape)
