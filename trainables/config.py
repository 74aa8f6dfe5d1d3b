"""TrialConfig: every knob of one trial, frozen and validated, with a content hash.

The hash is the trial's identity across launches, resumes and analysis. It covers only the
*identity* fields whose value differs from the field default, in canonical JSON, so adding a
new field with a neutral default keeps every existing hash (pinned in tests). Fields such as
``data_root`` or ``device`` say where a trial runs, not what it is, and are left out.

The fields are the core ones below plus the parameters of every registered method
(``trainables.methods``, one dataclass per method or shared group), flattened: a method's
module declares its parameters once and they become config fields, ``--set`` keys, ``train``
flags and Parquet columns without another edit.

Recipes (``paper``, ``rest-code``) fill in the optimisation knobs where the REST paper and its
public code disagree; see ``docs/presets.md``. A recipe only supplies defaults: any field can be
overridden, and the recipe name is kept in the config so every number says what produced it.

Torch-free: grids, status, analysis and YAML validation import this.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import operator
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from trainables.datasets import AUGMENT_PRESETS, DATASETS, NORMALISATIONS, UNBIASED_RATIO
from trainables.errors import UserError
from trainables.methods import (
    METHODS,
    MethodInfo,
    effective_method,
    method_takes,
    objectives,
    param,
    param_groups,
)
from trainables.methods.params import NoiseParams
from trainables.models.catalog import STEMS
from trainables.models.init import INITS
from trainables.optimizers import OPTIMIZERS

RECIPES: tuple[str, ...] = ("paper", "rest-code")
PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16")
# What a finished trial keeps of its checkpoints (docs/sweeps.md, "Checkpoint cadence and volume").
FINAL_CHECKPOINTS: tuple[str, ...] = ("full", "weights")
SEED_MAX = 2**32 - 1  # the largest seed numpy's legacy seeding and every torch use here takes
EPOCHS_MAX = 100_000  # far beyond any grid; a typo (a pasted number) is refused, not trained
# Each int field's (lowest, highest, what is allowed); the others: any 64-bit integer.
_INT_RANGES: dict[str, tuple[int, int, str]] = {
    "seed": (0, SEED_MAX, f"an integer >= 0 and <= {SEED_MAX} (a numpy/torch seed)"),
    "epochs": (1, EPOCHS_MAX, f"a positive integer <= {EPOCHS_MAX}"),
}
_INT64 = (-(2**63), 2**63 - 1, "an integer that fits 64 bits (-2**63..2**63-1)")


class ConfigError(UserError):
    """A bad trial setting; the message names the field, the value and what is allowed."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class _DataAndModel:
    """Core fields, first part (the order of ``to_dict`` and of Parquet columns)."""

    dataset: str = param("cmnist", "biased dataset", choices=tuple(DATASETS))
    ratio: float = param(1.0, "bias-conflicting percentage of the training split (0.5, 1, 2, 5)")
    train_on_valid: bool = param(
        False,
        "train on train + valid (the whole source training set, as SDD); label noise covers "
        "both; the valid metrics are then on trained-on images (docs/data.md)",
    )
    augment: str = param("disent", "augmentation preset", choices=AUGMENT_PRESETS)
    normalisation: str = param(
        "dataset",
        "input Normalize of every split: dataset (the registry's: CIFAR mean/std for the CIFAR "
        "datasets and BFFHQ, none for the MNIST ones) or sdd (the SDD code's: ImageNet mean/std "
        "for CIFAR-10/100, 0.1307/0.3081 for MNIST; only those three; docs/data.md)",
        choices=NORMALISATIONS,
    )
    model: str = param("simple_cnn", "architecture (see `trainables.models.MODELS`)")
    width: int = param(64, "ResNet base width (64 = standard ResNet-18)")
    stem: str = param("imagenet", "ResNet stem: imagenet (REST) or cifar", choices=STEMS)
    init: str = param(
        "constructor",
        "weight initialisation: constructor (the network's own: PyTorch's layer defaults; "
        "resnet18 kaiming fan_out convs, BatchNorm at identity) or openlth (OpenLTH/SDD's "
        "kaiming_normal fan_in on every conv and linear weight, biases kept, BatchNorm weight "
        "U(0, 1) and bias 0; trainables.models.init)",
        choices=tuple(INITS),
    )
    method: str = param("erm", "training method (see `trainables.methods.METHODS`)")


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Optimisation:
    """Core fields, last part: optimisation, numerics, selection, and where a trial runs."""

    optimizer: str = param("adam", "optimizer", choices=tuple(OPTIMIZERS))
    lr: float = param(0.01, "learning rate")
    momentum: float = param(0.9, "SGD momentum (Adam beta1 stays 0.9)")
    weight_decay: float = param(1e-4, "L2 weight decay (coupled, as in torch.optim)")
    lr_schedule: str = param(
        "none",
        "none, plateau (ReduceLROnPlateau on valid loss) or cosine",
        choices=("none", "plateau", "cosine"),
    )
    epochs: int = param(100, "training epochs")
    batch_size: int = param(256, "training batch size")
    precision: str = param(
        "fp32",
        "CUDA numerics: fp32 (TF32 off), tf32 (TF32 convolutions and matmuls) or bf16 "
        "autocast; a CPU trial computes in fp32 whatever it says. The default depends on the "
        "model: its cuda_precision in the model catalogue (trainables.models)",
        choices=PRECISIONS,
    )
    seed: int = param(41, "seed for init, masks, data order and augmentation")
    selection: str = param(
        "best-valid",
        "which epoch is reported: best valid worst-group accuracy, or last",
        choices=("best-valid", "last"),
    )
    recipe: str = param("paper", "which recipe supplied the defaults", choices=RECIPES)
    # where, not what: excluded from the hash
    data_root: str = param("", "data root holding <dataset>/ folders", identity=False)
    device: str = param("auto", "auto, cpu, cuda or cuda:N", identity=False)
    channels_last: bool = param(True, "channels_last memory format (CUDA only)", identity=False)
    compile: bool = param(False, "torch.compile the train step (CUDA speed knob)", identity=False)
    cuda_graphs: bool = param(
        True,
        "replay each full training batch as one CUDA graph (CUDA only; off with compile)",
        identity=False,
    )
    # how a trial is stored, not what it computes: excluded from the hash
    checkpoint_every: int = param(
        1,
        "write a checkpoint every N epochs and always at the last one; a restart replays the "
        "epochs after the newest checkpoint exactly",
        identity=False,
    )
    keep_checkpoints: int = param(
        2, "newest checkpoints kept on storage while a trial trains", identity=False
    )
    final_checkpoint: str = param(
        "full",
        "what a finished trial keeps: full (its newest checkpoints) or weights (one "
        "final_weights.pt with the final networks and masks, no optimizer state)",
        choices=FINAL_CHECKPOINTS,
        identity=False,
    )


