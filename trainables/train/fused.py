"""Fused trial groups: K same-shape trials trained as one step, each still its own trial.

A Simple CNN or 32-px ResNet-18 trial keeps a GPU busy with launches, not arithmetic
(benchmarks/results/gpu.json: 5 % MFU). Fusing K trials of one shape widens every kernel K
times: their weights and BatchNorm buffers are stacked on a leading K axis and the network
runs once under ``torch.func.vmap(functional_call)`` (HFTA's horizontal fusion, done by
vmap's batching rules: a convolution becomes one grouped convolution).

**Each trial stays a trial.** Every member is an ordinary :class:`~trainables.train.trial.Trial`
driven by its own unchanged lifecycle (:func:`~trainables.train.loop.run_lifecycle`), one
thread per member: its folder, rows, checkpoints, resume and errors are its own. Only the
training of an epoch is shared. The member's parameters become *views* into the group's
stacked tensors, so everything a member does to its own weights in place (its optimizer's
step, its sparse engine's mask multiply and RigL/REST prune-and-grow, loading a checkpoint)
is what the fused forward reads next, with nothing copied back and forth. What each member
keeps for itself: its data order, augmentation draws and sampling weights (each draws its own
batch from its seed), its loss (``Method.loss``: REST's up-weighting), its optimizer and
momentum, its masks, mask-update schedule and growth generator, its metric sums and its
divergence check (a diverged member fails alone).

**The rendezvous.** A member's :meth:`Trial.train_epoch` hands the epoch to the group and
waits. When every running member is waiting, the last to arrive trains the members at the
lowest waiting epoch together (so members resumed from different checkpoints catch up, then
fuse) and hands each its train row or its own error. A member that finishes, fails or was
already finished leaves, and the group re-stacks the rest. Which trials share a group is not
stored anywhere: a group resumes as any grouping (re-fused, split, solo), because each folder
is the whole truth.

**Equal to the solo run, within rounding.** The fused arithmetic is the solo arithmetic done by
other kernels (a grouped convolution, a batched matmul, batched BatchNorm reductions), so the
sums round differently: on the CPU a first step's logits agree to ~1e-7 relative, not bit for
bit, and later epochs drift as rounding does between any two kernels. ``tests/test_fused.py``
states the tolerance. Which trials may fuse: :mod:`trainables.fusion` (torch-free).

Off by default: ``rest-sweep``'s no-Ray path takes ``--fuse K`` (:mod:`rest_sweep.local`).
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from trainables.config import TrialConfig
from trainables.data.loader import group_batches, same_images
from trainables.fusion import fuse_key
from trainables.train.graphs import GraphedStep
from trainables.train.optim import match_state_layout

if TYPE_CHECKING:
    from trainables.data import Batch
    from trainables.results import Location
    from trainables.train.trial import Trial


def run_group(
    configs: Sequence[TrialConfig], trial_dirs: Sequence[str | Location], reports=None
) -> list[dict[str, Any] | BaseException]:
    """Train ``configs`` (one :func:`fuse_key`) as one fused group, each in its trial folder;
    each trial's summary, or the error its lifecycle recorded and raised, in order.

    ``reports``: one ``report(row)`` per trial (None: none). Interrupting the calling thread
    (Ctrl-C, SIGTERM turned into one) stops the group at its next epoch: every member records
    itself interrupted, as a trial alone would, and the interruption is raised here."""
    from trainables.train.loop import run_lifecycle

    if len({fuse_key(cfg) for cfg in configs}) > 1 or any(fuse_key(c) is None for c in configs):
        raise ValueError("run_group: trials of one fuse_key only (fuse_groups makes them)")
    group = FusedGroup()
    results: list[dict[str, Any] | BaseException] = [RuntimeError("not run")] * len(configs)

    def member(position: int) -> None:
        report = reports[position] if reports is not None else None
        try:
            results[position] = run_lifecycle(
                configs[position], report, trial_dirs[position], group=group
            )
        except BaseException as error:  # recorded in the trial folder by the lifecycle
            results[position] = error
        finally:
            group.leave(threading.get_ident())

    threads = [
        threading.Thread(target=member, args=(i,), name=f"fused-{cfg.trial_hash}")
        for i, cfg in enumerate(configs)
    ]
    group.expect(len(threads))
    started: list[threading.Thread] = []
    try:
        for thread in threads:
            thread.start()
            started.append(thread)
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.5)  # short joins: Ctrl-C reaches this thread
    except BaseException:
        group.stop()
        group.expect(len(started) - len(threads))  # the threads that never started
        for thread in started:
            thread.join()
        raise
    return results


class FusedGroup:
    """The rendezvous and the fused epoch of one group (see the module docstring).

    Not a second trial implementation: it calls each member's own epoch parts
    (:meth:`Trial.epoch_batches`, :meth:`Trial.after_batch`, :meth:`Trial.end_epoch`) and its
    method's own ``loss`` and optimizer; only the forward and backward are done once for all."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._building = threading.Lock()
        self._running = 0  # member threads whose lifecycle has not returned
        self._waiting: dict[Trial, int] = {}  # member -> the epoch it waits to train
        self._done: dict[Trial, dict[str, float] | BaseException] = {}
        self._members: dict[int, Trial] = {}  # thread id -> its joined trial
        self._training = False
        self._stopped = False
        self._trainer: FusedTrainer | None = None

    # ------------------------------------------------------------------ membership
    def expect(self, threads: int) -> None:
        with self._cond:
            self._running += threads

    @contextlib.contextmanager
    def building(self) -> Iterator[None]:
        """One member at a time builds its trial and loads its checkpoint: both set the
        process-wide RNG (``torch.manual_seed`` before the weights are drawn)."""
        with self._building:
            yield

    def join(self, trial: Trial) -> None:
        """``trial`` trains its epochs in this group from now on."""
        trial.fused = self
        with self._cond:
            self._members[threading.get_ident()] = trial

    def leave(self, thread_id: int) -> None:
        """The member thread ``thread_id`` ended (finished, failed or had nothing to do)."""
        with self._cond:
            self._running -= 1
            trial = self._members.pop(thread_id, None)
            if trial is not None:
                trial.fused = None
                self._waiting.pop(trial, None)
                if trial.method.engine is not None:  # alone again: its engine masks its steps
                    trial.method.engine.masks_in_step = True
            self._cond.notify_all()

    def stop(self) -> None:
        """Interrupt every member at its next epoch (each records itself interrupted)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    # ------------------------------------------------------------------ the rendezvous
    def train_epoch(self, trial: Trial, epoch: int, progress=None) -> dict[str, float]:
        """Train ``trial``'s epoch ``epoch`` with the other members waiting at that epoch;
        its train row (or its own error, raised here)."""
        with self._cond:
            self._waiting[trial] = epoch
            while trial not in self._done:
                if self._stopped and trial in self._waiting:  # not while its epoch trains
                    del self._waiting[trial]
                    raise KeyboardInterrupt("fused group stopped")
                if not self._training and len(self._waiting) == self._running:
                    self._lead()
                else:
                    self._cond.wait()
            result = self._done.pop(trial)
        if isinstance(result, BaseException):
            raise result
        return result

    def _lead(self) -> None:
        """Called with the lock held by the last member to arrive: train the members waiting at
        the lowest epoch, with the lock released meanwhile (nobody else can arrive)."""
        epoch = min(self._waiting.values())
        # in one order (by trial hash), so an unchanged group keeps its stacks
        members = sorted(
            (m for m, e in self._waiting.items() if e == epoch), key=lambda m: m.cfg.trial_hash
        )
        for member in members:
            del self._waiting[member]
        self._training = True
        self._cond.release()
        try:
            results = self._train(members, epoch)
        finally:
            self._cond.acquire()
            self._training = False
        self._done.update(results)
        self._cond.notify_all()

    # ------------------------------------------------------------------ the fused epoch
    def _train(
        self, members: list[Trial], epoch: int
    ) -> dict[Trial, dict[str, float] | BaseException]:
        try:
            if self._trainer is None or self._trainer.members != members:
                if self._trainer is not None:
                    self._trainer.close()
                self._trainer = None  # its stacks go before the new ones are made
                self._trainer = FusedTrainer(members)
            return self._trainer.train_epoch(epoch)
        except BaseException as error:  # the shared step failed: every member records it
            return dict.fromkeys(members, error)


class FusedTrainer:
    """Trains ``members`` (built :class:`Trial` objects of one :func:`fuse_key`) epoch by epoch
    as one step: what a group's leader runs, and what ``benchmarks/gpu_throughput.py`` times.

    Each member's epoch is its own (:meth:`Trial.epoch_batches`, :meth:`Trial.after_batch`,
    :meth:`Trial.end_epoch`); the step is :class:`_Stack`'s. On CUDA, when every member would
    graph its own step (``cuda_graphs``), the stacked step of a full batch is recorded once as
    one CUDA graph (:class:`~trainables.train.graphs.GraphedStep`: forward, K losses, backward,
    K optimizer steps, the mask multiply and metric sums) and replayed. The mask multiply after
    every step is the group's: one multi-tensor launch over every member's masked weights
    (each engine's ``masks_in_step`` is off). Prune-and-grow stays eager in each member's
    ``after_step``, as for a trial alone."""

    def __init__(self, members: Sequence[Trial], share_data: bool = True) -> None:
        self.members = list(members)
        self.stack = _Stack(self.members)
        # One copy of the training split for the group, and one gather per step for all
        # (group_batches), when the members loaded the same split (fuse_key: same data root,
        # dataset, ratio and transform); their labels stay their own. Off: each member draws
        # its own batch and the batches are stacked (the path the benchmark compares).
        splits = [m.train for m in self.members]
        self.shared_data = share_data and same_images(splits)
        if self.shared_data:
            for split in splits[1:]:  # the members' own copies are freed
                split.images, split.bias = splits[0].images, splits[0].bias
        self.engines = [m.method.engine for m in self.members if m.method.engine is not None]
        for engine in self.engines:
            engine.masks_in_step = False  # done once for all in _step
        self.use_graphs = all(m.use_graphs for m in self.members)
        self.graph: GraphedStep | None = None
        for member in self.members:
            member.fused_max = max(member.fused_max, len(self.members))
        self.steps = 0

    def train_epoch(self, epoch: int) -> dict[Trial, dict[str, float] | BaseException]:
        """Epoch ``epoch`` of every member; each member's train row, or its own error (a
        diverged member fails alone)."""
        members = self.members
        full = members[0].cfg.batch_size
        for stacked in self._batches(epoch):
            if self.use_graphs and self.graph is None and stacked.x.shape[1] == full:
                self.graph = GraphedStep(
                    self._step,
                    self._zero_grad,
                    [m.method.model for m in members],
                    [m.method.optimizer for m in members],
                    [
                        *self.stack.params.values(),
                        *(
                            t
                            for m in members
                            for t in (*m.graph_tensors(), *m.method.graph_state())
                        ),
                    ],
                    stacked,
                )
                for member in members:
                    member.fused_graphs = True
            if self.graph is not None and self.graph.fits(stacked):
                self.graph.replay(stacked)
            else:
                self._zero_grad(self.graph is None)
                self._step(stacked)
            for member in members:  # every member trained a batch of the same size
                member.after_batch(stacked.y.shape[1])
            self.steps += 1
        results: dict[Trial, dict[str, float] | BaseException] = {}
        for member in members:
            try:
                results[member] = member.end_epoch(epoch)
            except Exception as error:
                results[member] = error
        return results

    def _batches(self, epoch: int) -> Iterator[Batch]:
        """Each step's stacked batch: one gather for all when the data is shared and the
        members train the same slice of the same data epoch, else each member's own draw."""
        members = self.members
        plans = [m.start_epoch(epoch) for m in members]
        slices = {where for where, _ in plans}
        if self.shared_data and len(slices) == 1:
            (where,) = slices
            batches = group_batches(
                [m.train for m in members],
                members[0].cfg.batch_size,
                epoch=where.data_epoch,
                seeds=[m.cfg.seed for m in members],
                weights=[w for _, w in plans],
            )
            yield from where.select(batches)
            return
        own = [m.slice_batches(*plan) for m, plan in zip(members, plans, strict=True)]
        for batches in zip(*own, strict=True):
            yield _stacked_batch(batches)

    def close(self) -> None:
        """Hand the mask multiply back to each member's engine (the members train on
        without this trainer: in another group, or alone)."""
        for engine in self.engines:
            engine.masks_in_step = True

    def _zero_grad(self, set_to_none: bool) -> None:
        # Once a graph exists its gradient tensors must stay the ones the members' views read.
        for stacked in self.stack.params.values():
            if set_to_none:
                stacked.grad = None
            elif stacked.grad is not None:
                stacked.grad.zero_()

    def _step(self, stacked: Batch) -> None:
        self.stack.step([_member_batch(stacked, k) for k in range(len(self.members))])
        weights: list[torch.Tensor] = []
        masks: list[torch.Tensor] = []
        for engine in self.engines:  # the members' engines' mask multiply, one launch
            engine_weights, engine_masks = engine.mask_pairs()
            weights += engine_weights
            masks += engine_masks
        if weights:
            with torch.no_grad():
                torch._foreach_mul_(weights, masks)


