"""FLOPs accounting, without torch: the one place the cost of a trial is defined.

Convention (that of ``torch.utils.flop_counter``): 2 FLOPs per multiply-accumulate, Conv2d and
Linear only (bias adds, norms, activations and pooling ignored), per image at the real training
input size. Dense per-layer FLOPs come from the model catalogue's analytic layer table
(:meth:`trainables.models.ModelInfo.layers`, checked against the hook counter
``trainables.sparse.flops.layer_flops`` by the tests). A layer at density d costs d times its
dense FLOPs; a training step costs 3 forward passes (RigL paper appendix).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

# Forward + backward (input gradient) + backward (weight gradient), each ~ one forward pass.
PASSES_PER_STEP = 3


def dense_layer_flops(
    model: str, num_classes: int, width: int = 64, stem: str = "imagenet", input_size: int = 32
) -> dict[str, float]:
    """Dense forward FLOPs per image of each maskable weight of ``model``, in module order."""
    from trainables.models import MODELS

    layers = MODELS.get(model).layers(num_classes, width, stem, input_size)
    return {name: layer.flops for name, layer in layers.items()}


def sparse_forward_flops(flops: Mapping[str, float], densities: Mapping[str, float]) -> float:
    """``sum_l d_l * F_l``; a layer absent from ``densities`` (kept dense) counts in full."""
    return math.fsum(f * densities.get(name, 1.0) for name, f in flops.items())


def training_step_flops(sparse: float, dense: float, *, dense_gradient: bool) -> float:
    """FLOPs per example of one training step (RigL paper appendix).

    Forward plus two backward passes of the sparse network (3 f_S); on a step whose mask update
    reads dense gradients, the weight-gradient pass is dense (2 f_S + f_D). A dense model has
    f_S = f_D, giving 3 f_D.
    """
    return 2 * sparse + dense if dense_gradient else PASSES_PER_STEP * sparse


def dense_train_flops(dense_forward: float, train_samples: int, epochs: int) -> float:
    """Training FLOPs of a whole dense run: 3 f_D per example, every example, every epoch."""
    return PASSES_PER_STEP * dense_forward * train_samples * epochs


def layer_densities_for(
    shapes: Mapping[str, tuple[int, ...]],
    density: float,
    rule: str,
    *,
    dense_first_layer: bool = False,
    dense_last_layer: bool = False,
) -> dict[str, float]:
    """Layer densities of ``rule`` at global ``density`` over the masked layers.

    As ``trainables.sparse.masks.maskable_parameters``: the first/last layer kept dense are left
    out (absent = dense, outside the density budget). ``density >= 1`` gives every layer 1.
    """
    names = list(shapes)
    if dense_last_layer and names:
        names = names[:-1]
    if dense_first_layer and names:
        names = names[1:]
    if density >= 1.0:
        return dict.fromkeys(names, 1.0)
    from trainables.sparse.densities import layer_densities

    return layer_densities({n: tuple(shapes[n]) for n in names}, density, rule)


def forward_flops(
    model: str,
    num_classes: int,
    width: int,
    stem: str,
    input_size: int,
    density: float = 1.0,
    sparse_init: str = "erk",
    *,
    dense_first_layer: bool = False,
    dense_last_layer: bool = False,
) -> tuple[float, float]:
    """(sparse, dense) forward FLOPs per image of ``model`` at the rule's layer densities."""
    from trainables.models import MODELS

    layers = MODELS.get(model).layers(num_classes, width, stem, input_size)
    flops = {name: layer.flops for name, layer in layers.items()}
    dense = math.fsum(flops.values())
    if density >= 1.0:
        return dense, dense
    densities = layer_densities_for(
        {n: layer.shape for n, layer in layers.items()},
        density,
        sparse_init,
        dense_first_layer=dense_first_layer,
        dense_last_layer=dense_last_layer,
    )
    return sparse_forward_flops(flops, densities), dense


__all__ = [
    "PASSES_PER_STEP",
    "dense_layer_flops",
    "dense_train_flops",
    "forward_flops",
    "layer_densities_for",
    "sparse_forward_flops",
    "training_step_flops",
]
