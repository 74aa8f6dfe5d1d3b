"""TrialConfig: every knob of one trial, frozen and validated, with a content hash.

The hash is the trial's identity across launches, resumes and analysis. It covers only the
*identity* fields whose value differs from the field default, in canonical JSON, so adding a
new field with a neutral default keeps every existing hash (pinned in tests). Fields such as
``data_root`` or ``device`` say where a trial runs, not what it is, and are left out.

Recipes (``paper``, ``rest-code``) fill in the optimisation knobs where the REST paper and its
public code disagree; see ``docs/presets.md``. A recipe only supplies defaults: any field can be
overridden, and the recipe name is kept in the config so every number says what produced it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any

from trainables.errors import UserError

DATASETS: dict[str, dict[str, Any]] = {
    # num_classes, input size, default model and lr of the paper/README for each dataset.
    "cmnist": {"num_classes": 10, "image_size": 28, "model": "simple_cnn", "lr": 0.01},
    "cifar10c": {"num_classes": 10, "image_size": 32, "model": "resnet18", "lr": 0.001},
    "bffhq": {"num_classes": 2, "image_size": 128, "model": "resnet18", "lr": 0.001},
}
PAPER_DENSITIES: tuple[float, ...] = (
    0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9,
)  # fmt: skip
PAPER_SEEDS: tuple[int, ...] = (41, 42, 43)
PAPER_RATIOS: dict[str, tuple[float, ...]] = {
    "cmnist": (0.5, 1.0, 2.0, 5.0),
    "cifar10c": (0.5, 1.0, 2.0, 5.0),
    "bffhq": (0.5,),
}
# The paper's up-weight per bias-conflicting ratio (Section 4.3); BFFHQ uses 80.
PAPER_UPWEIGHT: dict[float, float] = {0.5: 10.0, 1.0: 30.0, 2.0: 50.0, 5.0: 80.0}
REST_CODE_UPWEIGHT = 80.0  # hard-coded in the public code's sampler, whatever the ratio

RECIPES: tuple[str, ...] = ("paper", "rest-code")


class ConfigError(UserError):
    """A bad trial setting; the message names the field, the value and what is allowed."""


def _f(default: Any, help: str, *, choices: tuple[Any, ...] | None = None, identity: bool = True):
    return field(default=default, metadata={"help": help, "choices": choices, "identity": identity})


@dataclass(frozen=True, slots=True, kw_only=True)
class TrialConfig:
    """One trial of the grid. Construct with :meth:`from_recipe` to get paper defaults."""

    # data
    dataset: str = _f("cmnist", "biased dataset", choices=tuple(DATASETS))
    ratio: float = _f(1.0, "bias-conflicting percentage of the training split (0.5, 1, 2, 5)")
    augment: str = _f(
        "disent", "augmentation preset", choices=("disent", "rest-code", "rest-intended", "none")
    )
    # model
    model: str = _f("simple_cnn", "architecture (see `trainables.models.MODELS`)")
    width: int = _f(64, "ResNet base width (64 = standard ResNet-18)")
    stem: str = _f(
        "imagenet", "ResNet stem: imagenet (REST) or cifar", choices=("imagenet", "cifar")
    )
    # method and sparsity
    method: str = _f("erm", "training method (see `trainables.methods.METHODS`)")
    density: float = _f(1.0, "global weight density in (0, 1]; 1.0 for dense methods")
    sparse_init: str = _f("erk", "layer-density rule", choices=("erk", "er", "uniform"))
    growth: str = _f("gradient", "grow criterion", choices=("gradient", "random", "momentum"))
    drop_fraction: float = _f(0.3, "initial fraction of active weights dropped per update")
    drop_schedule: str = _f(
        "rigl", "drop-fraction schedule: rigl (cosine to 0 at drop_end) or rest (cosine over all "
        "steps to 0.005, never stops)", choices=("rigl", "rest", "constant"),
    )  # fmt: skip
    drop_end: float = _f(0.75, "fraction of training after which mask updates stop (rigl)")
    update_frequency: int = _f(1000, "optimizer steps between mask updates")
    reset_momentum: bool = _f(True, "zero optimizer state of newly grown weights (RigL)")
    dense_first_layer: bool = _f(False, "keep the first conv dense")
    dense_last_layer: bool = _f(False, "keep the classifier dense")
    # reweighting
    reweight: str = _f(
        "none", "how conflicting samples are up-weighted", choices=("none", "loss", "resample")
    )
    upweight: float = _f(1.0, "weight of a bias-conflicting sample relative to an aligned one")
    # optimisation
    optimizer: str = _f("adam", "optimizer", choices=("adam", "sgd"))
    lr: float = _f(0.01, "learning rate")
    momentum: float = _f(0.9, "SGD momentum (Adam beta1 stays 0.9)")
    weight_decay: float = _f(1e-4, "L2 weight decay (coupled, as in torch.optim)")
    lr_schedule: str = _f(
        "none", "none, plateau (ReduceLROnPlateau on valid loss) or cosine",
        choices=("none", "plateau", "cosine"),
    )  # fmt: skip
    epochs: int = _f(100, "training epochs")
    batch_size: int = _f(256, "training batch size")
    precision: str = _f("fp32", "fp32 or bf16 autocast (CUDA only)", choices=("fp32", "bf16"))
    seed: int = _f(41, "seed for init, masks, data order and augmentation")
    selection: str = _f(
        "best-valid", "which epoch is reported: best valid worst-group accuracy, or last",
        choices=("best-valid", "last"),
    )  # fmt: skip
    recipe: str = _f("paper", "which recipe supplied the defaults", choices=RECIPES)
    # where, not what: excluded from the hash
    data_root: str = _f("", "data root holding <dataset>/ folders", identity=False)
    device: str = _f("auto", "auto, cpu, cuda or cuda:N", identity=False)
    channels_last: bool = _f(True, "channels_last memory format (CUDA only)", identity=False)
    compile: bool = _f(False, "torch.compile the train step (CUDA speed knob)", identity=False)
    cuda_graphs: bool = _f(
        True, "replay each full training batch as one CUDA graph (CUDA only; off with compile)",
        identity=False,
    )  # fmt: skip

    def __post_init__(self) -> None:
        validate(self)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_recipe(cls, recipe: str = "paper", **overrides: Any) -> TrialConfig:
        """Build a config whose optimisation defaults come from ``recipe``.

        ``dataset``, ``ratio`` and ``method`` (from ``overrides``) decide the recipe's values;
        every other override wins over the recipe.
        """
        if recipe not in RECIPES:
            raise ConfigError(f"recipe: {recipe!r} is not allowed; allowed: {', '.join(RECIPES)}")
        dataset = overrides.get("dataset", "cmnist")
        if dataset not in DATASETS:
            raise ConfigError(
                f"dataset: {dataset!r} is not allowed; allowed: {', '.join(DATASETS)}"
            )
        ratio = float(overrides.get("ratio", 1.0))
        method = overrides.get("method", "erm")
        values = recipe_defaults(recipe, dataset, ratio, method)
        values.update(overrides)
        values["recipe"] = recipe
        return cls(**values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrialConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming the allowed keys."""
        allowed = field_names()
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; allowed: {', '.join(allowed)}")
        return cls(**{k: coerce(k, v) for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        """Flat dict of every field (JSON-able): Ray's param space and Parquet columns."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def replace(self, **changes: Any) -> TrialConfig:
        return dataclasses.replace(self, **{k: coerce(k, v) for k, v in changes.items()})

    # ------------------------------------------------------------------ identity
    def identity(self) -> dict[str, Any]:
        """The identity fields that differ from their defaults (what the hash covers)."""
        out = {}
        for f in fields(self):
            if not f.metadata["identity"]:
                continue
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = value
        return out

    @property
    def trial_hash(self) -> str:
        """16 hex chars of sha256 over the canonical JSON of :meth:`identity`."""
        canonical = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def num_classes(self) -> int:
        return DATASETS[self.dataset]["num_classes"]

    @property
    def image_size(self) -> int:
        return DATASETS[self.dataset]["image_size"]

    @property
    def is_sparse(self) -> bool:
        from trainables.methods import METHODS

        return METHODS.get(self.method).sparse

    def short_name(self) -> str:
        """Readable label used in directory names and progress lines."""
        parts = [self.dataset, f"r{self.ratio:g}", self.method]
        if self.is_sparse:
            parts.append(f"d{self.density:g}")
        parts.append(f"s{self.seed}")
        return "_".join(parts)


# ---------------------------------------------------------------------- helpers


def field_names() -> list[str]:
    return [f.name for f in fields(TrialConfig)]


def field_help() -> dict[str, str]:
    return {f.name: f.metadata["help"] for f in fields(TrialConfig)}


def recipe_defaults(recipe: str, dataset: str, ratio: float, method: str) -> dict[str, Any]:
    """The values a recipe gives a (dataset, ratio, method) cell; see docs/presets.md."""
    from trainables.methods import METHODS

    spec = METHODS.get(method) if method in METHODS else None
    info = DATASETS[dataset]
    values: dict[str, Any] = {
        "dataset": dataset,
        "ratio": ratio,
        "method": method,
        "model": info["model"],
        "lr": info["lr"],
        "epochs": 100,
        "batch_size": 256,
        "update_frequency": 1000,
        "sparse_init": "erk",
    }
    if spec is not None:
        values["growth"] = spec.default_growth
    reweights = spec is not None and spec.reweight
    if recipe == "paper":
        values.update(
            optimizer="adam", weight_decay=1e-4, lr_schedule="none", augment="disent",
            drop_fraction=0.3, drop_schedule="rigl", drop_end=0.75, reset_momentum=True,
        )  # fmt: skip
        if reweights:
            factor = 80.0 if dataset == "bffhq" else PAPER_UPWEIGHT.get(float(ratio), 80.0)
            values.update(reweight="loss", upweight=factor)
    else:  # rest-code
        values.update(
            optimizer="sgd", momentum=0.9, weight_decay=0.0, lr_schedule="plateau",
            augment="rest-code", drop_fraction=0.5, drop_schedule="rest", reset_momentum=False,
        )  # fmt: skip
        if reweights:
            values.update(reweight="resample", upweight=REST_CODE_UPWEIGHT)
    if not reweights:
        values.update(reweight="none", upweight=1.0)
    return values


def coerce(name: str, value: Any) -> Any:
    """Convert a string (``--set key=value``) or JSON value to the field's type."""
    types = {f.name: f.type for f in fields(TrialConfig)}
    if name not in types:
        raise ConfigError(f"unknown config key {name!r}; allowed: {', '.join(types)}")
    kind = types[name]
    if not isinstance(value, str) or kind == "str":
        if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value
    try:
        if kind == "bool":
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value.removesuffix("pct"))
    except ValueError:
        raise ConfigError(f"{name}: cannot read {value!r} as {kind}") from None
    return value


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{name}: {value!r} is not allowed; allowed: {allowed}")


def validate(cfg: TrialConfig) -> None:
    """Raise :class:`ConfigError` for the first bad field (one line, names the field)."""
    from trainables.methods import METHODS
    from trainables.models import MODELS

    for f in fields(cfg):
        value = getattr(cfg, f.name)
        choices = f.metadata["choices"]
        if choices is not None:
            _check(value in choices, f.name, value, ", ".join(map(str, choices)))
        kind = f.type
        if kind == "float":
            _check(isinstance(value, int | float) and not isinstance(value, bool), f.name, value,
                   "a number")  # fmt: skip
        elif kind == "int":
            _check(isinstance(value, int) and not isinstance(value, bool), f.name, value,
                   "an integer")  # fmt: skip
        elif kind == "bool":
            _check(isinstance(value, bool), f.name, value, "true or false")
    _check(cfg.method in METHODS, "method", cfg.method, ", ".join(METHODS.names()))
    _check(cfg.model in MODELS, "model", cfg.model, ", ".join(MODELS.names()))
    _check(cfg.ratio > 0 and cfg.ratio < 100, "ratio", cfg.ratio, "a percentage in (0, 100)")
    _check(0 < cfg.density <= 1, "density", cfg.density, "a number in (0, 1]")
    spec = METHODS.get(cfg.method)
    if not spec.sparse:
        _check(cfg.density == 1.0, "density", cfg.density,
               f"1.0 (method {cfg.method!r} is dense)")  # fmt: skip
    _check(cfg.epochs > 0, "epochs", cfg.epochs, "a positive integer")
    _check(cfg.batch_size > 0, "batch_size", cfg.batch_size, "a positive integer")
    _check(cfg.width > 0, "width", cfg.width, "a positive integer")
    _check(cfg.update_frequency > 0, "update_frequency", cfg.update_frequency, "a positive integer")
    _check(cfg.lr > 0, "lr", cfg.lr, "a positive number")
    _check(cfg.weight_decay >= 0, "weight_decay", cfg.weight_decay, "a number >= 0")
    _check(0 <= cfg.momentum < 1, "momentum", cfg.momentum, "a number in [0, 1)")
    _check(0 <= cfg.drop_fraction < 1, "drop_fraction", cfg.drop_fraction, "a number in [0, 1)")
    _check(0 < cfg.drop_end <= 1, "drop_end", cfg.drop_end, "a number in (0, 1]")
    _check(cfg.upweight >= 1, "upweight", cfg.upweight, "a number >= 1")
    if spec.reweight:
        _check(cfg.reweight != "none", "reweight", cfg.reweight,
               f"loss or resample (method {cfg.method!r} up-weights)")  # fmt: skip
    else:
        _check(cfg.reweight == "none", "reweight", cfg.reweight,
               f"none (method {cfg.method!r} does not up-weight)")  # fmt: skip
    if cfg.dataset == "cmnist" and cfg.model == "resnet18":
        pass  # allowed: an ablation, the images are 28x28x3
    _check(cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:"), "device",
           cfg.device, "auto, cpu, cuda or cuda:N")  # fmt: skip