class _ConfigBehaviour:
    """Construction, identity and derived facts of :class:`TrialConfig` (fields live apart)."""

    __slots__ = ("_hash",)  # trial_hash, computed once (a frozen config never changes)

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def from_recipe(cls, recipe: str = "paper", **overrides: Any) -> TrialConfig:
        """Build a config whose defaults come from ``recipe``.

        ``dataset``, ``ratio``, ``method`` and ``model`` (from ``overrides``) decide the recipe's
        values; every other override wins over the recipe. The default ``precision`` is the
        model's (the overridden one when ``model`` is given); a given ``precision`` wins.
        """
        _check(recipe in RECIPES, "recipe", recipe, ", ".join(RECIPES))
        dataset = overrides.get("dataset", "cmnist")
        _check(dataset in DATASETS, "dataset", dataset, ", ".join(DATASETS))
        method = overrides.get("method", "erm")
        _check(method in METHODS, "method", method, ", ".join(METHODS.names()))
        ratio = float(coerce("ratio", overrides.get("ratio", 1.0)))
        objective = str(overrides.get("objective", "erm"))
        values = recipe_defaults(
            recipe,
            dataset,
            ratio,
            method,
            given=set(overrides),
            objective=objective,
            model=overrides.get("model"),
        )
        values.update({k: coerce(k, v) for k, v in overrides.items()})
        values["recipe"] = recipe
        cfg = TrialConfig(**values)
        check_plan(cfg)  # planning a trial, unlike from_dict (reading a stored one)
        return cfg

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, validated: bool = False) -> TrialConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming the allowed keys.

        ``validated``: ``values`` is the :meth:`to_dict` of a config validated already (a
        launch's param space, rebuilt in its Ray worker), taken as it is: no coercion, no
        :func:`validate`. Never for values read from storage or given by a user.
        """
        allowed = field_names()
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; allowed: {', '.join(allowed)}")
        if validated:
            cfg = object.__new__(TrialConfig)  # frozen: set past __init__ (and its validate)
            for f in _FIELDS:
                object.__setattr__(cfg, f.name, values.get(f.name, f.default))
            return cfg
        return TrialConfig(**{k: coerce(k, v) for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        """Flat dict of every field (JSON-able): Ray's param space and Parquet columns."""
        return dict(zip(_NAMES, _GET_ALL(self), strict=True))

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        # By name, not by position: the field list grows with every registered method.
        return _config_from_dict, (self.to_dict(),)

    def replace(self, **changes: Any) -> TrialConfig:
        return dataclasses.replace(self, **{k: coerce(k, v) for k, v in changes.items()})

    def identity(self) -> dict[str, Any]:
        """The identity fields that differ from their defaults (what the hash covers)."""
        return {
            name: value
            for (name, default), value in zip(_IDENTITY, _GET_IDENTITY(self), strict=True)
            if value != default
        }

    @property
    def trial_hash(self) -> str:
        """16 hex chars of sha256 over the canonical JSON of :meth:`identity`."""
        try:
            return self._hash
        except AttributeError:
            pass
        canonical = _CANONICAL.encode(self.identity())
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
        object.__setattr__(self, "_hash", digest)  # frozen: a cache, not a field
        return digest

    @property
    def num_classes(self) -> int:
        return DATASETS.get(self.dataset).num_classes

    @property
    def is_sparse(self) -> bool:
        return METHODS.get(self.method).sparse

    @property
    def method_info(self) -> MethodInfo:
        """The method this trial trains: its ``method``'s registry entry, or a sparse-training
        method combined with its ``objective`` (``trainables.methods.effective_method``; each
        combination is built once)."""
        return effective_method(self.method, self.objective)

    def short_name(self) -> str:
        """Readable label used in progress lines (:func:`trial_label`)."""
        return trial_label(self.to_dict())


def _compose() -> type:
    """The TrialConfig class: core fields, then every method parameter group's fields."""
    specs: list[tuple[str, Any, dataclasses.Field]] = []
    owner: dict[str, str] = {}
    # NoiseParams belongs to no method: a core group every trial takes (docs/data.md).
    parts = [_DataAndModel, NoiseParams, *param_groups(), _Optimisation]
    for part in parts:
        for f in fields(part):
            if f.name in owner:
                raise TypeError(
                    f"config field {f.name!r} of {part.__name__} is also in {owner[f.name]}"
                )
            owner[f.name] = part.__name__
            copy = dataclasses.field(default=f.default, metadata=f.metadata)
            specs.append((f.name, f.type, copy))
    cls = dataclasses.make_dataclass(
        "TrialConfig",
        specs,
        bases=(_ConfigBehaviour,),
        frozen=True,
        kw_only=True,
        slots=True,
        namespace={"__doc__": "One trial of the grid. Construct with :meth:`from_recipe`."},
    )
    cls.__module__ = __name__  # pickled by reference (Ray ships configs to workers)
    return cls


if TYPE_CHECKING:

    class TrialConfig(_DataAndModel, _Optimisation, _ConfigBehaviour):  # type: ignore[misc]
        """Static view for type checkers; method parameters are reached as attributes."""

        def __getattr__(self, name: str) -> Any: ...

else:
    TrialConfig = _compose()

# The fields, looked up once: ``dataclasses.fields`` rebuilds its tuple on every call, and
# planning a 10,000-trial grid asks hundreds of thousands of times.
_FIELDS: tuple[dataclasses.Field, ...] = fields(TrialConfig)
_NAMES: tuple[str, ...] = tuple(f.name for f in _FIELDS)
_BY_NAME: dict[str, dataclasses.Field] = {f.name: f for f in _FIELDS}
_IDENTITY: tuple[tuple[str, Any], ...] = tuple(
    (f.name, f.default) for f in _FIELDS if f.metadata["identity"]
)
_TYPED: tuple[tuple[str, Any, Any, Any], ...] = tuple(
    (f.name, f.default, f.metadata["choices"], f.type) for f in _FIELDS
)
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))  # what trial_hash hashes
_DEFAULTS: tuple[Any, ...] = tuple(f.default for f in _FIELDS)
_GET_ALL = operator.attrgetter(*_NAMES)  # every field's value, in field order, in one call
_GET_IDENTITY = operator.attrgetter(*(name for name, _ in _IDENTITY))


