"""Launch settings, declared once: :class:`LaunchSettings` and what is generated from it.

Each field of :class:`LaunchSettings` carries its command-line metadata (:func:`setting`): help,
flag, metavar, choices read from their registry (``rest_sweep.schedulers.SCHEDULERS``,
``rest_sweep.integrations.INTEGRATIONS``), the values allowed and, for the odd types, a parser
to the normal form (GPU shares, callback names). From the fields come:

* the ``run``/``resume`` flags (:func:`add_flags`): ``run`` defaults each flag to the field's
  default, ``resume`` to None ("as the last launch", :meth:`LaunchSettings.override`);
* the keyword arguments of ``rest_sweep.run``/``resume`` (the field names; :func:`given` reads
  them from a parsed command line);
* the ledger's launch record (``settings``: :meth:`LaunchSettings.to_dict`,
  :meth:`LaunchSettings.of`, which also reads the flat records of older ledgers);
* the checks made before Ray starts (:meth:`LaunchSettings.validate`).

A new setting is one field here (and its use in the launch).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rest_sweep.integrations import EXTRA, INTEGRATIONS, WANDB_DEFAULT_PROJECT
from rest_sweep.schedulers import SCHEDULERS
from trainables.errors import UserError

DEFAULT_METRIC = "valid_worst_group_acc"
AS_LAST = "as the last launch"  # what a resume flag not given means

GpuShares = float | dict[str, float] | None  # one value for every model, per model, or defaults


# ---------------------------------------------------------------------- GPU shares


def parse_gpu_shares(value: object) -> GpuShares:
    """``--gpus-per-trial`` as the user gave it: None, one number, or ``{model: share}``.

    Accepts what the CLI passes (a string: ``"0.25"`` or ``"simple_cnn=0.125,resnet18=0.5"``),
    what the Python API passes (a number or a mapping) and what a ledger stores (a number or a
    JSON object). Model names and share values are checked by :meth:`LaunchSettings.validate`,
    so an old ledger naming a model since removed still reads.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise _bad_shares(repr(value))
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, Mapping):
        return {str(m): _share(v, f"{m}={v}") for m, v in sorted(value.items())}
    text = str(value).strip()
    if "=" not in text:
        return _share(text, text)
    shares: dict[str, float] = {}
    for pair in text.split(","):
        model, sep, number = (part.strip() for part in pair.partition("="))
        if not sep or not model:
            raise _bad_shares(repr(text), f" ({pair.strip()!r} is not MODEL=SHARE)")
        if model in shares:
            raise _bad_shares(repr(text), f" ({model} given twice)")
        shares[model] = _share(number, text)
    return dict(sorted(shares.items()))


def _share(value: object, given: str) -> float:
    try:
        share = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _bad_shares(repr(given)) from None
    if not math.isfinite(share):  # inf/nan parse as floats
        raise _bad_shares(repr(given))
    return share


def _bad_shares(given: str, why: str = "") -> UserError:
    from trainables.models import MODELS

    return UserError(
        f"--gpus-per-trial: {given} is not allowed{why}; allowed: a number (every model) or "
        f"MODEL=SHARE pairs joined by ',' with MODEL one of {', '.join(MODELS.names())}"
    )


