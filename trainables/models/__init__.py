"""Model catalogue: ``MODELS`` maps a name to a torch-free :class:`ModelInfo`.

Planning (config validation, grid cost, ``rest-sweep sparsity``) reads facts from here without
importing torch: the builder is named as ``"module:function"`` and imported only by
:func:`build_model`, and :meth:`ModelInfo.layers` gives every maskable weight's shape and dense
forward FLOPs analytically. A new model is one network module plus one ``MODELS.register``
call below (with its layer table in :mod:`trainables.models.catalog`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.errors import UserError
from trainables.models.catalog import (
    LayerInfo,
    ModelInfo,
    mlp_layers,
    resnet18_layers,
    simple_cnn_layers,
    vgg16_layers,
)
from trainables.models.init import INITS
from trainables.registry import Registry

if TYPE_CHECKING:
    from torch import nn

MODELS: Registry[ModelInfo] = Registry("model")
# gpu_share: the Ray GPU fraction one trial of the model takes by default on a Ray with GPUs
# (`--gpus-per-trial` overrides it, per model). Each value is a row of benchmarks/gpu_shares.csv,
# the GPU measurements it rests on (what was measured, on which GPU, when, with which command);
# tests/test_gpu_shares.py fails when a share here and its row differ, or a model has no row.
# The values live here too because the installed package cannot read benchmarks/.
# cuda_precision: a trial's precision unless the caller sets one (docs/performance.md, "Precision";
# H200): ResNet-18 bf16 vs tf32 moved REST accuracy +0.51 +- 0.45 points (3 seeds, spread ~2) at
# 1.1-1.4x the speed, 0.2-0.4x the memory; SimpleCNN tf32 (PyTorch's convolution default,
# so the REST code's numerics) runs 2.6x fp32. vgg16, mlp: not measured, strict fp32.
MODELS.register(
    "simple_cnn",
    ModelInfo(
        name="simple_cnn",
        builder="trainables.models.simple_cnn:simple_cnn",
        gpu_share=0.25,
        layer_table=simple_cnn_layers,
        cuda_precision="tf32",
    ),
)
MODELS.register(
    "resnet18",
    ModelInfo(
        name="resnet18",
        builder="trainables.models.resnet:resnet18",
        gpu_share=0.25,
        layer_table=resnet18_layers,
        cuda_precision="bf16",
    ),
)
# The pruning family's networks (docs/methods.md, "Models of the pruning family"); gpu_share not
# measured (its row says "assumed"): small enough to pack four trials per GPU like the others.
MODELS.register(
    "vgg16",
    ModelInfo(
        name="vgg16",
        builder="trainables.models.vgg:vgg16",
        gpu_share=0.25,
        layer_table=vgg16_layers,
        cuda_precision="fp32",
    ),
)
MODELS.register(
    "mlp",
    ModelInfo(
        name="mlp",
        builder="trainables.models.mlp:mlp",
        gpu_share=0.25,
        layer_table=mlp_layers,
        cuda_precision="fp32",
    ),
)


def model_info(name: str) -> ModelInfo:
    """The registered model ``name`` (a one-line error lists the allowed names)."""
    return MODELS.get(name)


def build_model(
    name: str,
    num_classes: int,
    width: int = 64,
    stem: str = "imagenet",
    init: str = "constructor",
) -> nn.Module:
    """Build a registered model (imports torch) and apply the initialisation ``init``
    (:data:`trainables.models.init.INITS`; the default keeps the constructor's); bad sizes or
    names are a :class:`UserError`."""
    info = MODELS.get(name)
    _check_sizes(num_classes, width)
    initialiser = INITS.get(init)  # before building: a bad name draws nothing
    model = info.build(num_classes=num_classes, width=width, stem=stem)
    initialiser(model)
    return model


def _check_sizes(num_classes: int, width: int) -> None:
    if num_classes < 1:
        raise UserError(f"num_classes: {num_classes!r} is not allowed; allowed: an integer >= 1")
    if width < 1:
        raise UserError(f"width: {width!r} is not allowed; allowed: an integer >= 1")


__all__ = ["INITS", "MODELS", "LayerInfo", "ModelInfo", "build_model", "model_info"]