def method_memo() -> dict[Any, Any]:
    """A dict for values derived from the method registry (``param_groups()``, which method
    takes which key), emptied whenever a registry entry is added, removed or replaced (a
    plug-in, a test): planning asks for them per trial, and computing them walks the registry."""
    if _PINNED[0]:  # inside planned_batch(): the registry was checked when it began
        return _METHOD_MEMO[2]
    names = list(METHODS)
    entries = [METHODS.get(name) for name in names]
    if names != _METHOD_MEMO[0] or entries != _METHOD_MEMO[1]:
        _METHOD_MEMO[:] = [names, entries, {}]
    return _METHOD_MEMO[2]


_METHOD_MEMO: list[Any] = [[], [], {}]  # [names, entries the memo is for, the memo]
_PINNED = [0]  # > 0 inside planned_batch()


@contextlib.contextmanager
def planned_batch() -> Iterator[None]:
    """Build many configs at once (a grid's expansion): the method registry is checked once,
    when the batch begins, instead of by every construction (nothing registers a method while
    a grid expands)."""
    method_memo()
    _PINNED[0] += 1
    try:
        yield
    finally:
        _PINNED[0] -= 1


def _param_groups() -> list[type]:
    """``param_groups()``, computed once per state of the method registry."""
    memo = method_memo()
    if "param_groups" not in memo:
        memo["param_groups"] = param_groups()
    return memo["param_groups"]