def format_gpu_shares(value: GpuShares) -> str:
    """The ``--gpus-per-trial`` argument that gives ``value`` (``""`` for the defaults)."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return ",".join(f"{m}={share:g}" for m, share in value.items())
    return f"{value:g}"


def parse_names(value: object) -> tuple[str, ...]:
    """Names (``--callback``) in their normal form: a tuple in the order given, each once; one
    string is one name (as a ledger written by hand might hold it)."""
    names = [value] if isinstance(value, str) else value or ()
    return tuple(dict.fromkeys(str(n) for n in names))  # type: ignore[union-attr]


# ---------------------------------------------------------------------- field metadata


def setting(
    default: Any,
    help: str | Callable[[], str],
    *,
    shown: str | None = None,
    flag: str | None = None,
    metavar: str | None = None,
    choices: Callable[[], Sequence[str]] | None = None,
    allowed: tuple[Callable[[Any], bool], str | Callable[[], str]] | None = None,
    parse: Callable[[Any], Any] | None = None,
    clear: tuple[str, str] | None = None,
) -> Any:
    """A :class:`LaunchSettings` field with everything its flag and its checks need.

    ``help``: the flag's help (a callable: built from a registry when the parser is);
    ``shown``: how ``run``'s help names the default (None: the default itself, when it is not
    None, False or empty; "": not at all); ``flag``: default ``--field-name``; ``choices``:
    the allowed values, read from their registry when needed (a tuple field: each item);
    ``allowed``: (test, what it allows: text, or a callable giving it) for other values;
    ``parse``: turns what the CLI, the Python API or a ledger gives into the normal form (the
    CLI passes its string through); ``clear``: a ``resume``-only (flag, help) that sets the
    field to empty.
    """
    metadata = {
        "help": help,
        "shown": shown,
        "flag": flag,
        "metavar": metavar,
        "choices": choices,
        "allowed": allowed,
        "parse": parse,
        "clear": clear,
    }
    return dataclasses.field(default=default, metadata=metadata)


def _scheduler_help() -> str:
    return "; ".join(f"{name} {SCHEDULERS.get(name).summary}" for name in SCHEDULERS.names())


COUNT_MAX = 2**31 - 1  # the largest CPU/GPU count, concurrency or retry count accepted


def _count(low: int, text: str, *, none: bool = False) -> tuple[Callable[[Any], bool], str]:
    """``allowed`` for an integer count from ``low`` up to :data:`COUNT_MAX` (``none``: or
    None, the field's "no limit"/"all of them" default)."""

    def test(n: Any) -> bool:
        if n is None:
            return none
        return isinstance(n, int) and not isinstance(n, bool) and low <= n <= COUNT_MAX

    return test, f"{text} up to {COUNT_MAX}"


def _reported(name: Any) -> bool:
    from trainables.results import EPOCH_METRICS

    return name in EPOCH_METRICS


def _metrics() -> str:
    """The metrics every trial reports each epoch (``trainables.results.EPOCH_METRICS``)."""
    from trainables.results import EPOCH_METRICS

    return ", ".join(EPOCH_METRICS)


def _metric_help() -> str:
    return f"metric ASHA maximises: one a trial reports each epoch ({_metrics()})"


def _fuse_help() -> str:
    from trainables.methods import METHODS

    fusable = [name for name in METHODS.names() if METHODS.get(name).can_fuse]
    return (
        "train up to K same-shape trials of the methods that can fuse "
        f"({', '.join(fusable)}) as one fused group, one Ray trial taking one trial's resources "
        "(trainables/train/fused.py; its speed is not measured yet: docs/performance.md); "
        "1: every trial alone"
    )


def _callback_help() -> str:
    return (
        f"track the trials with NAME (repeatable; one of {', '.join(INTEGRATIONS.names())}) "
        f"through Ray's integration; needs the {EXTRA} extra. MLflow: MLFLOW_TRACKING_URI, "
        "default a file store <experiment>/mlruns; W&B: WANDB_PROJECT (default "
        f"{WANDB_DEFAULT_PROJECT}), WANDB_MODE"
    )


@dataclass(frozen=True)
class LaunchSettings:
    """Every setting of a launch, as stored in its ledger record (``settings``).

    ``gpus_per_trial`` is what the user gave, so ``resume`` repeats the request rather than
    its resolution on another cluster: None means "each model its default share" (its
    ``gpu_share`` in ``trainables.models.MODELS`` on a Ray with GPUs, 0 on a CPU-only one); a
    number is every trial's share; ``{model: share}`` sets the named models' shares and leaves
    the others at their default. ``callbacks`` names tracking integrations
    (``rest_sweep.integrations``). ``num_cpus``/``num_gpus`` size an embedded Ray;
    ``reuse_actors`` reuses worker processes between trials. Console output (``quiet``) is not
    a setting.
    """

    address: str | None = setting(
        None, "join a Ray cluster: auto or HOST:PORT", shown="embedded Ray"
    )
    cpus_per_trial: float = setting(1.0, "CPUs reserved per trial")
    gpus_per_trial: GpuShares = setting(
        None,
        "GPUs per trial: one value for every trial (0.25 puts 4 trials on a GPU) or per model, "
        "e.g. simple_cnn=0.125,resnet18=0.5 (models not named keep their default: the model's "
        "measured share, benchmarks/gpu_shares.csv, when Ray has GPUs; else 0)",
        shown="",
        metavar="SHARE|MODEL=SHARE,...",
        parse=parse_gpu_shares,
    )
    max_concurrent: int | None = setting(
        None,
        "at most N trials at once",
        shown="as many as resources allow",
        allowed=_count(1, ">= 1", none=True),
    )
    max_failures: int = setting(
        2,
        "retries per failed trial, each from its newest checkpoint; -1 forever",
        allowed=_count(-1, "-1 (forever) or a count >= 0"),
    )
    scheduler: str = setting("fifo", _scheduler_help, choices=SCHEDULERS.names)
    metric: str = setting(DEFAULT_METRIC, _metric_help, allowed=(_reported, _metrics))
    num_cpus: int | None = setting(
        None, "embedded Ray: CPUs to use", allowed=_count(1, "an integer >= 1", none=True)
    )
    num_gpus: int | None = setting(
        None, "embedded Ray: GPUs to use", allowed=_count(0, "an integer >= 0", none=True)
    )
    reuse_actors: bool = setting(
        False,
        "reuse worker processes between trials (~1-9 s less per trial; for CPU-only sweeps of "
        "small trials, not for GPU training)",
    )
    fuse: int = setting(
        1,
        _fuse_help,
        metavar="K",
        allowed=_count(1, "an integer >= 1 (1: off)"),
    )
    callbacks: tuple[str, ...] = setting(
        (),
        _callback_help,
        flag="--callback",
        metavar="NAME",
        choices=INTEGRATIONS.names,
        parse=parse_names,
        clear=("--no-callbacks", "no tracking integrations (drops the last launch's --callback)"),
    )

    def __post_init__(self) -> None:
        # Normal forms, so a setting read back from JSON equals the one written.
        for f in dataclasses.fields(self):
            parse = f.metadata["parse"]
            if parse is not None:
                object.__setattr__(self, f.name, parse(getattr(self, f.name)))

    def to_dict(self) -> dict[str, Any]:
        """The ledger record (JSON: tuples as lists)."""
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in dataclasses.asdict(self).items()
        }

    @classmethod
    def of(cls, launch: dict[str, Any]) -> LaunchSettings:
        """The settings of a launch record: its ``settings``, or in the records of older
        ledgers the fields as flat keys of the launch, with the resources per trial as
        ``resources: {"cpu", "gpu"}``. Keys that are no longer settings (``pack_size``) are
        dropped, and so is a null where the field's default is not null."""
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        stored = dict(launch.get("settings") or {})
        if not stored:  # older ledgers: flat keys, resources as {"cpu", "gpu"}
            stored = {k: launch[k] for k in defaults if k in launch}
            resources = launch.get("resources") or {}
            if "cpu" in resources:
                stored["cpus_per_trial"] = resources["cpu"]
            if "gpu" in resources:
                stored["gpus_per_trial"] = resources["gpu"]
        kept = {k: v for k, v in stored.items() if k in defaults}
        return cls(**{k: v for k, v in kept.items() if v is not None or defaults[k] is None})

    def override(self, **given: object) -> LaunchSettings:
        """A copy with the values that are not None (what the user passed) replaced; a
        ``gpus_per_trial`` or ``callbacks`` given replaces the last launch's as a whole. A name
        that is not a setting is a TypeError naming the settings."""
        unknown = sorted(set(given) - set(names()))
        if unknown:
            raise TypeError(
                f"unknown launch setting(s) {', '.join(unknown)}; allowed: {', '.join(names())}"
            )
        return dataclasses.replace(self, **{k: v for k, v in given.items() if v is not None})

    def given_gpu_share(self, model: str) -> float | None:
        """The share the user gave for ``model``'s trials; None: its default share."""
        if isinstance(self.gpus_per_trial, dict):
            return self.gpus_per_trial.get(model)
        return self.gpus_per_trial

    def validate(self) -> None:
        """One-line errors for values that cannot launch (checked before Ray starts)."""
        from rest_sweep import integrations
        from rest_sweep.cluster import TrialResources
        from trainables.models import MODELS

        shares = self.gpus_per_trial
        if isinstance(shares, dict):
            for model, share in shares.items():
                if model not in MODELS:
                    raise UserError(
                        f"--gpus-per-trial: unknown model {model!r} in "
                        f"{format_gpu_shares(shares)!r}; allowed: {', '.join(MODELS.names())}"
                    )
                TrialResources(self.cpus_per_trial, share).validate(model)
        TrialResources(self.cpus_per_trial, shares if isinstance(shares, float) else 0.0).validate()
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata["choices"] is not None:
                choices = list(f.metadata["choices"]())
                for item in value if isinstance(value, tuple) else (value,):
                    if item not in choices:
                        raise _not_allowed(f, item, ", ".join(choices))
            if f.metadata["allowed"] is not None:
                test, allowed = f.metadata["allowed"]
                if not test(value):
                    raise _not_allowed(f, value, allowed() if callable(allowed) else allowed)
        if self.address and (self.num_cpus is not None or self.num_gpus is not None):
            raise UserError("--num-cpus/--num-gpus apply to embedded Ray only; drop --address")
        if self.fuse > 1 and SCHEDULERS.get(self.scheduler).stops_trials:
            raise UserError(
                f"--fuse: {self.fuse} is not allowed with --scheduler {self.scheduler} (it stops "
                "trials one by one, and a fused group is one Ray trial); allowed: 1, or "
                "--scheduler fifo"
            )
        integrations.check_installed(self.callbacks)


