"""One full-size training step recorded as a CUDA graph and replayed for every full batch.

A small network's step is a few hundred microseconds of GPU work behind a few milliseconds of
Python launching ~70 kernels; replaying a graph launches them at once. What the graph records:
forward, loss, backward, the optimizer step and the metric accumulation, reading the batch from
static input tensors. What stays eager: drawing and augmenting the batch (then one copy into the
static inputs), the sparse engine (mask multiply and the prune-and-grow updates, which write
weights, masks and optimizer state in place, so the graph sees them), the last partial batch.

Capture needs warm-up steps on a side stream; they would train the model, so the weights, BN
buffers, optimizer state and metric sums are snapshotted before and restored after: the first
replayed step starts from exactly the state an eager step would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from trainables.data import Batch

StepFn = Callable[[Batch], None]
WARMUP_STEPS = 3


class GraphedStep:
    """Capture ``run_step(batch)`` for batches shaped like ``batch``; then :meth:`replay`.

    ``run_step`` is the trial's step through the method API (the method's forward, loss,
    backward and optimizer steps, plus the train-metric sums). It reads the batch from static
    tensors, sample indices included, so per-sample state (loss EMAs, group weights) can be
    indexed inside the graph.
    """

    def __init__(
        self,
        run_step: StepFn,
        zero_grad: Callable[[bool], None],
        modules: Sequence[torch.nn.Module],
        optimizers: Sequence[torch.optim.Optimizer],
        extra_state: list[torch.Tensor],
        batch: Batch,
    ) -> None:
        self.static = Batch(
            x=batch.x.clone(), y=batch.y.clone(), b=batch.b.clone(), index=batch.index.clone()
        )
        saved = _Snapshot(modules, optimizers, extra_state)
        # Warm-up and capture must not advance the CUDA RNG: a resumed run captures at another
        # epoch than an uninterrupted one, and both must draw the same numbers afterwards.
        rng = torch.cuda.get_rng_state()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(WARMUP_STEPS):
                zero_grad(True)
                run_step(self.static)
        torch.cuda.current_stream().wait_stream(stream)
        saved.restore()
        self.graph = torch.cuda.CUDAGraph()
        zero_grad(True)
        with torch.cuda.graph(self.graph):
            run_step(self.static)
        torch.cuda.set_rng_state(rng)

    def fits(self, batch: Batch) -> bool:
        return batch.x.shape == self.static.x.shape

    def replay(self, batch: Batch) -> None:
        for name in ("x", "y", "b", "index"):
            getattr(self.static, name).copy_(getattr(batch, name), non_blocking=True)
        self.graph.replay()


class _Snapshot:
    """Copies of everything warm-up steps change, written back in place."""

    def __init__(
        self,
        modules: Sequence[torch.nn.Module],
        optimizers: Sequence[torch.optim.Optimizer],
        extra: list[torch.Tensor],
    ) -> None:
        self.optimizers = list(optimizers)
        self.tensors = [
            *(p for m in modules for p in m.parameters()),
            *(b for m in modules for b in m.buffers()),
            *extra,
        ]
        self.copies = [t.detach().clone() for t in self.tensors]
        # keyed by (optimizer, parameter): a parameter may sit in two optimizers
        self.had_state = {
            (id(optimizer), id(p)): {
                k: v.clone() for k, v in optimizer.state[p].items() if torch.is_tensor(v)
            }
            for optimizer in self.optimizers
            for group in optimizer.param_groups
            for p in group["params"]
            if p in optimizer.state
        }

    @torch.no_grad()
    def restore(self) -> None:
        for tensor, copy in zip(self.tensors, self.copies, strict=True):
            tensor.copy_(copy)
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    state = optimizer.state.get(p, {})
                    before = self.had_state.get((id(optimizer), id(p)), {})
                    for key, value in state.items():
                        if not torch.is_tensor(value):
                            continue
                        # State born in warm-up is zeroed: Adam's step 0 with zero moments, or
                        # an SGD momentum buffer of 0 (dampening 0), updates exactly like a fresh
                        # optimizer.
                        value.copy_(before[key]) if key in before else value.zero_()