# ---------------------------------------------------------------------- helpers


def _config_from_dict(values: dict[str, Any]) -> TrialConfig:
    return TrialConfig.from_dict(values)


# Fields outside a trial's identity (``identity=False``: where it runs, how it is stored, prune's
# ``levels``...): not in the hash, never what tells two trials apart (analysis.cells variants).
NON_IDENTITY_FIELDS: tuple[str, ...] = tuple(f.name for f in _FIELDS if not f.metadata["identity"])


def trial_label(values: Mapping[str, Any]) -> str:
    """``dataset_rRATIO_method[_dDENSITY]_sSEED``: a trial's readable name, the one rule of
    progress lines, ``grids show``, ``status``, pending grid rows and the Parquet ``label``.

    Reads a plain mapping (a stored config, a pending row) without validating it; a missing
    value prints ``?``. The density is named when it is below 1, i.e. when the trial trains a
    sparse network; a trial at density 1 has none: a dense method, a sparse one at 1.0, and a
    pruning trial, whose ``density`` stays 1.0 because its levels decide its sparsity. The rule
    reads no registry, so a ledger holding a method this version does not know still labels.
    """

    def number(key: str) -> float | None:
        try:
            value = float(values.get(key))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        return None if value != value else value  # NaN: unknown

    ratio, density = number("ratio"), number("density")
    parts = [str(values.get("dataset", "?")), "r?" if ratio is None else f"r{ratio:g}"]
    parts.append(str(values.get("method", "?")))
    if density is not None and density < 1:
        parts.append(f"d{density:g}")
    parts.append(f"s{values.get('seed', '?')}")
    return "_".join(parts)


def field_names() -> list[str]:
    return list(_NAMES)


def field_help() -> dict[str, str]:
    return {f.name: f.metadata["help"] for f in _FIELDS}


def recipe_defaults(
    recipe: str,
    dataset: str,
    ratio: float,
    method: str,
    *,
    given: set[str] | None = None,
    objective: str = "erm",
    model: str | None = None,
) -> dict[str, Any]:
    """The values a recipe gives a (dataset, ratio, method) cell; see docs/presets.md.

    ``given`` names the fields the caller sets itself: a recipe value that would fail for this
    cell (the paper has no up-weight for a ratio it never ran) is not asked for them.
    ``model`` is the model the caller sets (None: the dataset's): ``precision`` is that model's
    ``cuda_precision`` (``trainables.models``; measured per model, docs/performance.md), not
    the field default ``fp32``, which stays so that stored fp32 configs keep their hash.
    Computed once per cell and state of the registries (a grid asks once per trial).
    """
    from trainables.models import MODELS

    info = DATASETS.get(dataset)
    entry = MODELS.get(model) if model in MODELS else None
    key = ("recipe", recipe, dataset, ratio, method, frozenset(given or ()), objective, model)
    memo = method_memo()
    held = memo.get(key)
    if held is None or held[0] is not info or held[1] is not entry:  # a registry changed
        held = memo[key] = (
            info,
            entry,
            _recipe_defaults(recipe, dataset, info, ratio, method, given, objective, model),
        )
    return dict(held[2])


