"""How planning scales: ``grids show`` and ``run`` (up to Ray) on 1k, 10k and 100k-trial grids.

For each size it writes a YAML grid (5 sparse methods x 4 ratios x densities x seeds), then,
each in a fresh process so that the peak memory is that step's own:

* ``grids show FILE`` (the real CLI, text output): wall time and peak RSS;
* the planning of ``run``: ``rest_sweep.service.run`` up to the moment it would start Ray
  (expansion, the live-driver check, the plan written to the ledger, the unfinished trials, the
  launch record), with the data check skipped (``validate_data`` needs a real bundle; it reads
  one manifest per (dataset, ratio), not per trial): wall time and peak RSS at that moment;
* then, in the same process, each ledger update a launch makes: its start (which writes its
  trial list), a heartbeat, a launch update (the resources), an early stop, its end: time and
  bytes written;
* the reference, measured in the same process: the whole ledger (``read_ledger``) written as the
  one ``experiment.json`` that every update used to rewrite (indented, sorted JSON): time and
  bytes. Each update's cost is printed as a ratio to it, and each size's planning time as a
  ratio to the smallest size's (per trial).

Prints figures; never a test with a time threshold (``tests/test_plan_scale.py`` runs it at a
tiny size to keep it working).

    .venv/bin/python benchmarks/plan_scale.py                        # 1k, 10k and 100k
    .venv/bin/python benchmarks/plan_scale.py --sizes 1000,10000     # skip 100k (minutes)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
METHODS = ("mrm", "static", "set", "rigl", "rest")
RATIOS = (0.5, 1.0, 2.0, 5.0)
PER_CELL = len(METHODS) * len(RATIOS)  # a size is a multiple of this


def grid_yaml(size: int) -> str:
    """A grid of exactly ``size`` trials: up to 20 densities, the rest seeds."""
    if size % PER_CELL:
        raise SystemExit(f"--sizes: {size} is not a multiple of {PER_CELL}")
    cells = size // PER_CELL
    densities = max(d for d in range(1, 21) if cells % d == 0)
    seeds = cells // densities
    values = [round(0.01 + i * 0.045, 3) for i in range(densities)]
    return (
        f"name: scale{size}\n"
        f"description: {size} trials for benchmarks/plan_scale.py\n"
        "recipe: paper\n"
        "fixed: {dataset: cmnist, epochs: 20}\n"
        "axes:\n"
        f"  seed: {list(range(seeds))}\n"
        f"  ratio: {list(RATIOS)}\n"
        f"  density: {values}\n"
        f"methods: {{{', '.join(f'{m}: {{}}' for m in METHODS)}}}\n"
    )


def _rss_mb(usage: resource.struct_rusage) -> float:
    return usage.ru_maxrss / 1024  # kB on Linux


def _child(argv: list[str]) -> tuple[float, float, str]:
    """Run a child process: (wall s, peak RSS MB, stdout)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, *argv], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}")
    return wall, _rss_mb(usage), out


# ---------------------------------------------------------------------- the planning child


class _RayReached(Exception):
    pass


def _written() -> tuple[list[int], Any]:
    """Count the bytes every atomic write of the result format writes (Location.write_bytes)."""
    from trainables import results

    sizes: list[int] = []
    real = results.Location.write_bytes

    def write_bytes(self: Any, name: str, data: bytes) -> None:
        sizes.append(len(data))
        real(self, name, data)

    results.Location.write_bytes = write_bytes  # type: ignore[method-assign]
    return sizes, real


def _timed(sizes: list[int], call: Any) -> dict[str, float]:
    before = len(sizes)
    start = time.perf_counter()
    call()
    seconds = time.perf_counter() - start
    return {"s": seconds, "bytes": sum(sizes[before:]), "files": len(sizes) - before}


def plan_child(grid: str, storage: str, heartbeats: int = 5) -> dict[str, Any]:
    """``run`` up to Ray, then one of each ledger update (``heartbeats`` before and after
    a launch starts: the median is reported); figures as a dict."""
    import rest_sweep.cluster
    from rest_sweep import ledger as ledgers
    from rest_sweep import service
    from rest_sweep.launch_settings import LaunchSettings
    from trainables.results import ExperimentStore, json_safe

    baseline = _rss_mb(resource.getrusage(resource.RUSAGE_SELF))
    reached: dict[str, float] = {}

    def ray_context(*args: Any, **kwargs: Any) -> Any:
        reached["s"] = time.perf_counter() - start
        reached["rss"] = _rss_mb(resource.getrusage(resource.RUSAGE_SELF))
        reached["bytes"] = sum(sizes)
        raise _RayReached

    rest_sweep.cluster.ray_context = ray_context  # type: ignore[assignment]
    service.validate_data = lambda root, trials, on_driver=True: root  # type: ignore[assignment]
    sizes, _ = _written()
    start = time.perf_counter()
    with contextlib.suppress(_RayReached):
        service.run(grid, "/data", storage, "exp", quiet=True)
    store = ExperimentStore(storage, "exp")
    ledger = store.read_ledger()
    hashes = list(ledger["trials"])
    updates = {}
    beats = [
        _timed(sizes, lambda: ledgers.heartbeat(store, ledger["launches"][0]["id"]))
        for _ in range(heartbeats)
    ]
    settings = LaunchSettings()
    launch: dict[str, Any] = {}

    def start_launch() -> None:
        launch.update(ledgers.start_launch(store, "resume", "(all planned)", hashes, settings))

    updates["start a launch"] = _timed(sizes, start_launch)
    beats += [
        _timed(sizes, lambda: ledgers.heartbeat(store, launch["id"])) for _ in range(heartbeats)
    ]
    updates["heartbeat"] = {
        "s": statistics.median(b["s"] for b in beats),
        "bytes": statistics.median(b["bytes"] for b in beats),
        "files": statistics.median(b["files"] for b in beats),
    }
    resources = {"simple_cnn": {"cpu": 1.0, "gpu": 0.25}}
    updates["launch update"] = _timed(
        sizes, lambda: ledgers.update_launch(store, launch["id"], resources=resources)
    )
    updates["early stop"] = _timed(
        sizes, lambda: ledgers.mark_stopped(store, hashes[0], launch["id"], 3)
    )
    counts = {"trials": len(hashes), "finished": 0, "errored": 0, "stopped": 1}
    updates["end of launch"] = _timed(
        sizes, lambda: ledgers.end_launch(store, launch["id"], "completed", counts)
    )
    start = time.perf_counter()
    whole = store.read_ledger()
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    text = json.dumps(json_safe(whole), indent=1, sort_keys=True, allow_nan=False) + "\n"
    with tempfile.NamedTemporaryFile("w", dir=storage, suffix=".json") as out:
        out.write(text)
        out.flush()
    reference = {"s": time.perf_counter() - start, "bytes": len(text.encode())}
    return {
        "plan_s": reached.get("s"),
        "plan_rss_mb": reached.get("rss"),
        "baseline_rss_mb": baseline,
        "plan_bytes": reached.get("bytes"),
        "trials": len(hashes),
        "read_ledger_s": read_s,
        "updates": updates,
        "reference": reference,
    }


