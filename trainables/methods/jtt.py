"""``jtt``: Just Train Twice (Liu et al. 2021): ERM for T epochs, then a fresh network with the
first one's training errors up-weighted.

Stage 1 (epochs 1..T, ``jtt_epochs``): the identification model trains with plain ERM. The
error set E is, by default (``jtt_error_set=train``, anniesch/jtt's ``wrong_1_times``), the
samples the training forward passes of epoch T misclassified: each batch's prediction as it
trains (augmented, train mode, before that batch's step), recorded inside the step. The option
``eval`` instead classifies the training split after epoch T without augmentation in eval mode.
E is fixed in :meth:`Jtt.before_evaluate` of epoch T (its metrics row is still the
identification model's). In :meth:`Jtt.after_epoch` of epoch T the network
is re-initialised from the trial seed and the optimizer and LR schedule start afresh, all
written into the same tensors (so a captured CUDA graph keeps replaying the right step), and
epochs T+1..``epochs`` train that second model with E up-weighted by ``1 + jtt_upweight``:
drawn more often (``jtt_reweight=resample``, the paper's up-sampling) or weighted in the loss
(``loss``). Training reads no bias or group label; ``selection=best-valid`` (validation group
labels, as the paper selects) ranks only the second model's epochs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from trainables.checkpoints import CheckpointStage, add_to_every_stage
from trainables.lazy import lazy_module
from trainables.methods.base import Method, MethodInfo
from trainables.methods.params import ParamGroup, param

if TYPE_CHECKING:
    import torch

    from trainables.config import TrialConfig
    from trainables.data import Batch
else:
    torch = lazy_module("torch")  # planning imports this module without loading torch

ERROR_SET_BATCH = 1024
# Where the error set comes from. ``train``: the predictions the training forward passes of
# epoch T make (anniesch/jtt train.py:44-45 model.train(), :78 outputs = model(x) before the
# step at :117/:122; written to output_train_epoch_{epoch}.csv at :141-143 and read as
# wrong_1_times by process_training.py:31-33). ``eval``: an extra eval-mode pass over the
# training split without augmentation after epoch T (a deviation, kept as an option).
ERROR_SETS = ("train", "eval")
# The recipes' T: JTT's CelebA setting, process_training.py --final_epoch 1 (README.md:87),
# names the output file of 0-based epoch 1 (train.py:254 counts epochs from epoch_offset = 0,
# run_expt.py:174): the predictions made during the second epoch, after one full epoch. Our
# jtt_epochs counts 1-based stage-1 epochs and reads the errors of its last one, hence 2.
RECIPE_JTT_EPOCHS = 2


@dataclass(frozen=True)
class JttParams(ParamGroup):
    """JTT's two stages; the total training stays ``epochs`` (T for stage 1, the rest for 2)."""

    order: ClassVar[int] = 40

    jtt_epochs: int = param(
        1,
        "JTT: epochs of the identification model (stage 1), the error set read from the last "
        "one; must be < epochs (the recipes give 2: JTT's final_epoch 1 is 0-based)",
    )
    jtt_upweight: float = param(
        50.0,
        "JTT: lambda_up, extra weight of each error-set sample (total 1 + lambda_up); "
        "-1 = floor((N - |E|) / |E|) - 1, as run_expt.py's up_weight=-1",
    )
    jtt_reweight: str = param(
        "resample",
        "JTT: up-weight the error set by draws with replacement (the paper's up-sampling) "
        "or by the loss",
        choices=("resample", "loss"),
    )
    jtt_error_set: str = param(
        "eval",
        "JTT: the error set: train (the predictions of epoch T's training forward passes, as "
        "anniesch/jtt; the recipes' value) or eval (an eval-mode pass without augmentation "
        "after epoch T)",
        choices=ERROR_SETS,
    )

    # Both recipes (REST's code has no JTT): anniesch/jtt's error set and its T (ParamGroup).
    RECIPES_GIVE: ClassVar[dict[str, Any]] = {
        "jtt_error_set": "train",
        "jtt_epochs": RECIPE_JTT_EPOCHS,
    }

    @classmethod
    def check(cls, cfg: Any, method: MethodInfo, check) -> None:
        check(cfg.jtt_epochs >= 1, "jtt_epochs", cfg.jtt_epochs, "an integer >= 1")
        if method.takes(cls):
            check(
                cfg.jtt_epochs < cfg.epochs,
                "jtt_epochs",
                cfg.jtt_epochs,
                f"an integer < epochs ({cfg.epochs}): stage 2 needs at least one epoch",
            )
        check(
            cfg.jtt_upweight == -1 or cfg.jtt_upweight >= 0,
            "jtt_upweight",
            cfg.jtt_upweight,
            "-1 (automatic) or a number >= 0",
        )