def _recipe_defaults(
    recipe: str,
    dataset: str,
    info: Any,
    ratio: float,
    method: str,
    given: set[str] | None,
    objective: str,
    model: str | None,
) -> dict[str, Any]:
    from trainables.models import MODELS

    spec = effective_method(method, objective)
    model = info.model if model is None else model
    values: dict[str, Any] = {
        "dataset": dataset,
        "ratio": ratio,
        "method": method,
        "model": model,
        "lr": info.lr,
        "epochs": 100,
        "batch_size": 256,
    }
    if model in MODELS:  # else validation names the bad model
        values["precision"] = MODELS.get(model).cuda_precision
    if recipe == "paper":
        values.update(optimizer="adam", weight_decay=1e-4, lr_schedule="none", augment="disent")
    else:  # rest-code
        values.update(
            optimizer="sgd",
            momentum=0.9,
            weight_decay=0.0,
            lr_schedule="plateau",
            augment="rest-code",
        )
    if not info.biased:  # no conflicting valid sample: best-valid could not rank epochs
        values["selection"] = "last"
    for group in _param_groups():
        values.update(group.recipe_values(recipe, info, ratio, spec, frozenset(given or ())))
    values.update(spec.defaults)
    return values


def parse_assignments(pairs: Sequence[str]) -> dict[str, Any]:
    """``["epochs=2", "recipe=rest-code", "ratio=1pct"]`` -> typed values.

    The one parser of ``--set`` (``train``, ``run``, ``grids``). Errors are one line naming the
    key and the allowed keys or values.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected key=value, e.g. --set epochs=2")
        value = value.strip()
        if key == "recipe":
            _check(value in RECIPES, "recipe", value, ", ".join(RECIPES))
            out[key] = value
            continue
        out[key] = coerce(key, value)
        choices = _field(key).metadata["choices"]
        if choices is not None:
            _check(out[key] in choices, key, out[key], ", ".join(map(str, choices)))
    return out


def _field(name: str) -> dataclasses.Field:
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        pass
    raise ConfigError(f"unknown config key {name!r}; allowed: {', '.join(field_names())}")


def coerce(name: str, value: Any) -> Any:
    """Convert a string (``--set key=value``) or JSON value to the field's type.

    Only ``ratio`` accepts the bundle's folder spelling ``1pct``.
    """
    kind = _field(name).type
    if not isinstance(value, str) or kind == "str":
        if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value
    text = value.strip()
    try:
        if kind == "bool":
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text.removesuffix("pct") if name == "ratio" else text)
    except ValueError:
        raise ConfigError(f"{name}: cannot read {value!r} as {kind}") from None
    return value


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{name}: {value!r} is not allowed; allowed: {allowed}")


def validate(cfg: TrialConfig) -> None:
    """Raise :class:`ConfigError` for the first bad field (one line, names the field)."""
    from trainables.models import MODELS

    values = _GET_ALL(cfg)
    # Only the fields not holding their own default (valid by construction): most of a trial's.
    changed = map(operator.is_not, values, _DEFAULTS)
    for (name, _, choices, kind), value in itertools.compress(
        zip(_TYPED, values, strict=True), changed
    ):
        if choices is not None and value not in choices:
            _check(False, name, value, ", ".join(map(str, choices)))
        if kind == "float":
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                _check(False, name, value, "a number")
            if not math.isfinite(value):  # inf/nan parse as floats: never a setting
                _check(False, name, value, "a finite number")
        elif kind == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                _check(False, name, value, "an integer")
            low, high, allowed = _INT_RANGES.get(name, _INT64)
            if not low <= value <= high:
                _check(False, name, value, allowed)
        elif kind == "bool" and not isinstance(value, bool):
            _check(False, name, value, "true or false")
    _check(cfg.method in METHODS, "method", cfg.method, ", ".join(METHODS.names()))
    _check(cfg.model in MODELS, "model", cfg.model, ", ".join(MODELS.names()))
    _check(0 < cfg.ratio < 100, "ratio", cfg.ratio, "a percentage in (0, 100)")
    _check(cfg.batch_size > 0, "batch_size", cfg.batch_size, "a positive integer")
    _check(cfg.width > 0, "width", cfg.width, "a positive integer")
    _check(cfg.lr > 0, "lr", cfg.lr, "a positive number")
    _check(cfg.weight_decay >= 0, "weight_decay", cfg.weight_decay, "a number >= 0")
    _check(0 <= cfg.momentum < 1, "momentum", cfg.momentum, "a number in [0, 1)")
    norms = DATASETS.get(cfg.dataset).normalisations  # sdd: only where SDD has the dataset
    if cfg.normalisation not in norms:
        having = [n for n in DATASETS if cfg.normalisation in DATASETS.get(n).normalisations]
        why = f"on {cfg.dataset} ({cfg.normalisation} is for {', '.join(having)})"
        _check(False, "normalisation", cfg.normalisation, f"{', '.join(norms)} {why}")
    every, keep = cfg.checkpoint_every, cfg.keep_checkpoints
    _check(every >= 1, "checkpoint_every", every, "an integer >= 1 (epochs between checkpoints)")
    _check(keep >= 1, "keep_checkpoints", keep, "an integer >= 1 (checkpoints kept)")
    if not DATASETS.get(cfg.dataset).biased:  # docs/data.md, "Unbiased datasets"
        why = f"({cfg.dataset} is unbiased: one ratio folder, no conflicting sample)"
        _check(cfg.ratio == UNBIASED_RATIO, "ratio", cfg.ratio, f"{UNBIASED_RATIO:g} {why}")
        _check(cfg.selection == "last", "selection", cfg.selection, f"last {why}")
    if cfg.train_on_valid:  # valid is trained on: it cannot rank epochs (docs/data.md)
        why = "(train_on_valid trains on the valid images)"
        _check(cfg.selection == "last", "selection", cfg.selection, f"last {why}")
    _check_objective(cfg)
    spec = cfg.method_info
    for group in (NoiseParams, *_param_groups()):
        group.check(cfg, spec, _check)
    device_ok = cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:")
    _check(device_ok, "device", cfg.device, "auto, cpu, cuda or cuda:N")


def _check_objective(cfg: TrialConfig) -> None:
    """``objective`` (``ObjectiveParams``) against the method registry: one of its objectives
    for a method that takes one (before :attr:`TrialConfig.method_info` combines them), else
    ``erm``."""
    if METHODS.get(cfg.method).takes_objective:
        names = objectives()
        _check(cfg.objective in names, "objective", cfg.objective, ", ".join(names))
    else:
        *others, last = [m for m in METHODS if METHODS.get(m).takes_objective]
        use = f"{', '.join(others)} or {last}" if others else last
        why = f"method {cfg.method!r} is not a sparse-training method; use {use}"
        _check(cfg.objective == "erm", "objective", cfg.objective, f"erm ({why})")


def check_plan(cfg: TrialConfig) -> None:
    """Raise :class:`ConfigError` (one line, names the field) for a trial that may be stored
    but not planned anew: every group's ``plan_check``. :meth:`TrialConfig.from_recipe` (grid
    expansion, ``rest-sweep train``) runs it; :func:`validate` (every construction, a stored
    config read back included) does not, so an experiment planned before a rule still loads."""
    spec = cfg.method_info
    for group in (NoiseParams, *_param_groups()):
        group.plan_check(cfg, spec, _check)


__all__ = [
    "EPOCHS_MAX",
    "FINAL_CHECKPOINTS",
    "NON_IDENTITY_FIELDS",
    "PRECISIONS",
    "RECIPES",
    "SEED_MAX",
    "ConfigError",
    "TrialConfig",
    "check_plan",
    "coerce",
    "field_help",
    "field_names",
    "method_takes",
    "parse_assignments",
    "recipe_defaults",
    "trial_label",
    "validate",
]
