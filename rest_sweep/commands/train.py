"""``rest-sweep train``: one trial, no Ray. Re-running on the same --out resumes it."""

from __future__ import annotations

import argparse
import json

from trainables.errors import UserError

EPILOG = """examples:
  rest-sweep train --dataset cmnist --data-root data --ratio 1 --method rest --density 0.05 \\
      --seed 41 --epochs 2 --device cpu --out runs/rest-d0.05
  rest-sweep train --dataset cmnist --data-root data --ratio 1 --method erm --recipe rest-code \\
      --set lr=0.005 --set batch_size=128 --out runs/erm-code
Writes OUT/config.json, OUT/metrics.jsonl (one row per epoch), OUT/summary.json and
checkpoints; running the same command again continues from the newest checkpoint."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train one trial without Ray (resumable)",
        description="Train one trial of the grid on this machine, without Ray.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", default="cmnist", help="cmnist, cifar10c or bffhq")
    p.add_argument("--data-root", required=True, help="folder holding <dataset>/")
    p.add_argument("--ratio", default="1", help="bias-conflicting %% (0.5, 1, 2, 5 or 1pct)")
    p.add_argument("--method", default="rest", help="erm, erm_rw, static, set, rigl, rest")
    p.add_argument("--density", type=float, default=None, help="weight density (sparse methods)")
    p.add_argument("--seed", type=int, default=41)
    p.add_argument("--epochs", type=int, default=None, help="default: the recipe's 100")
    p.add_argument("--recipe", default="paper", help="paper or rest-code (see docs/presets.md)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", required=True, help="trial folder (local path or pyarrow URI)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override any TrialConfig field (repeatable)",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def parse_sets(pairs: list[str]) -> dict[str, str]:
    """``["lr=0.1", "epochs=3"]`` -> dict; a malformed pair is a one-line error."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set: expected KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def build_config(args: argparse.Namespace):
    from trainables.config import TrialConfig, coerce

    overrides: dict = {
        "dataset": args.dataset,
        "ratio": coerce("ratio", str(args.ratio)),
        "method": args.method,
        "seed": args.seed,
        "data_root": args.data_root,
        "device": args.device,
    }
    if args.density is not None:
        overrides["density"] = args.density
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    for key, value in parse_sets(args.set).items():
        overrides[key] = coerce(key, value)
    return TrialConfig.from_recipe(args.recipe, **overrides)


def run(args: argparse.Namespace) -> int:
    from trainables.results import TrialStore
    from trainables.train import run_trial

    config = build_config(args)
    existing = TrialStore(args.out).read_config()
    if existing is not None:
        from trainables.config import TrialConfig

        previous = TrialConfig.from_dict(existing)
        if previous.trial_hash != config.trial_hash:
            raise UserError(
                f"--out {args.out} holds trial {previous.trial_hash} ({previous.short_name()}), "
                f"not {config.trial_hash}; use another folder"
            )
    summary = run_trial(config, checkpoint_dir=args.out, progress=not args.no_progress)
    selected = summary["selected"]
    print(
        json.dumps(
            {
                "trial": config.short_name(),
                "trial_hash": config.trial_hash,
                "selected_epoch": summary["selected_epoch"],
                "test_acc_conflicting": round(selected["test_acc_conflicting"], 4),
                "test_unbiased_acc": round(selected["test_unbiased_acc"], 4),
                "test_worst_group_acc": round(selected["test_worst_group_acc"], 4),
                "density": round(summary["density"], 6),
                "out": args.out,
            }
        )
    )
    return 0