# ---------------------------------------------------------------------- the parent


def measure(size: int, workdir: Path, beats: int = 5) -> dict[str, Any]:
    grid = workdir / f"scale{size}.yaml"
    grid.write_text(grid_yaml(size))
    show_s, show_rss, _ = _child(["-m", "rest_sweep.cli", "grids", "show", str(grid)])
    storage = workdir / f"storage{size}"
    code = f"import sys; sys.argv[1:] = {[str(grid), str(storage), str(beats)]!r}; "
    code += "from benchmarks.plan_scale import _child_main; _child_main()"
    _, rss, out = _child(["-c", code])
    figures = json.loads(out.strip().splitlines()[-1])
    return {"size": size, "show_s": show_s, "show_rss_mb": show_rss, "rss_mb": rss, **figures}


def _child_main() -> None:
    print(json.dumps(plan_child(sys.argv[1], sys.argv[2], int(sys.argv[3]))))


def report(results: list[dict[str, Any]]) -> None:
    first = results[0]
    per_trial_1 = first["plan_s"] / first["size"]
    show_1 = first["show_s"] / first["size"]
    ref_label = f"{first['size']} (show, run)"
    print(
        f"{'trials':>7}  {'grids show':>16}  {'run planning':>16}  {'per trial vs':>14}  "
        f"{'plan written':>12}  {'whole ledger':>16}"
    )
    print(
        f"{'':>7}  {'s':>7} {'MB RSS':>8}  {'s':>7} {'MB RSS':>8}  "
        f"{ref_label:>14}  {'MB':>12}  {'MB':>7} {'write s':>8}"
    )
    for r in results:
        ratio = (
            f"{r['show_s'] / r['size'] / show_1:.2f}, {r['plan_s'] / r['size'] / per_trial_1:.2f}"
        )
        print(
            f"{r['size']:>7}  {r['show_s']:>7.2f} {r['show_rss_mb']:>8.0f}  {r['plan_s']:>7.2f} "
            f"{r['plan_rss_mb']:>8.0f}  {ratio:>14}  {r['plan_bytes'] / 1e6:>12.2f}  "
            f"{r['reference']['bytes'] / 1e6:>7.2f} {r['reference']['s']:>8.3f}"
        )
    print(
        "(RSS: peak of the process; the planning process held "
        f"{first['baseline_rss_mb']:.0f} MB after its imports. 'whole ledger': every update "
        "rewrote it before the ledger was split.)"
    )
    print()
    print(
        f"{'trials':>7}  {'update':<15} {'ms':>9} {'bytes':>10} {'files':>5}  "
        f"{'time / whole-ledger write':>25}  {'bytes / whole ledger':>20}"
    )
    for r in results:
        ref = r["reference"]
        for name, u in r["updates"].items():
            print(
                f"{r['size']:>7}  {name:<15} {u['s'] * 1e3:>9.2f} {u['bytes']:>10.0f} "
                f"{u['files']:>5.0f}  {u['s'] / ref['s']:>25.4f}  "
                f"{u['bytes'] / ref['bytes']:>20.6f}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        default="1000,10000,100000",
        help=f"comma-separated trial counts, each a multiple of {PER_CELL}; the first is the "
        "reference of the per-trial ratios",
    )
    parser.add_argument(
        "--beats",
        type=int,
        default=5,
        help="heartbeats timed before and after a launch starts (the median is printed)",
    )
    parser.add_argument("--keep", default=None, help="work here and keep it (default: temp dir)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="plan-scale-") as tmp:
        workdir = Path(args.keep or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"plan_scale: sizes {sizes}, {os.cpu_count()} cores, {sys.version.split()[0]}")
        results = []
        for size in sizes:
            results.append(measure(size, workdir, max(1, args.beats)))
            r = results[-1]
            print(f"  {size}: grids show {r['show_s']:.2f} s, run planning {r['plan_s']:.2f} s")
        print()
        report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
