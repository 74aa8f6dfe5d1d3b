"""``dfr``: Deep Feature Reweighting (Kirichenko et al. 2022), DFR on the validation split.

ERM trains the network for the whole epoch budget. After the last epoch's training and before
its evaluation (:meth:`Dfr.before_evaluate`), the classifier (``model.fc``) is refitted on the
frozen network's penultimate features of group-balanced subsets of the VALIDATION split, as
``dfr_evaluate_spurious.py`` (PolinaKirichenko/deep_feature_reweighting) does for DFR(Val):

1. features of every valid sample (eval mode, evaluation transform), standardised;
2. tuning (unless ``dfr_c`` is given): a random half of the valid split, balanced to the size
   of its smallest group, fits an L1-regularised logistic regression for every C of the
   grid; the other half scores each by worst-group accuracy;
3. ``dfr_retrains`` fits with the chosen C, each on a fresh balanced subset of the whole valid
   split; their weights and biases are averaged and written into ``model.fc``.

The logistic regression is multinomial (the network's softmax head), minimising the mean
cross-entropy plus ``||W||_1 / (C n)`` (liblinear's ``C * sum(loss) + ||w||_1`` divided by
``C n``; the bias is not penalised) by ``dfr_steps`` full-batch FISTA steps (proximal
gradient, exact zeros) in torch. Only the final epoch is DFR's model, so it is the only one
``selection=best-valid`` may report. Training reads no group label, but the refit reads the
validation split's (label, bias) labels: the method's ``labels`` is ``group``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from trainables.lazy import lazy_module
from trainables.methods.base import Method, MethodInfo
from trainables.methods.params import ParamGroup, param

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")  # planning imports this module without loading torch

# dfr_evaluate_spurious.py's C_OPTIONS (inverse L1 strength), searched when dfr_c is 0.
C_GRID = (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)
FEATURE_BATCH = 1024


@dataclass(frozen=True)
class DfrParams(ParamGroup):
    """The last-layer refit on the validation split."""

    order: ClassVar[int] = 42

    dfr_groups: str = param(
        "cells",
        "DFR: groups balanced in the valid subset: (label, bias) cells present in the split, "
        "or bias-aligned vs bias-conflicting",
        choices=("cells", "bias"),
    )
    dfr_c: float = param(
        0.0, "DFR: inverse L1 strength C of the last layer; 0 = tune over the paper's grid"
    )
    dfr_retrains: int = param(
        20, "DFR: balanced subsets whose fitted last layers are averaged (num_retrains)"
    )
    dfr_steps: int = param(500, "DFR: full-batch FISTA steps of each logistic-regression fit")

    @classmethod
    def check(cls, cfg: Any, method: MethodInfo, check) -> None:
        check(cfg.dfr_c >= 0, "dfr_c", cfg.dfr_c, "0 (tune) or a number > 0")
        check(cfg.dfr_retrains >= 1, "dfr_retrains", cfg.dfr_retrains, "an integer >= 1")
        check(cfg.dfr_steps >= 1, "dfr_steps", cfg.dfr_steps, "an integer >= 1")
        if method.takes(cls):
            why = "(dfr refits its last layer on the valid split, which must stay held out)"
            check(not cfg.train_on_valid, "train_on_valid", cfg.train_on_valid, f"false {why}")


def group_ids(y: torch.Tensor, b: torch.Tensor, groups: str, num_classes: int) -> torch.Tensor:
    if groups == "cells":
        return y * num_classes + b
    return (y != b).long()


def balanced_subset(group: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Positions into ``group`` (CPU int64): the same number of random samples from every
    group present, the size of the smallest present group (empty groups are skipped)."""
    present = torch.unique(group)
    members = [torch.nonzero(group == g).flatten() for g in present.tolist()]
    size = min(len(m) for m in members)
    picks = [m[torch.randperm(len(m), generator=generator)[:size]] for m in members]
    return torch.cat(picks)


def worst_group_accuracy(pred: torch.Tensor, y: torch.Tensor, b: torch.Tensor) -> float:
    """The core's worst group: min(aligned, conflicting) accuracy; -1 if either is absent."""
    correct = (pred == y).double()
    aligned = y == b
    if aligned.all() or not aligned.any():
        return -1.0
    return min(float(correct[aligned].mean()), float(correct[~aligned].mean()))


