"""``rest-sweep train``: one trial, no Ray. Re-running on the same --out resumes it.

Every ``TrialConfig`` field is a flag (``--field-name``), generated from the field's metadata
(type, help, choices); only the fields the user gives override the recipe's values.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
from typing import TYPE_CHECKING, Any

from trainables.errors import UserError

if TYPE_CHECKING:
    from trainables.config import TrialConfig

EPILOG = """examples:
  rest-sweep train --dataset cmnist --data-root data --ratio 1 --method rest --density 0.05 \\
      --seed 41 --epochs 2 --device cpu --out runs/rest-d0.05
  rest-sweep train --dataset cmnist --data-root data --ratio 1pct --method erm --recipe rest-code \\
      --lr 0.005 --batch-size 128 --out runs/erm-code
Writes OUT/config.json, OUT/metrics.jsonl (one row per epoch), OUT/summary.json and
checkpoints; running the same command again continues from the newest checkpoint.
A field the method does not take (--density with a dense method such as erm) is an error naming
the methods that take it; --set KEY=VALUE is the same as --key value, and --set recipe=NAME is
the same as --recipe NAME."""

# The command's own defaults where they differ from TrialConfig's (kept from earlier releases).
TRAIN_DEFAULTS: dict[str, Any] = {"dataset": "cmnist", "ratio": 1.0, "method": "rest", "seed": 41}
PREFIX = "field:"


def _config_fields() -> list[dataclasses.Field]:
    from trainables.config import TrialConfig

    return list(dataclasses.fields(TrialConfig))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train one trial without Ray (resumable)",
        description="Train one trial of the grid on this machine, without Ray.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for f in _config_fields():
        add_field_argument(p, f)
    p.add_argument("--out", required=True, help="trial folder (local path or pyarrow URI)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set any TrialConfig field (repeatable; same as --key value), recipe=NAME too",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def add_field_argument(p: argparse.ArgumentParser, f: dataclasses.Field) -> None:
    """``--field-name`` for one TrialConfig field; absent from the namespace unless given."""
    flag = "--" + f.name.replace("_", "-")
    text = str(f.metadata.get("help", "")).replace("%", "%%")
    choices = f.metadata.get("choices")
    default = TRAIN_DEFAULTS.get(f.name, f.default)
    if f.name == "ratio":
        text += " (e.g. 1 or 1pct)"
    # Fields that say where a trial runs or how it is stored are not the recipe's.
    fixed_default = f.metadata.get("identity") is False and f.name != "data_root"
    if f.name in TRAIN_DEFAULTS or f.name == "recipe" or fixed_default:
        text += f" (default {default:g})" if isinstance(default, float) else f" (default {default})"
    elif f.name != "data_root":
        text += " (default: the recipe's)"
    kwargs: dict[str, Any] = {"dest": PREFIX + f.name, "default": argparse.SUPPRESS, "help": text}
    if f.name == "data_root":
        kwargs.update(required=True, default=None)
    if f.type == "bool":
        kwargs["action"] = argparse.BooleanOptionalAction
    elif choices:
        kwargs["metavar"] = "{" + ",".join(map(str, choices)) + "}"
    else:
        kwargs["metavar"] = f.name.upper() if f.type == "str" else {"int": "N"}.get(f.type, "X")
    p.add_argument(flag, **kwargs)


def given_fields(args: argparse.Namespace) -> list[str]:
    """``key=value`` strings for every field flag and ``--set`` the user gave, in that order."""
    pairs = []
    for key, value in vars(args).items():
        if key.startswith(PREFIX):
            text = str(value).lower() if isinstance(value, bool) else str(value)
            pairs.append(f"{key.removeprefix(PREFIX)}={text}")
    return pairs + list(args.set)


def build_config(args: argparse.Namespace) -> TrialConfig:
    """The trial: the recipe's values for (dataset, ratio, method), then the given fields.

    One parser (``search_spaces.parse_overrides``) reads flags and ``--set`` alike; a field the
    method does not take is an error naming the methods that take it.
    """
    from search_spaces.grid import check_sets, parse_overrides
    from trainables.config import TrialConfig  # noqa: F811 (runtime import of the typed name)

    values = parse_overrides(given_fields(args))
    recipe = str(values.pop("recipe", "paper"))
    method = str(values.get("method", TRAIN_DEFAULTS["method"]))
    check_sets([k for k in values if k != "method"], [method], f"method {method}")
    cell = {k: values.get(k, TRAIN_DEFAULTS[k]) for k in ("dataset", "ratio", "method", "seed")}
    return TrialConfig.from_recipe(recipe, **{**cell, **values})


def check_device(device: str) -> None:
    """``--device cuda[:N]`` needs that GPU here: a one-line error instead of torch's."""
    if not device.startswith("cuda"):
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    suffix = device.partition(":")[2] or "0"
    index = int(suffix) if suffix.isdigit() else -1
    if not 0 <= index < count:
        raise UserError(
            f"--device {device}: this machine has {count} CUDA GPU(s); allowed: auto, cpu"
            + (f", cuda:0..cuda:{count - 1}" if count else "")
        )


FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


def full_disk_error(out: str, error: OSError) -> UserError:
    """One line for a trial stopped by a full disk (or quota); what it wrote stays resumable
    (``Location.write_bytes`` removed its temporary)."""
    where = f" (writing {error.filename})" if error.filename else ""
    return UserError(
        f"--out {out}: {os.strerror(error.errno or errno.ENOSPC)}{where}; the trial stopped and "
        "left no partial file: free some space, then run the same command again (it continues "
        "from the newest checkpoint)"
    )


def run(args: argparse.Namespace) -> int:
    from rest_sweep.storage import check_writable
    from trainables.results import TrialStore
    from trainables.train import run_trial

    config = build_config(args)
    check_device(config.device)
    check_writable("--out", args.out)
    existing = TrialStore(args.out).read_config()
    if existing is not None:
        from trainables.config import TrialConfig

        previous = TrialConfig.from_dict(existing)
        if previous.trial_hash != config.trial_hash:
            raise UserError(
                f"--out {args.out} holds trial {previous.trial_hash} ({previous.short_name()}), "
                f"not {config.trial_hash}; use another folder"
            )
    try:
        summary = run_trial(config, checkpoint_dir=args.out, progress=not args.no_progress)
    except OSError as error:
        if error.errno not in FULL_DISK:
            raise
        raise full_disk_error(args.out, error) from None
    selected = summary["selected"]
    print(
        json.dumps(
            {
                "trial": config.short_name(),
                "trial_hash": config.trial_hash,
                "selected_epoch": summary["selected_epoch"],
                **{
                    key: None if selected.get(key) is None else round(selected[key], 4)
                    for key in ("test_acc_conflicting", "test_unbiased_acc", "test_worst_group_acc")
                },  # None: NaN on an unbiased dataset (no conflicting sample)
                "density": round(summary["density"], 6),
                "out": args.out,
            }
        )
    )
    return 0