class _Stack:
    """The members' weights and buffers stacked on a leading K axis, each member's own tensors
    re-pointed to its slice, and the vmapped forward over them."""

    def __init__(self, members: list[Trial]) -> None:
        self.members = list(members)
        models = [m.method.model for m in members]
        if not stackable(models):
            raise ValueError("fused group: the members' networks differ in structure")
        self.ctx = members[0].method.ctx
        self.params: dict[str, torch.Tensor] = {}
        self.buffers: dict[str, torch.Tensor] = {}
        self._owned: list[tuple[str, list[torch.Tensor]]] = []
        with torch.no_grad():
            for name, _ in models[0].named_parameters():
                own = [model.get_parameter(name) for model in models]
                # contiguous: a member's channels_last weight becomes a plain slice
                stacked = torch.stack([p.detach().contiguous() for p in own])
                for k, p in enumerate(own):
                    p.data = stacked[k]
                self.params[name] = stacked.requires_grad_()
                self._owned.append((name, own))
            for name, _ in models[0].named_buffers():
                own = [model.get_buffer(name) for model in models]
                stacked = torch.stack([b.contiguous() for b in own])
                for k, b in enumerate(own):
                    b.data = stacked[k]
                self.buffers[name] = stacked
        for member in members:  # state and masks follow the (now contiguous) weights' layout
            match_state_layout(member.method.optimizer)
            engine = member.method.engine
            if engine is not None:
                engine.bind_optimizer(member.method.optimizer)
        # The module structure only: functional_call supplies every tensor.
        self.shape = copy.deepcopy(models[0]).to("meta")

    def _one(
        self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor
    ) -> torch.Tensor:
        return torch.func.functional_call(self.shape, (params, buffers), (x,))

    def step(self, batches: Sequence[Batch]) -> None:
        """One training step of every member on its own batch: the base method's step
        (forward, per-sample cross-entropy, the method's ``loss``, backward, its optimizer),
        with the forward and backward done once for all. Gradients are assigned, not
        accumulated (the caller zeroes or drops them first)."""
        members = self.members
        x = torch.stack([batch.x for batch in batches])
        self.shape.train()  # members train (BatchNorm on batch statistics, running stats kept)
        with self.ctx.autocast():
            # vmap built per step (cheap): kept on self it would tie the stacks in a cycle
            logits = torch.func.vmap(self._one)(self.params, self.buffers, x)
        total: torch.Tensor | None = None
        per_member = []
        for k, (member, batch) in enumerate(zip(members, batches, strict=True)):
            losses = F.cross_entropy(logits[k].float(), batch.y, reduction="none")
            term = member.method.loss(losses, batch)
            total = term if total is None else total + term
            per_member.append((logits[k], losses))
        assert total is not None
        total.backward()  # each member's parameters get its own term's gradient only
        for name, own in self._owned:  # each member's gradients: views of the stacked ones
            grads = self.params[name].grad
            for k, p in enumerate(own):
                if grads is None:
                    p.grad = None
                elif p.grad is None or p.grad.data_ptr() != grads[k].data_ptr():
                    p.grad = grads[k]
        for member in members:
            member.method.optimizer.step()
        for member, batch, (member_logits, losses) in zip(
            members, batches, per_member, strict=True
        ):
            member.record_step(batch, member_logits.detach(), losses.detach())


def _stacked_batch(batches: Sequence[Batch]) -> Batch:
    """The members' batches on a leading K axis (one copy into a graph's static inputs)."""
    from trainables.data import Batch

    return Batch(
        x=torch.stack([b.x for b in batches]),
        y=torch.stack([b.y for b in batches]),
        b=torch.stack([b.b for b in batches]),
        index=torch.stack([b.index for b in batches]),
    )


def _member_batch(stacked: Batch, k: int) -> Batch:
    """Member ``k``'s batch as views of the stacked one (a recorded step reads them there)."""
    from trainables.data import Batch

    return Batch(x=stacked.x[k], y=stacked.y[k], b=stacked.b[k], index=stacked.index[k])


def stackable(models: Sequence[nn.Module]) -> bool:
    """Whether ``models`` have one structure (names and shapes of every tensor)."""

    def shapes(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
        tensors = [*model.named_parameters(), *model.named_buffers()]
        return [(name, tuple(t.shape)) for name, t in tensors]

    first = shapes(models[0])
    return all(shapes(model) == first for model in models[1:])
