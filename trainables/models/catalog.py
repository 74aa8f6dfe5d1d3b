"""Torch-free facts about each model: its builder's name, GPU share and analytic layer table.

The layer tables list every Conv2d/Linear weight in module order, named as the real network's
parameters (``trainables.sparse.masks.maskable_parameters``), with its shape and dense forward
FLOPs per image: 2 per multiply-accumulate at the layer's real output size (the convention of
``trainables.sparse.flops.layer_flops``, the hook counter the tests compare against).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trainables.errors import UserError

STEMS: tuple[str, ...] = ("imagenet", "cifar")


@dataclass(frozen=True)
class LayerInfo:
    """One maskable weight: its shape ``[out, in, kh, kw]`` (linear ``[out, in]``) and FLOPs."""

    shape: tuple[int, ...]
    flops: float  # dense forward FLOPs per image (2 x MACs at the real output size)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


LayerTable = Callable[[int, int, str, int], dict[str, LayerInfo]]


@dataclass(frozen=True)
class ModelInfo:
    """A registered model: how to build it (lazily), what it costs and its default CUDA numerics,
    without torch."""

    name: str
    builder: str  # "module:function", called with num_classes=, width=, stem=
    gpu_share: float  # default Ray GPU fraction of one trial (benchmarks/gpu_shares.csv)
    layer_table: LayerTable
    # The ``precision`` (fp32, tf32 or bf16) a trial of this model gets when the caller does
    # not set one (``trainables.config.recipe_defaults``). Per model because the fast numerics
    # that keep accuracy were measured per model (docs/performance.md, "Precision"); a model
    # nobody measured keeps the strict ``fp32``. It is CUDA numerics only: a CPU trial computes
    # in fp32 whatever it says. It changes the default, not the field's default, so the hash of
    # a stored config with ``precision`` fp32 stays what it was.
    cuda_precision: str

    def layers(
        self, num_classes: int, width: int = 64, stem: str = "imagenet", input_size: int = 32
    ) -> dict[str, LayerInfo]:
        """Maskable weights in module order: name -> shape and dense forward FLOPs per image."""
        if input_size < 1:
            raise UserError(f"input_size: {input_size!r} is not allowed; allowed: >= 1")
        return self.layer_table(num_classes, width, stem, input_size)

    def shapes(
        self, num_classes: int, width: int = 64, stem: str = "imagenet"
    ) -> dict[str, tuple[int, ...]]:
        """Weight shapes only (independent of the input size)."""
        return {n: layer.shape for n, layer in self.layers(num_classes, width, stem, 32).items()}

    def build(self, num_classes: int, width: int = 64, stem: str = "imagenet") -> Any:
        """The torch module (imports the builder's module, and so torch, on first use)."""
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(module), function)(
            num_classes=num_classes, width=width, stem=stem
        )


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output side of a convolution or pooling window (floor mode, as PyTorch)."""
    return (size + 2 * padding - kernel) // stride + 1


def _conv(out: int, inp: int, kernel: int, size: int) -> LayerInfo:
    shape = (out, inp, kernel, kernel)
    return LayerInfo(shape, 2.0 * math.prod(shape) * size * size)


def _linear(out: int, inp: int) -> LayerInfo:
    return LayerInfo((out, inp), 2.0 * out * inp)


def simple_cnn_layers(num_classes: int, width: int, stem: str, size: int) -> dict[str, LayerInfo]:
    """``SimpleCNN``: three 4x4/2 convs (pad 1), GAP, linear; ``stem`` is ignored."""
    del stem
    layers: dict[str, LayerInfo] = {}
    in_channels = 3
    for index, channels in enumerate((width, 2 * width, 4 * width), start=1):
        size = conv_out(size, 4, 2, 1)
        layers[f"conv{index}.weight"] = _conv(channels, in_channels, 4, size)
        in_channels = channels
    layers["fc.weight"] = _linear(num_classes, in_channels)
    return layers


def resnet18_layers(num_classes: int, width: int, stem: str, size: int) -> dict[str, LayerInfo]:
    """``VariableWidthResNet`` with BasicBlock [2, 2, 2, 2] and the ImageNet or CIFAR stem."""
    if stem not in STEMS:
        raise UserError(f"stem: {stem!r} is not allowed; allowed: {', '.join(STEMS)}")
    layers: dict[str, LayerInfo] = {}
    if stem == "imagenet":
        size = conv_out(size, 7, 2, 3)
        layers["conv1.weight"] = _conv(width, 3, 7, size)
        size = conv_out(size, 3, 2, 1)  # max-pool
    else:
        size = conv_out(size, 3, 1, 1)
        layers["conv1.weight"] = _conv(width, 3, 3, size)
    in_planes = width
    for stage in range(4):
        planes = width * 2**stage
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            prefix = f"layer{stage + 1}.{block}"
            out = conv_out(size, 3, stride, 1)
            layers[f"{prefix}.conv1.weight"] = _conv(planes, in_planes, 3, out)
            layers[f"{prefix}.conv2.weight"] = _conv(planes, planes, 3, out)
            if stride != 1 or in_planes != planes:
                layers[f"{prefix}.downsample.0.weight"] = _conv(
                    planes, in_planes, 1, conv_out(size, 1, stride, 0)
                )
            in_planes, size = planes, out
    layers["fc.weight"] = _linear(num_classes, in_planes)
    return layers


# OpenLTH's cifar_vgg_16 plan in multiples of the width; "M" = 2x2 max-pool (models/vgg.py).
VGG16_PLAN: tuple[int | str, ...] = (1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8)


def vgg16_layers(num_classes: int, width: int, stem: str, size: int) -> dict[str, LayerInfo]:
    """``CifarVGG``: thirteen 3x3 convs (pad 1), four 2x2 max-pools, GAP, linear."""
    del stem
    layers: dict[str, LayerInfo] = {}
    in_channels, index = 3, 0
    for item in VGG16_PLAN:
        if item == "M":
            size = conv_out(size, 2, 2, 0)
            continue
        index += 1
        out = width * int(item)
        layers[f"conv{index}.weight"] = _conv(out, in_channels, 3, size)
        in_channels = out
    layers["fc.weight"] = _linear(num_classes, in_channels)
    return layers


def mlp_layers(num_classes: int, width: int, stem: str, size: int) -> dict[str, LayerInfo]:
    """``LeNet300100``: 784 -> 300 -> 100 -> classes whatever the input size (models/mlp.py)."""
    del width, stem, size
    return {
        "fc1.weight": _linear(300, 28 * 28),
        "fc2.weight": _linear(100, 300),
        "fc.weight": _linear(num_classes, 100),
    }