class Jtt(Method):
    """One network trained twice; the error set of the first run up-weights the second."""

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        n = ctx.train.n
        self.stage2 = False
        self.error = torch.zeros(n, dtype=torch.bool, device=ctx.device)
        # Loss weights of every training sample and their mean, read inside the step (graphable):
        # all ones in stage 1, so the loss is ERM's mean exactly.
        self.weights = torch.ones(n, device=ctx.device)
        self.mean_weight = torch.ones((), device=ctx.device)
        # jtt_error_set=train: the step writes each sample's train-mode mistake into
        # ``train_wrong`` while ``recording`` is on (epoch T only; a device flag, so a captured
        # graph records too).
        self.train_wrong = torch.zeros(n, dtype=torch.bool, device=ctx.device)
        self.recording = torch.zeros((), dtype=torch.bool, device=ctx.device)
        self._stage_schedule(self.cfg.jtt_epochs)

    # ------------------------------------------------------------------ stage switch
    def _stage_schedule(self, epochs: int) -> None:
        """Each model gets its own schedule: cosine anneals over its own stage."""
        if self.schedule.kind == "cosine":
            self.schedule.scheduler.T_max = epochs

    def misclassified(self, epoch: int) -> torch.Tensor:
        """Which training samples the current network gets wrong, without training
        augmentation (the evaluation transform), in eval mode: JTT's error set at ``epoch``."""
        from trainables.data import make_transform

        cfg = self.cfg
        train = self.ctx.train
        transform = make_transform(cfg.augment, cfg.dataset, False, cfg.normalisation)
        self.model.eval()
        wrong = torch.zeros(train.n, dtype=torch.bool, device=self.ctx.device)
        for start in range(0, train.n, ERROR_SET_BATCH):
            index = torch.arange(start, min(start + ERROR_SET_BATCH, train.n), device=wrong.device)
            images = train.images.index_select(0, index)
            if transform.draws_per_index:
                x = transform(images, index=index, seed=cfg.seed, epoch=epoch)
            else:
                x = transform(images)
            with torch.no_grad():
                logits = self.predict(x)
            wrong[index] = logits.argmax(dim=1) != train.labels.index_select(0, index)
        self.model.train()
        return wrong

    def before_epoch(self, epoch: int) -> None:
        # Record during epoch T only.
        record = epoch == self.cfg.jtt_epochs and self.cfg.jtt_error_set == "train"
        self.recording.fill_(record)
        if record:  # an epoch T restarted after an interruption records afresh
            self.train_wrong.zero_()

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        logits, losses = super().train_step(batch)
        # The batch's prediction before its step, in train mode on the augmented input: what
        # anniesch/jtt's run_epoch writes to output_train_epoch_{epoch}.csv.
        wrong = logits.detach().argmax(dim=1) != batch.y
        index = batch.index
        self.train_wrong[index] = torch.where(self.recording, wrong, self.train_wrong[index])
        return logits, losses

    def before_evaluate(self, epoch: int) -> float:
        if epoch != self.cfg.jtt_epochs:
            return 0.0
        if self.cfg.jtt_error_set == "train":
            self.recording.fill_(False)
            self.error.copy_(self.train_wrong)
            return 0.0  # read off the training steps: no extra pass
        self.error.copy_(self.misclassified(epoch))
        return self.ctx.train.n * self.forward_flops()  # one forward pass over the split

    def after_epoch(self, epoch: int, row: Mapping[str, Any]) -> None:
        if epoch != self.cfg.jtt_epochs:
            super().after_epoch(epoch, row)
            return
        self._reinitialise()
        self._set_weights()
        self.stage2 = True

    def _reinitialise(self) -> None:
        """A fresh network (seeded like the first), optimizer and schedule, in place."""
        from trainables.train.optim import EpochSchedule

        fresh = self.ctx.new_model()
        with torch.no_grad():
            self.model.load_state_dict(fresh.state_dict())  # copies into the same tensors
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(self.cfg.lr)
            else:
                group["lr"] = self.cfg.lr
        # Zeroed moments (and step count) update exactly like a fresh optimizer's lazily created
        # state: Adam's step 0 with zero moments, or SGD's buffer 0 * momentum + grad.
        for state in self.optimizer.state.values():
            for value in state.values():
                if isinstance(value, torch.Tensor):
                    value.zero_()
        self.schedule = EpochSchedule(self.optimizer, self.cfg)
        self._stage_schedule(self.cfg.epochs - self.cfg.jtt_epochs)

    def upweight(self) -> float:
        """lambda_up; -1 picks floor((N - |E|) / |E|) - 1 (run_expt.py), so that E ends up about
        half the draws."""
        lam = float(self.cfg.jtt_upweight)
        if lam != -1:
            return lam
        errors = int(self.error.sum())
        return float(max((self.ctx.train.n - errors) // max(errors, 1) - 1, 0))

    def _set_weights(self) -> None:
        weights = torch.where(self.error, 1.0 + self.upweight(), 1.0).float()
        if self.cfg.jtt_reweight == "loss":
            self.weights.copy_(weights)
            self.mean_weight.copy_(weights.mean())

    # ------------------------------------------------------------------ training hooks
    def loss(self, losses: torch.Tensor, batch: Batch) -> torch.Tensor:
        # Weighted mean over the split's mean weight: an unbiased estimate of the loss on the
        # up-sampled training set. Stage 1 (and resample mode) has all weights 1.
        return (losses * self.weights[batch.index]).mean() / self.mean_weight

    def sampling_weights(self) -> torch.Tensor | None:
        if not self.stage2 or self.cfg.jtt_reweight != "resample":
            return None
        return torch.where(self.error, 1.0 + self.upweight(), 1.0).float()

    def selectable(self, epoch: int) -> bool:
        return epoch > self.cfg.jtt_epochs  # only the final model is JTT's

    def graph_state(self) -> list[torch.Tensor]:
        return [self.weights, self.mean_weight, self.train_wrong]

    # ------------------------------------------------------------------ checkpoint
    @classmethod
    def checkpoint_schedule(cls, cfg: TrialConfig, steps_per_epoch: int) -> list[CheckpointStage]:
        # The error set: one bool per training sample.
        return add_to_every_stage(super().checkpoint_schedule(cfg, steps_per_epoch), sample_bytes=1)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "jtt_stage2": self.stage2,
            "jtt_error": self.error.cpu().clone(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.stage2 = bool(state["jtt_stage2"])
        self.error.copy_(state["jtt_error"])
        if self.stage2:
            self._set_weights()


METHOD = MethodInfo(
    "jtt",
    "Just Train Twice: ERM for T epochs, then a fresh network with its errors up-weighted",
    Jtt,
    params=(JttParams,),
    labels="none",
    objective="jtt",
    display_name="JTT",
)
