"""Copy finished trials that one experiment shares with another's grids (issue 24).

Table 2's ratio-1 ERM, ERM + reweighting and REST trials are the same trials (the same hashes)
as Table 3's, so ``gpu_call_issue24.sh`` copies Table 3's finished ones into the Table 2
experiment before running it: ``run`` then skips them (a trial folder that holds its results is
finished, whatever experiment it sits in). Only finished trials are copied, without their
checkpoints, and never over a trial folder that already exists. The hash does not name the data,
so both experiments must have trained on the same bundle (both read Colored MNIST from the same
raw files, made by the same seeded generator).

    python benchmarks/issue24_share_trials.py --storage /tmp/runs --src table3-mnist \\
        --dst table2-mnist --grid results/table2-mnist/grids/seed41.yaml [--set epochs=1]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def share(storage: str, src: str, dst: str, grids: list[str], sets: list[str]) -> list[str]:
    """Copy ``src``'s finished trials that ``grids`` (under ``sets``) plan into ``dst``'s
    trial folder; returns the hashes copied."""
    from rest_sweep.service import plan
    from trainables.results import ExperimentStore

    wanted = [h for grid in grids for h in plan(grid, sets or None).by_hash()]
    source = ExperimentStore(storage, src)
    target = Path(storage) / dst / "trials"
    copied = []
    for trial_hash in dict.fromkeys(wanted):
        here = Path(storage) / src / "trials" / trial_hash
        there = target / trial_hash
        if there.exists() or not here.is_dir() or not source.trial(trial_hash).holds_results():
            continue
        target.mkdir(parents=True, exist_ok=True)
        shutil.copytree(here, there, ignore=shutil.ignore_patterns("checkpoints", "*.pt"))
        copied.append(trial_hash)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--src", required=True, help="experiment holding the finished trials")
    parser.add_argument("--dst", required=True, help="experiment that plans them too")
    parser.add_argument("--grid", action="append", required=True, help="dst's grids (repeat)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    copied = share(args.storage, args.src, args.dst, args.grid, args.set)
    print(f"{args.dst}: {len(copied)} finished trial(s) copied from {args.src}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