def _not_allowed(f: dataclasses.Field, value: object, allowed: str) -> UserError:
    return UserError(f"{flag(f)}: {value!r} is not allowed; allowed: {allowed}")


def last_settings(ledger: dict[str, Any]) -> LaunchSettings:
    """The settings of the latest Ray launch in ``ledger`` (what ``resume`` starts from);
    defaults if none.

    Launches of ``rest_sweep.local`` (no Ray) are skipped: their worker count and no-retry
    policy are not Ray settings."""
    launches = [launch for launch in ledger.get("launches", []) if launch.get("command") != "local"]
    return LaunchSettings.of(launches[-1]) if launches else LaunchSettings()


# ---------------------------------------------------------------------- the command line


def names() -> list[str]:
    """The settings' names: the keyword arguments of ``rest_sweep.run``/``resume``."""
    return [f.name for f in dataclasses.fields(LaunchSettings)]


def flag(f: dataclasses.Field) -> str:
    """The field's flag: its own, else ``--field-name``."""
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


@functools.cache
def _kinds() -> dict[str, type]:
    """Each field's value type without None (``int | None``: int; ``tuple[str, ...]``: tuple)."""
    kinds = {}
    for name, hint in typing.get_type_hints(LaunchSettings).items():
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        args = [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]
        kinds[name] = typing.get_origin(args[0]) or args[0]
    return kinds


