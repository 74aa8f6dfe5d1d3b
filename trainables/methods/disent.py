"""``disent``: DisEnt, debiasing by disentangled feature augmentation (Lee et al., NeurIPS 2021;
public code kakaoenterprise/Learning-Debiased-Disentangled, ``learner.py: train_ours``).

Two encoders of the config's architecture (intrinsic ``model`` and ``bias_model``, their
penultimate features ``z_i`` and ``z_b``) and two linear heads over ``[z_i, z_b]``. The intrinsic
head sees ``[z_i, z_b.detach()]`` and is trained with the cross-entropy weighted by the relative
difficulty of the class-normalised loss EMAs (:mod:`trainables.methods.difficulty`); the bias
head sees ``[z_i.detach(), z_b]`` and is trained with GCE. After ``disent_swap_step`` steps the
bias features are swapped within the batch (a permutation) and both heads are also trained on
the swapped features, the bias head towards the permuted labels. Evaluation: the intrinsic head
on ``[z_i, z_b]``. No bias labels are read.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from trainables.checkpoints import CheckpointStage
from trainables.datasets import planned_train_samples
from trainables.lazy import lazy_module
from trainables.methods.base import Method, MethodInfo
from trainables.methods.difficulty import (
    DifficultyParams,
    LossEma,
    difficulty_weights,
    gce_loss,
    load_pair_state,
    pair_state,
    second_model,
    with_biased_network,
)
from trainables.methods.params import Check, ParamGroup, param

if TYPE_CHECKING:
    import torch

    from trainables.config import TrialConfig
    from trainables.data import Batch
    from trainables.datasets import DatasetInfo
    from trainables.methods.base import TrialContext
else:
    torch = lazy_module("torch")


# The public scripts (scripts/run_{cmnist,cifar10c,bffhq}_ours.sh): per dataset and conflict
# ratio, (lr, lambda_dis_align, lambda_swap_align, lambda_swap, lr_gamma). All use
# curr_step=10000, --use_lr_decay, lr_decay_step=10000; BFFHQ leaves lr_gamma at train.py's 0.1.
SCRIPT_VALUES: dict[str, dict[float, tuple[float, float, float, float, float]]] = {
    "cmnist": {r: (0.01, 10.0, 10.0, 1.0, 0.5) for r in (0.5, 1.0, 2.0, 5.0)},
    "cifar10c": {
        0.5: (0.0005, 1.0, 1.0, 1.0, 0.5),
        1.0: (0.001, 5.0, 5.0, 1.0, 0.5),
        2.0: (0.001, 5.0, 5.0, 1.0, 0.5),
        5.0: (0.001, 1.0, 1.0, 1.0, 0.5),
    },
    "bffhq": {0.5: (0.0001, 2.0, 2.0, 0.1, 0.1)},
}
SCRIPT_CURR_STEP = 10_000
SCRIPT_LR_DECAY_STEP = 10_000
# DisEnt's batch size per dataset: learner.py:23-25 (data2batch_size; the argparse --batch_size
# of train.py:11 is never read, learner.py:42). BFFHQ's 64 gives 19,200 / 64 = 300 steps per
# epoch, 30,000 in the grid's 100 epochs, so the swap (after step 10,000) and one LR decay (at
# 20,000) happen; at the grid's 256 the run would end at step 7,500 with neither.
SCRIPT_BATCH_SIZE: dict[str, int] = {"cmnist": 256, "cifar10c": 256, "bffhq": 64}


@dataclass(frozen=True)
class DisentParams(ParamGroup):
    """DisEnt's loss weights, swap start and step LR decay (defaults: the public ``train.py``
    argparse values, except the step counts, which every public script sets to 10000)."""

    order: ClassVar[int] = 31

    disent_lambda_dis: float = param(
        1.0, "weight of the bias head's GCE in L_dis (public lambda_dis_align)"
    )
    disent_lambda_swap_align: float = param(
        1.0, "weight of the bias head's GCE on swapped features in L_swap (lambda_swap_align)"
    )
    disent_lambda_swap: float = param(1.0, "weight of L_swap in the total loss (lambda_swap)")
    disent_swap_step: int = param(
        SCRIPT_CURR_STEP,
        "public curr_step: feature swapping applies to steps whose 0-based index exceeds it, "
        "and the step LR decay counts from it",
    )
    disent_lr_decay_step: int = param(
        SCRIPT_LR_DECAY_STEP, "steps between LR decays after disent_swap_step (0: no decay)"
    )
    disent_lr_gamma: float = param(0.1, "factor of each step LR decay (public lr_gamma)")
    disent_allow_no_swap: bool = param(
        False,
        "allow a trial whose feature swap never starts (disent_swap_step at or past its last "
        "step); planning refuses one otherwise",
        identity=False,  # it only lifts a planning check: the trial computes the same
    )

    @classmethod
    def recipe_values(
        cls,
        recipe: str,
        dataset: DatasetInfo,
        ratio: float,
        method: MethodInfo,
        given: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        if not method.takes(cls):
            return {}
        row = SCRIPT_VALUES.get(dataset.name, {}).get(float(ratio))
        values: dict[str, Any] = {}
        if row is not None:  # a ratio the scripts never ran keeps train.py's defaults
            lr, dis, swap_align, swap, gamma = row
            values = {
                "disent_lambda_dis": dis,
                "disent_lambda_swap_align": swap_align,
                "disent_lambda_swap": swap,
                "disent_lr_gamma": gamma,
            }
            if recipe == "paper":
                values["lr"] = lr
        if dataset.name in SCRIPT_BATCH_SIZE:  # both recipes: REST's code runs no DisEnt
            values["batch_size"] = SCRIPT_BATCH_SIZE[dataset.name]
        if recipe == "paper":
            values["weight_decay"] = 0.0  # train.py's default; no script passes it
        else:  # rest-code: its plateau schedule drives the LR, no step decay on top
            values["disent_lr_decay_step"] = 0
        return values

    @classmethod
    def check(cls, cfg: Any, method: MethodInfo, check: Check) -> None:
        for name in ("disent_lambda_dis", "disent_lambda_swap_align", "disent_lambda_swap"):
            check(getattr(cfg, name) >= 0, name, getattr(cfg, name), "a number >= 0")
        check(
            cfg.disent_swap_step >= 0, "disent_swap_step", cfg.disent_swap_step, "an integer >= 0"
        )
        check(
            cfg.disent_lr_decay_step >= 0,
            "disent_lr_decay_step",
            cfg.disent_lr_decay_step,
            "an integer >= 0 (0: no decay)",
        )
        check(
            0 < cfg.disent_lr_gamma <= 1,
            "disent_lr_gamma",
            cfg.disent_lr_gamma,
            "a number in (0, 1]",
        )

    @classmethod
    def plan_check(cls, cfg: Any, method: MethodInfo, check: Check) -> None:
        # Planning only: a stored trial that never swaps (planned before this check) loads.
        if method.takes(cls) and not cfg.disent_allow_no_swap:
            steps, samples = planned_steps(cfg), planned_train_samples(cfg)
            check(
                cfg.disent_swap_step < steps - 1,
                "disent_swap_step",
                cfg.disent_swap_step,
                f"an integer below {steps - 1:,}, the last 0-based step of epochs {cfg.epochs} x "
                f"ceil({samples:,} / batch_size {cfg.batch_size}) = {steps:,} steps ({samples:,}: "
                f"{cfg.dataset}'s approximate training-set size, as planning counts it); the "
                "feature swap starts after step disent_swap_step and would never run: lower "
                "disent_swap_step, raise epochs or lower batch_size, or set "
                "disent_allow_no_swap=true",
            )


def planned_steps(cfg: Any) -> int:
    """Optimizer steps of ``cfg`` as planning sees them: epochs x ceil(N / batch_size) (the
    core's epoch length, trainables/train/trial.py), with N the dataset's approximate
    training-set size (``trainables.datasets.planned_train_samples``: train + valid under
    ``train_on_valid``; the bundle on disk may differ)."""
    return cfg.epochs * math.ceil(planned_train_samples(cfg) / cfg.batch_size)


_MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2**32`` for int64 ``x`` in [0, 2**32) without int64 overflow."""
    low = (x & 0xFFFF) * c
    high = (((x >> 16) * c) & 0xFFFF) << 16
    return (low + high) & _MASK32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer finaliser (xor-shift-multiply, "lowbias32" constants)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def swap_permutation(n: int, seed_key: int, step: torch.Tensor) -> torch.Tensor:
    """A permutation of ``range(n)`` that depends only on (trial seed, step index): a hash of
    (seed, step, position) sorted. Integer ops on the device: no RNG state, no host sync (so a
    CUDA graph can replay it), the same on CPU and CUDA, and exact across a resume."""
    step_key = _mix32((step.to(torch.int64) ^ seed_key) & _MASK32)
    position = torch.arange(n, device=step.device, dtype=torch.int64)
    keys = _mix32(_mix32((position + 0x9E3779B9) & _MASK32) ^ step_key)
    return torch.argsort(keys, stable=True)


def _seed_key(seed: int) -> int:
    digest = hashlib.sha256(f"rest-sweep/{int(seed)}/disent-swap".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class Disent(Method):
    """``model`` is the intrinsic encoder with head ``model.fc`` over ``[z_i, z_b]`` (evaluated,
    with ``bias_model``'s encoder); ``bias_model.fc`` is the bias head."""

    @classmethod
    def checkpoint_schedule(cls, cfg: TrialConfig, steps_per_epoch: int) -> list[CheckpointStage]:
        return with_biased_network(super().checkpoint_schedule(cfg, steps_per_epoch), cfg)

    def __init__(self, ctx: TrialContext) -> None:
        from torch import nn

        from trainables.optimizers import build_optimizer
        from trainables.train.optim import EpochSchedule

        super().__init__(ctx)  # self.dense_flops stays the single-network ERM reference
        cfg = self.cfg
        self.bias_model = second_model(ctx)
        features = self.model.fc.in_features
        head_flops = self.layer_flops.get("fc.weight", 2.0 * features * cfg.num_classes)
        self.encoder_flops = self.dense_flops - head_flops
        # Heads over the concatenation (the public fc = Linear(2 * feature size, classes)), drawn
        # after both encoders; the optimizers are rebuilt over the new heads.
        self.model.fc = nn.Linear(2 * features, cfg.num_classes).to(ctx.device)
        self.bias_model.fc = nn.Linear(2 * features, cfg.num_classes).to(ctx.device)
        self.head_flops = 2.0 * 2 * features * cfg.num_classes
        self.optimizer = build_optimizer(self.model.parameters(), cfg, ctx.device)
        self.schedule = EpochSchedule(self.optimizer, cfg)
        self.bias_optimizer = build_optimizer(self.bias_model.parameters(), cfg, ctx.device)
        self.bias_schedule = EpochSchedule(self.bias_optimizer, cfg)
        self.forward = self.model  # encoders and heads are called apart; no torch.compile
        labels = ctx.train.labels
        self.ema_intrinsic = LossEma(labels, cfg.num_classes, cfg.ema_alpha, ctx.device)
        self.ema_bias = LossEma(labels, cfg.num_classes, cfg.ema_alpha, ctx.device)
        # 0-based index of the next step, on the device so a graphed step reads and bumps it.
        self.steps = torch.zeros((), dtype=torch.int64, device=ctx.device)
        self.seed_key = _seed_key(cfg.seed)
        self.host_step = 0  # steps done, for the FLOPs of the last step (set in after_step)
        self.last_swap_loss: torch.Tensor | None = None  # lambda_swap * on * L_swap, detached

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.features(x), self.bias_model.features(x)

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        y = batch.y
        x = self.ctx.prepare(batch.x)
        perm = swap_permutation(y.shape[0], self.seed_key, self.steps)
        with self.ctx.autocast():
            z_i, z_b = self._features(x)
            pred_i = self.model.fc(torch.cat((z_i, z_b.detach()), dim=1))
            pred_b = self.bias_model.fc(torch.cat((z_i.detach(), z_b), dim=1))
            z_b_swap = z_b[perm]
            swap_i = self.model.fc(torch.cat((z_i, z_b_swap.detach()), dim=1))
            swap_b = self.bias_model.fc(torch.cat((z_i.detach(), z_b_swap), dim=1))
        ce = torch.nn.functional.cross_entropy
        ce_i = ce(pred_i.float(), y, reduction="none")
        ce_b = ce(pred_b.float(), y, reduction="none")
        weight = difficulty_weights(self.ema_bias, self.ema_intrinsic, ce_b, ce_i, batch.index, y)
        q = cfg.gce_q
        # The public GeneralizedCELoss multiplies the GCE gradient by q once more.
        loss_dis = (weight * ce_i).mean() + cfg.disent_lambda_dis * (
            q * gce_loss(pred_b, y, q)
        ).mean()
        loss_swap = (weight * ce(swap_i.float(), y, reduction="none")).mean() + (
            cfg.disent_lambda_swap_align * (q * gce_loss(swap_b, y[perm], q)).mean()
        )
        # Swapping is on for steps with 0-based index > curr_step (learner.py); a 0/1 factor on
        # the device keeps the step free of host decisions (the swap heads are a few k FLOPs).
        on = (self.steps > cfg.disent_swap_step).to(loss_swap.dtype)
        swap_term = cfg.disent_lambda_swap * on * loss_swap
        (loss_dis + swap_term).backward()
        self.optimizer.step()
        self.bias_optimizer.step()
        self.steps.add_(1)
        self.last_swap_loss = swap_term.detach()
        return pred_i, ce_i

    def after_step(self, step: int) -> bool:
        """StepLR(lr_decay_step, lr_gamma) stepped after every step with 0-based index >=
        curr_step, as the public code: the LR is multiplied by gamma after step ``step``
        (1-based) when ``step - curr_step`` is a positive multiple of ``lr_decay_step``."""
        self.host_step = step
        cfg = self.cfg
        every, since = cfg.disent_lr_decay_step, step - cfg.disent_swap_step
        if every > 0 and since > 0 and since % every == 0:
            for optimizer in self.optimizers():
                for group in optimizer.param_groups:
                    lr = float(group["lr"]) * cfg.disent_lr_gamma
                    if isinstance(group["lr"], torch.Tensor):  # a graph reads this tensor
                        group["lr"].fill_(lr)
                    else:
                        group["lr"] = lr
        return False

    def after_epoch(self, epoch: int, row: Mapping[str, Any]) -> None:
        super().after_epoch(epoch, row)
        self.bias_schedule.step(row["valid_loss"])

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        with self.ctx.autocast():
            z_i, z_b = self._features(self.ctx.prepare(x))
            return self.model.fc(torch.cat((z_i, z_b), dim=1))

    def modules(self) -> list:
        return [self.model, self.bias_model]

    def optimizers(self) -> list:
        return [self.optimizer, self.bias_optimizer]

    def graph_state(self) -> list[torch.Tensor]:
        return [*self.ema_intrinsic.tensors(), *self.ema_bias.tensors(), self.steps]

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            **pair_state("bias", self.bias_model, self.bias_optimizer, self.bias_schedule),
            "ema_intrinsic": self.ema_intrinsic.state_dict(),
            "ema_bias": self.ema_bias.state_dict(),
            "disent_steps": int(self.steps),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        load_pair_state("bias", state, self.bias_model, self.bias_optimizer, self.bias_schedule)
        self.ema_intrinsic.load_state_dict(state["ema_intrinsic"])
        self.ema_bias.load_state_dict(state["ema_bias"])
        self.steps.fill_(int(state["disent_steps"]))
        self.host_step = int(state["disent_steps"])

    # ------------------------------------------------------------------ size and FLOPs
    def forward_flops(self) -> float:
        """Inference: both encoders and the intrinsic head over ``[z_i, z_b]``."""
        return 2.0 * self.encoder_flops + self.head_flops

    def step_flops(self, n: int, dense_gradient: bool) -> float:
        """Forward and backward (3x) of both encoders and both heads, plus both heads again on
        the swapped features on the steps that swap (before, their loss weight is 0)."""
        swapped = self.host_step - 1 > self.cfg.disent_swap_step
        heads = (4 if swapped else 2) * self.head_flops
        return 3.0 * n * (2.0 * self.encoder_flops + heads)

    def parameter_counts(self) -> tuple[int, int]:
        """Weights the prediction uses: both encoders and the intrinsic head."""
        from trainables.sparse import maskable_parameters

        total = sum(p.numel() for p in maskable_parameters(self.model).values())
        bias = maskable_parameters(self.bias_model)
        total += sum(p.numel() for name, p in bias.items() if not name.startswith("fc."))
        return total, total


METHOD = MethodInfo(
    "disent",
    "DisEnt: intrinsic/bias encoders, relative-difficulty weights, feature swapping",
    Disent,
    params=(DifficultyParams, DisentParams),
    labels="none",
    display_name="DisEnt",
    colour="#e377c2",
    networks=2,
)
