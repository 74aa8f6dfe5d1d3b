"""Parameter groups shared by several methods, and the helpers every method's parameters use.

A method's parameters are a frozen dataclass whose fields join :class:`TrialConfig` under flat
keys (the trial hash covers them like any other field, and only when they differ from their
defaults, so adding a parameter with a neutral default keeps every existing hash). A group
also says what each recipe sets and which values are invalid for the method at hand.

Torch-free: config validation, grids, status and analysis import this.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from trainables.sparse.densities import DENSITY_ALLOWED, DENSITY_RULES, density_allowed
from trainables.sparse.schedules import DROP_ROUNDING, SCHEDULES
from trainables.sparse.updaters import GROWTH

if TYPE_CHECKING:
    from trainables.datasets import DatasetInfo
    from trainables.methods.base import MethodInfo

Check = Callable[[bool, str, Any, str], None]


def param(
    default: Any, help: str, *, choices: tuple[Any, ...] | None = None, identity: bool = True
) -> Any:
    """A config field: its default, one line of help, allowed values, and whether it is part
    of the trial's identity (where a trial runs is not; what it computes is)."""
    return field(default=default, metadata={"help": help, "choices": choices, "identity": identity})


class ParamGroup:
    """Base of a parameter dataclass: recipe values and validation for one method.

    ``order`` places the group's fields among the config's (and checks run in that order).
    """

    order: ClassVar[int] = 100
    # Values both recipes give a method that takes the group, where they differ from the field
    # defaults: the defaults keep the first version's meaning for stored configs, so a fidelity
    # fix moves the hash of the trials it changes instead of silently changing old ones.
    RECIPES_GIVE: ClassVar[dict[str, Any]] = {}

    @classmethod
    def recipe_values(
        cls,
        recipe: str,
        dataset: DatasetInfo,
        ratio: float,
        method: MethodInfo,
        given: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """Values ``recipe`` gives these fields for ``method`` (which may not take the group);
        ``given`` names fields the caller sets itself. The default: :attr:`RECIPES_GIVE` to a
        method that takes the group, under every recipe."""
        return dict(cls.RECIPES_GIVE) if method.takes(cls) else {}

    @classmethod
    def check(cls, cfg: Any, method: MethodInfo, check: Check) -> None:
        """Call ``check(ok, field, value, allowed)`` for every rule of this group."""

    @classmethod
    def plan_check(cls, cfg: Any, method: MethodInfo, check: Check) -> None:
        """Like :meth:`check`, for rules that refuse planning a new trial only
        (``trainables.config.check_plan``): a stored config (a ledger entry, a trial's
        config.json) that breaks one still loads, so an existing experiment stays readable."""


@dataclass(frozen=True)
class SparseParams(ParamGroup):
    """Dynamic (or static) sparse training: mask init, prune-and-grow schedule (docs/sparse.md)."""

    order: ClassVar[int] = 10

    density: float = param(1.0, "global weight density in (0, 1]; 1.0 for dense methods")
    sparse_init: str = param("erk", "layer-density rule", choices=tuple(DENSITY_RULES))
    growth: str = param("gradient", "grow criterion", choices=tuple(GROWTH))
    drop_fraction: float = param(0.3, "initial fraction of active weights dropped per update")
    drop_schedule: str = param(
        "rigl",
        "drop-fraction schedule: rigl (cosine to 0 at drop_end) or rest (cosine over all "
        "steps to 0.005, never stops)",
        choices=tuple(SCHEDULES),
    )
    drop_end: float = param(0.75, "fraction of training after which mask updates stop (rigl)")
    update_frequency: int = param(1000, "optimizer steps between mask updates")
    reset_momentum: bool = param(True, "zero the first moment of newly grown weights (RigL)")
    dense_first_layer: bool = param(False, "keep the first conv dense")
    dense_last_layer: bool = param(False, "keep the classifier dense")
    reset_second_moment: bool = param(
        True,
        "with reset_momentum: also zero Adam's second moment of grown weights (makes their "
        "first steps several times too large; the paper recipe keeps it, docs/presets.md)",
    )
    drop_rounding: str = param(
        "floor",
        "drop count per layer: floor(f * active) or ceil (the public REST code)",
        choices=tuple(DROP_ROUNDING),
    )

    # Values each recipe has always written for every method, sparse or not: they are in the
    # identity of existing dense trials, so they stay recipe-wide to keep those hashes.
    LEGACY: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {
            "drop_fraction": 0.3,
            "drop_schedule": "rigl",
            "drop_end": 0.75,
            "reset_momentum": True,
            "update_frequency": 1000,
            "sparse_init": "erk",
        },
        "rest-code": {
            "drop_fraction": 0.5,
            "drop_schedule": "rest",
            "reset_momentum": False,
            "update_frequency": 1000,
            "sparse_init": "erk",
        },
    }
    # Values only methods that update masks get (fields added after the first experiments).
    SPARSE_ONLY: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"reset_second_moment": False},
        "rest-code": {"drop_rounding": "ceil"},
    }

    @classmethod
    def recipe_values(
        cls,
        recipe: str,
        dataset: DatasetInfo,
        ratio: float,
        method: MethodInfo,
        given: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        values = dict(cls.LEGACY[recipe])
        if method.takes(cls) and getattr(method.implementation, "mask_updates", False):
            values.update(cls.SPARSE_ONLY[recipe])
        return values

    @classmethod
    def check(cls, cfg: Any, method: MethodInfo, check: Check) -> None:
        check(density_allowed(cfg.density), "density", cfg.density, DENSITY_ALLOWED)
        if not method.takes(cls):
            check(
                cfg.density == 1.0, "density", cfg.density, f"1.0 (method {method.name!r} is dense)"
            )
        check(
            cfg.update_frequency > 0, "update_frequency", cfg.update_frequency, "a positive integer"
        )
        check(0 <= cfg.drop_fraction < 1, "drop_fraction", cfg.drop_fraction, "a number in [0, 1)")
        check(0 < cfg.drop_end <= 1, "drop_end", cfg.drop_end, "a number in (0, 1]")


@dataclass(frozen=True)
class ObjectiveParams(ParamGroup):
    """The training objective of a sparse-training method (sparsity x objective)."""

    order: ClassVar[int] = 15

    # Its names are the method registry's objectives (``trainables.methods.objectives()``),
    # checked where the registry is known: ``trainables.config.validate``.
    objective: str = param(
        "erm",
        "training objective of a sparse-training method (static, set, rigl): erm, reweight, "
        "groupdro, jtt (trainables.methods.objectives())",
    )


@dataclass(frozen=True)
class ReweightParams(ParamGroup):
    """Up-weighting of bias-conflicting samples, by the loss or by resampling (docs/presets.md)."""

    order: ClassVar[int] = 20

    reweight: str = param(
        "none", "how conflicting samples are up-weighted", choices=("none", "loss", "resample")
    )
    upweight: float = param(1.0, "weight of a bias-conflicting sample relative to an aligned one")
    reweight_normalise: bool = param(
        False,
        "divide the weighted loss by the training set's mean weight, so that up-weighting does "
        "not scale the data gradient against coupled weight decay (paper recipe: true)",
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
            return {"reweight": "none", "upweight": 1.0}
        if recipe == "paper":
            # Eq. 6 with the paper's factor per ratio; BFFHQ's table holds its single ratio.
            values = {"reweight": "loss", "reweight_normalise": True}
            if "upweight" not in given:
                values["upweight"] = dataset.paper_upweight(ratio)  # raises off the table
            return values
        return {"reweight": "resample", "upweight": REST_CODE_UPWEIGHT}

    @classmethod
    def check(cls, cfg: Any, method: MethodInfo, check: Check) -> None:
        check(cfg.upweight >= 1, "upweight", cfg.upweight, "a number >= 1")
        if method.takes(cls):
            check(
                cfg.reweight != "none",
                "reweight",
                cfg.reweight,
                f"loss or resample (method {method.name!r} up-weights)",
            )
        else:
            why = f"(method {method.name!r} does not up-weight)"
            check(cfg.reweight == "none", "reweight", cfg.reweight, f"none {why}")
            check(cfg.upweight == 1.0, "upweight", cfg.upweight, f"1.0 {why}")
            normalise = cfg.reweight_normalise
            check(not normalise, "reweight_normalise", normalise, f"false {why}")


REST_CODE_UPWEIGHT = 80.0  # hard-coded in the public code's sampler, whatever the ratio


@dataclass(frozen=True)
class NoiseParams(ParamGroup):
    """Label noise on the training split, for every method (docs/data.md, "Label noise").

    A core group: ``trainables.config`` composes it into every config; no method lists it.
    The neutral defaults (no noise) keep every existing trial hash.
    """

    order: ClassVar[int] = 5

    noise_type: str = param(
        "none",
        "training-label noise: symmetric (uniform to the other classes), asymmetric (the "
        "dataset's class map), pairflip (c -> c+1 mod K); valid/test stay clean",
        choices=("none", "symmetric", "asymmetric", "pairflip"),
    )
    noise_fraction: float = param(
        0.0, "fraction of each class's training labels that noise_type flips, in [0, 1)"
    )
    random_labels_fraction: float = param(
        0.0,
        "fraction of training labels replaced by uniform draws over all classes, in [0, 1) "
        "(SDD/OpenLTH; the true class can be redrawn)",
    )

    @classmethod
    def check(cls, cfg: Any, method: MethodInfo, check: Check) -> None:
        from trainables.data.noise import asymmetric_supported

        fraction, random_fraction = cfg.noise_fraction, cfg.random_labels_fraction
        check(0 <= fraction < 1, "noise_fraction", fraction, "a number in [0, 1)")
        check(
            0 <= random_fraction < 1,
            "random_labels_fraction",
            random_fraction,
            "a number in [0, 1)",
        )
        if cfg.noise_type == "none":
            check(fraction == 0, "noise_fraction", fraction, "0 (noise_type is none)")
        else:
            check(
                random_fraction == 0,
                "random_labels_fraction",
                random_fraction,
                f"0 (noise_type={cfg.noise_type} is set; the two are exclusive, as in SDD)",
            )
        if cfg.noise_type == "asymmetric":
            check(
                asymmetric_supported(cfg.dataset),
                "noise_type",
                cfg.noise_type,
                f"none, symmetric or pairflip (no asymmetric class map for {cfg.dataset})",
            )