def fit_logistic(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, c: float, steps: int
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Multinomial logistic regression, mean CE + ||W||_1 / (c n), by FISTA from zero.

    Returns (W (K, d), bias (K,), FLOPs spent); :func:`fit_logistic_batch` for one sample.
    """
    w, bias, flops = fit_logistic_batch(x[None], y[None], num_classes, [c], steps)
    return w[0], bias[0], flops


def fit_logistic_batch(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, cs: list[float], steps: int
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """R independent fits at once: x (R, n, d), y (R, n), one C per fit; returns W (R, K, d),
    bias (R, K) and the FLOPs of all of them.

    The step of fit r is 1/L_r with L_r = ||[x_r, 1]||_2^2 / (2 n), Boehning's bound on the
    Hessian of the mean softmax cross-entropy; the L1 proximal step (soft-thresholding) skips
    the bias row.
    """
    fits, n, d = x.shape
    design = torch.cat([x, torch.ones(fits, n, 1, dtype=x.dtype, device=x.device)], dim=2)
    lipschitz = torch.linalg.matrix_norm(design, ord=2).square() / (2.0 * n)
    step = (1.0 / lipschitz.clamp(min=1e-12)).view(fits, 1, 1)
    c = torch.tensor(cs, dtype=x.dtype, device=x.device).view(fits, 1, 1)
    threshold = step / (c * n)
    penalised = torch.ones(1, d + 1, 1, dtype=x.dtype, device=x.device)
    penalised[:, d] = 0.0  # the bias row is not penalised
    threshold = threshold * penalised
    target = torch.nn.functional.one_hot(y, num_classes).to(x.dtype)
    design_t = design.transpose(1, 2) / n
    theta = torch.zeros(fits, d + 1, num_classes, dtype=x.dtype, device=x.device)
    point, t = theta, 1.0
    for _ in range(steps):
        grad = design_t @ (torch.softmax(design @ point, dim=2) - target)
        moved = point - step * grad
        new = moved.sign() * (moved.abs() - threshold).clamp(min=0)
        t_next = (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0
        point = new + ((t - 1.0) / t_next) * (new - theta)
        theta, t = new, t_next
    flops = steps * 3.0 * 2.0 * fits * n * (d + 1) * num_classes  # forward + gradient, linear
    return theta[:, :d].transpose(1, 2).contiguous(), theta[:, d].contiguous(), flops


class Dfr(Method):
    """ERM, then the last layer refitted on balanced validation features after the last epoch."""

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        if ctx.valid is None:
            raise ValueError("dfr needs the validation split in its TrialContext (valid=...)")
        self.chosen_c = float(self.cfg.dfr_c) if self.cfg.dfr_c > 0 else float("nan")

    def valid_features(self, epoch: int) -> torch.Tensor:
        """Penultimate features (the classifier's input) of every valid sample, in order."""
        valid = self.ctx.valid
        captured: list[torch.Tensor] = []
        hook = self.model.fc.register_forward_pre_hook(
            lambda module, args: captured.append(args[0].float())
        )
        self.model.eval()
        try:
            for batch in valid.batches(
                FEATURE_BATCH, epoch=epoch, seed=self.cfg.seed, shuffle=False
            ):
                # the eager module: forward hooks and torch.compile mix badly
                with torch.no_grad(), self.ctx.autocast():
                    self.model(self.ctx.prepare(batch.x))
        finally:
            hook.remove()
            self.model.train()
        return torch.cat(captured)

    def before_evaluate(self, epoch: int) -> float:
        if epoch != self.cfg.epochs:
            return 0.0
        return self.refit(epoch)

    def refit(self, epoch: int) -> float:
        """DFR(Val): tune C, fit ``dfr_retrains`` balanced subsets, average into ``model.fc``;
        returns the FLOPs spent (valid forward passes plus the fits)."""
        cfg = self.cfg
        valid = self.ctx.valid
        features = self.valid_features(epoch)
        flops = valid.n * self.forward_flops()
        # Standardised with the whole valid split's statistics (StandardScaler: ddof 0, 0 -> 1).
        mean = features.mean(dim=0)
        std = features.std(dim=0, unbiased=False)
        std = torch.where(std > 0, std, torch.ones_like(std))
        x = ((features - mean) / std).cpu().double()
        y = valid.labels.cpu()
        b = valid.bias.cpu()
        group = group_ids(y, b, cfg.dfr_groups, cfg.num_classes)
        generator = torch.Generator().manual_seed(cfg.seed)
        if cfg.dfr_c > 0:
            c = float(cfg.dfr_c)
        else:
            c, spent = self.tune(x, y, b, group, generator)
            flops += spent
        # Every balanced subset has the same size, so the fits run as one batch.
        subsets = torch.stack([balanced_subset(group, generator) for _ in range(cfg.dfr_retrains)])
        retrains = [c] * cfg.dfr_retrains
        w, bias, spent = fit_logistic_batch(
            x[subsets], y[subsets], cfg.num_classes, retrains, cfg.dfr_steps
        )
        flops += spent
        w, bias = w.mean(dim=0), bias.mean(dim=0)
        # Fold the standardisation into the layer: W (f - mu) / sigma + b.
        mean, std = mean.cpu().double(), std.cpu().double()
        fc = self.model.fc
        with torch.no_grad():
            fc.weight.copy_((w / std).to(fc.weight.dtype))
            fc.bias.copy_((bias - (w / std) @ mean).to(fc.bias.dtype))
        self.chosen_c = c
        return flops

    def tune(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        b: torch.Tensor,
        group: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[float, float]:
        """C of the grid with the best worst-group accuracy on a held-out half (ties: the
        larger C, the grid's order); returns (C, FLOPs)."""
        cfg = self.cfg
        order = torch.randperm(len(y), generator=generator)
        held, fit = order[: len(y) // 2], order[len(y) // 2 :]
        subset = fit[balanced_subset(group[fit], generator)]
        grid = len(C_GRID)
        weights, biases, flops = fit_logistic_batch(
            x[subset].expand(grid, -1, -1),
            y[subset].expand(grid, -1),
            cfg.num_classes,
            list(C_GRID),
            cfg.dfr_steps,
        )
        best, best_score = C_GRID[0], -float("inf")
        for c, w, bias in zip(C_GRID, weights, biases, strict=True):
            pred = (x[held] @ w.T + bias).argmax(dim=1)
            score = worst_group_accuracy(pred, y[held], b[held])
            if score > best_score:
                best, best_score = c, score
        return best, flops

    def selectable(self, epoch: int) -> bool:
        return epoch == self.cfg.epochs  # earlier epochs are the ERM base model, not DFR

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "dfr_c": self.chosen_c}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.chosen_c = float(state["dfr_c"])


METHOD = MethodInfo(
    "dfr",
    "Deep Feature Reweighting: ERM, then the last layer refitted on balanced validation data",
    Dfr,
    params=(DfrParams,),
    labels="group",
    display_name="DFR",
)
