"""N same-architecture networks as one: weights in an ``(N, P)`` tensor, forward under ``vmap``.

Each trial's model is built exactly as a single trial builds it (same seed, same init), then
its parameters are copied into one row of ``weights``. The forward pass is
``vmap(functional_call)`` over the rows: convolutions become one grouped convolution and
BatchNorm one BatchNorm over N*C channels, with the running statistics *stacked* per trial
(updated in place in train mode, used in eval mode), so every trial keeps its own BN state.

Weights are trial-major ``(N, P)``, so a per-trial learning rate is an ``(N, 1)`` tensor and a
trial's whole state is one row. ``weights.split(sizes, dim=1)`` makes the per-parameter views
(its backward is a single concatenation into ``weights.grad``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap


class StackedNet:
    """Holds the packed weights and BN buffers of N models of one architecture."""

    def __init__(self, models: Sequence[nn.Module], device: torch.device | str) -> None:
        if not models:
            raise ValueError("a pack needs at least one model")
        device = torch.device(device)
        self.n = len(models)
        self.base = copy.deepcopy(models[0]).to(device)
        named = [dict(m.named_parameters()) for m in models]
        self.names: list[str] = list(named[0])
        self.shapes: list[torch.Size] = [named[0][k].shape for k in self.names]
        self.sizes: list[int] = [named[0][k].numel() for k in self.names]
        rows = [torch.cat([p[k].detach().reshape(-1) for k in self.names]) for p in named]
        self.weights = torch.stack(rows).to(device).requires_grad_(True)
        buffers = [dict(m.named_buffers()) for m in models]
        self.buffers: dict[str, torch.Tensor] = {
            k: torch.stack([b[k].detach() for b in buffers]).to(device).clone() for k in buffers[0]
        }

    # ------------------------------------------------------------------ views
    @property
    def num_params(self) -> int:
        return sum(self.sizes)

    def offsets(self) -> dict[str, tuple[int, int]]:
        """Column range of each parameter inside a row of ``weights``."""
        out, start = {}, 0
        for name, size in zip(self.names, self.sizes, strict=True):
            out[name] = (start, start + size)
            start += size
        return out

    def param_views(self, weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``name -> (N, *shape)`` views of ``weights`` (differentiable)."""
        w = self.weights if weights is None else weights
        parts = w.split(self.sizes, dim=1)
        return {
            name: part.view(self.n, *shape)
            for name, part, shape in zip(self.names, parts, self.shapes, strict=True)
        }

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, *, train: bool, shared_input: bool = False) -> torch.Tensor:
        """Logits ``(N, B, K)``.

        ``x`` is ``(B, N, C, H, W)`` (trial dim second, so folding it into channels is a view)
        or, with ``shared_input``, one ``(B, C, H, W)`` batch that every trial sees (evaluation).
        """
        self.base.train(train)
        params = self.param_views()

        def one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xi: torch.Tensor):
            return functional_call(self.base, (p, b), (xi,))

        in_x = None if shared_input else 1
        return vmap(one, in_dims=(0, 0, in_x))(params, self.buffers, x)

    # ------------------------------------------------------------------ per-trial state
    def state_dict(self, index: int) -> dict[str, torch.Tensor]:
        """Trial ``index`` as an ordinary ``model.state_dict()`` (CPU tensors)."""
        out: dict[str, torch.Tensor] = {}
        views = self.param_views(self.weights.detach())
        for name in self.names:
            out[name] = views[name][index].cpu().clone()
        for name, buf in self.buffers.items():
            out[name] = buf[index].cpu().clone()
        return out

    @torch.no_grad()
    def load_state_dict(self, index: int, state: dict[str, torch.Tensor]) -> None:
        """Write an ordinary ``state_dict`` into row ``index``."""
        views = self.param_views(self.weights.detach())
        for name in self.names:
            views[name][index].copy_(state[name])
        for name, buf in self.buffers.items():
            buf[index].copy_(state[name])

    def module(self, index: int) -> nn.Module:
        """A fresh ``nn.Module`` holding trial ``index`` (for FLOPs counting, export)."""
        model = copy.deepcopy(self.base)
        model.load_state_dict(self.state_dict(index))
        return model
