"""The hook-based FLOPs counter of a real torch model (the reference for ``trainables.flops``).

The accounting itself (sparse and training totals, the analytic dense table) lives in the
torch-free :mod:`trainables.flops`; ``sparse_forward_flops`` and ``training_step_flops`` are
re-exported here for the callers that still import them from ``trainables.sparse``.

Convention (that of ``torch.utils.flop_counter``): 2 FLOPs per multiply-accumulate, Conv2d and
Linear only, bias adds, norms, activations and pooling ignored, per image at the real training
input size. A layer at density d costs d times its dense FLOPs.
"""

from __future__ import annotations

import torch
from torch import nn

from trainables.flops import sparse_forward_flops, training_step_flops
from trainables.sparse.masks import MASKABLE_MODULES


def layer_flops(model: nn.Module, input_size: int, in_channels: int = 3) -> dict[str, float]:
    """Dense forward FLOPs per image of each Conv2d/Linear, keyed ``"<module>.weight"``.

    Output sizes come from one batch-1 forward pass with hooks, so any stem, padding or pooling
    is accounted for exactly. The model is run in eval mode (batch-1 BatchNorm) and its mode is
    restored afterwards; a module called twice is charged twice.
    """
    flops: dict[str, float] = {}
    handles = []

    def hook_for(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            # batch 1: output positions per weight use = output elements / output channels
            channels = output.shape[-1] if isinstance(module, nn.Linear) else output.shape[1]
            positions = output.numel() // channels
            flops[name] = flops.get(name, 0.0) + 2.0 * module.weight.numel() * positions

        return hook

    for name, module in model.named_modules():
        if isinstance(module, MASKABLE_MODULES):
            key = f"{name}.weight" if name else "weight"
            handles.append(module.register_forward_hook(hook_for(key)))
    first = next(model.parameters())
    was_training = model.training
    try:
        model.eval()
        x = torch.zeros(1, in_channels, input_size, input_size, device=first.device)
        with torch.no_grad():
            model(x.to(first.dtype))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return flops


__all__ = ["layer_flops", "sparse_forward_flops", "training_step_flops"]
