"""How long ``analyze`` takes on a paper-sized experiment (default 1,000 trials x 100 epochs).

Builds a synthetic experiment folder in the real result format (analysis.synthetic: ledger,
config.json, metrics.jsonl, summary.json, state.json per trial; 3 % pending, 5 % running,
2 % errored), then times ``analyze`` step by step, with and without figures, and the HTML
report. Prints figures; never a test.

    .venv/bin/python benchmarks/analyze_scale.py                  # 1,000 x 100 in a temp dir
    .venv/bin/python benchmarks/analyze_scale.py --trials 2520 --keep /tmp/big
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis import synthetic  # noqa: E402
from analysis.api import analyze, report  # noqa: E402
from search_spaces.catalog import PAPER_DENSITIES, PAPER_SEEDS  # noqa: E402


def plan(n_trials: int, epochs: int) -> list[dict]:
    """The paper's CMNIST / CIFAR-10-C grid shape (14 densities x 3 seeds), cut at n_trials."""
    configs = synthetic.grid_configs(
        datasets=("cmnist", "cifar10c"),
        ratios=(0.5, 1.0, 2.0, 5.0),
        methods=("erm", "set", "rigl", "rest"),
        densities=PAPER_DENSITIES,
        seeds=PAPER_SEEDS,
        epochs=epochs,
    )
    seed = PAPER_SEEDS[-1]
    while len(configs) < n_trials:  # more seeds when asked for more trials than the grid has
        seed += 1
        configs += [dict(c, seed=seed) for c in configs[: n_trials - len(configs)]]
    return configs[:n_trials]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--keep", default=None, help="build here and keep it (default: temp dir)")
    args = parser.parse_args()

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="analyze-scale-"))
    configs = plan(args.trials, args.epochs)
    rng = random.Random(0)
    statuses = {}
    for config in configs:
        draw = rng.random()
        if draw < 0.10:
            statuses[synthetic.config_hash(config)] = (
                "pending" if draw < 0.03 else "running" if draw < 0.08 else "errored"
            )
    start = time.perf_counter()
    if not (root / "exp" / "experiment.json").exists():
        synthetic.write_experiment(str(root), "exp", configs, statuses=statuses, grid="scale")
    build_s = time.perf_counter() - start
    size_mb = sum(f.stat().st_size for f in (root / "exp").rglob("*") if f.is_file()) / 1e6
    print(
        f"experiment: {len(configs)} trials x {args.epochs} epochs, {size_mb:.1f} MB on disk, "
        f"built in {build_s:.1f} s ({root / 'exp'}); cores: {os.cpu_count()}"
    )

    for label, kwargs in (("analyze --no-figures", {"figures_too": False}), ("analyze", {})):
        out = root / "out" / label.replace(" ", "_")
        start = time.perf_counter()
        result = analyze(str(root), "exp", str(out), **kwargs)
        total = time.perf_counter() - start
        steps = ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items())
        rows = result.analysis.trials.num_rows, result.analysis.epochs.num_rows
        print(
            f"{label}: {total:.2f} s total ({steps}); trials.parquet {rows[0]} rows "
            f"{(out / 'trials.parquet').stat().st_size / 1e3:.0f} kB, epochs.parquet {rows[1]} rows "
            f"{(out / 'epochs.parquet').stat().st_size / 1e6:.2f} MB"
        )
    start = time.perf_counter()
    path = report(str(root), "exp", str(root / "out" / "report"))
    print(f"report: {time.perf_counter() - start:.2f} s, {Path(path).stat().st_size / 1e6:.1f} MB")
    if not args.keep:
        shutil.rmtree(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