def add_flags(p: argparse.ArgumentParser, *, resume: bool) -> None:
    """One flag per :class:`LaunchSettings` field, with its help, metavar and choices.

    ``run`` (``resume=False``): each flag defaults to the field's default, named in its help.
    ``resume``: every flag defaults to None, the last launch's value; a boolean also has its
    ``--no-`` form and a field with a ``clear`` flag gets it.
    """
    for f in dataclasses.fields(LaunchSettings):
        meta, kind = f.metadata, _kinds()[f.name]
        text = meta["help"]() if callable(meta["help"]) else meta["help"]
        options: dict[str, Any] = {
            "dest": f.name,
            "default": None if resume else ([] if kind is tuple else f.default),
            "help": text + _default_help(f, resume),
        }
        if meta["metavar"]:
            options["metavar"] = meta["metavar"]
        if meta["choices"] is not None:
            options["choices"] = list(meta["choices"]())
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction if resume else "store_true"
        elif kind is tuple:
            options["action"] = "append"
        elif meta["parse"] is None and kind is not str:
            options["type"] = kind
        p.add_argument(flag(f), **options)
        if resume and meta["clear"]:
            clear_flag, clear_help = meta["clear"]
            p.add_argument(clear_flag, action="store_const", const=[], dest=f.name, help=clear_help)


def _default_help(f: dataclasses.Field, resume: bool) -> str:
    if resume:
        return f" (default: {AS_LAST})"
    shown = f.metadata["shown"]
    if shown is None:
        hidden = f.default is None or f.default is False or f.default == ()
        return "" if hidden else f" (default {f.default})"
    return f" (default: {shown})" if shown else ""


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The settings on a command line parsed with :func:`add_flags`, by field name (``resume``:
    None for a flag not given)."""
    return {name: getattr(args, name) for name in names()}


__all__ = [
    "DEFAULT_METRIC",
    "GpuShares",
    "LaunchSettings",
    "add_flags",
    "format_gpu_shares",
    "given",
    "last_settings",
    "names",
    "parse_gpu_shares",
]
