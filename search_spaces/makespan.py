"""Wall time of a grid on a cluster: a small simulation of Ray placing its trials (torch-free).

Users plan by wall time, not GPU-hours: ``grids show GRID --cluster 4x8`` prints the estimated
makespan from this module. The model of a launch:

* **Placement.** Trials are offered in grid order (Tune's FIFO over ``grid_search``); each time
  resources free up, every waiting trial that fits starts, on the first node with room (its
  CPUs, and a GPU whose free fraction holds its share: Ray packs fractional GPUs onto one
  device). A share of 1 or more takes that many whole GPUs.
* **Duration.** start-up (fixed seconds) + training work, where work = sample-epochs of the
  trial's ``MethodInfo.cost_schedule`` x train-set size x (1 + evaluation overhead), done at the per-trial
  rate of its sharing level: K trials training on one GPU share the model's measured aggregate,
  ``aggregate(K) / K`` each. K changes as neighbours start and finish, so each trial's remaining
  work is re-timed then (a heap of finish times with version stamps). Trials in start-up do not
  count in K (host-side work, mostly). Mixed models on one GPU each take their own model's
  ``aggregate(K) / K``: an approximation, not measured.
* **Figures.** ``throughput.csv`` next to this module (package data, the one table of measured
  per-model aggregates, start-up and overhead). A (model, input size, width) without a measured
  row is FLOP-scaled from that model's measured rows (or simple_cnn's, for a model never
  measured) with the catalogue's analytic forward FLOPs, and the estimate says it is estimated.
  K beyond the largest measured K keeps that K's aggregate (no further gain assumed).

The same engine runs CPU slots (shares 0, a constant rate): ``tests/test_makespan.py`` checks
its event logic exactly and docs/sweeps.md compares it with a real CPU sweep.
"""

from __future__ import annotations

import csv
import heapq
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainables.errors import UserError

if TYPE_CHECKING:
    from trainables.config import TrialConfig

TABLE = Path(__file__).with_name("throughput.csv")
UNITS = 10_000  # Ray accounts fractional resources in 1/10,000ths
CPUS_PER_GPU = 8  # default CPUs per node per GPU of a --cluster NODESxGPUS
REFERENCE_MODEL = "simple_cnn"  # FLOP-scaling source for a model with no measured row
MAX_CLUSTER_GPUS = 100_000  # the simulation holds every GPU; larger is a typo, not a cluster
CLUSTER_FORM = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$", re.IGNORECASE)


# ---------------------------------------------------------------------- the cluster


@dataclass(frozen=True)
class Cluster:
    """``nodes`` identical nodes of ``gpus`` GPUs and ``cpus`` CPUs each."""

    nodes: int
    gpus: int
    cpus: int

    @classmethod
    def parse(cls, text: str, cpus_per_gpu: int = CPUS_PER_GPU) -> Cluster:
        """``--cluster NODESxGPUS`` (``4x8``): one-line UserError naming the form otherwise."""
        match = CLUSTER_FORM.match(str(text))
        size = int(match[1]) * int(match[2]) if match else 0
        if not match or int(match[1]) < 1 or int(match[2]) < 1 or size > MAX_CLUSTER_GPUS:
            raise UserError(
                f"--cluster: {text!r} is not allowed; allowed: NODESxGPUS with both >= 1 and "
                f"at most {MAX_CLUSTER_GPUS} GPUs in all, e.g. 4x8 (4 nodes of 8 GPUs)"
            )
        nodes, gpus = int(match[1]), int(match[2])
        return cls(nodes, gpus, gpus * cpus_per_gpu)

    def label(self) -> str:
        return f"{self.nodes}x{self.gpus} ({self.cpus} CPUs per node)"


# ---------------------------------------------------------------------- the engine


@dataclass(frozen=True)
class SimTrial:
    """One trial as the engine sees it: resources, start-up seconds, work and its rate.

    ``rate(k)`` is the per-trial work rate when ``k`` trials train on its GPU (a GPU trial) or
    the constant rate of a CPU trial (``gpus == 0``; ``k`` is then always 1).
    """

    label: str
    cpus: float
    gpus: float
    startup_s: float
    work: float
    rate: Callable[[int], float]


@dataclass
class _Node:
    cpus: int
    gpus: list[int]  # free units per GPU


@dataclass
class _Running:
    index: int
    node: int
    gpu_ids: tuple[int, ...]
    cpus: int
    units: tuple[int, ...]
    placed: float
    training: bool = False
    remaining: float = 0.0
    rate: float = 0.0
    since: float = 0.0
    version: int = 0


@dataclass(frozen=True)
class Makespan:
    """What the simulation found: wall seconds, allocated GPU fraction, trials per label."""

    seconds: float
    gpu_utilisation: float | None  # GPU-seconds held by trials / (GPUs x makespan)
    trials: dict[str, int]
    finish: tuple[float, ...]  # per trial, in input order
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "hours": self.seconds / 3600,
            "gpu_utilisation": self.gpu_utilisation,
            "trials_per_model": self.trials,
            "notes": list(self.notes),
        }


def _units(value: float) -> int:
    return round(value * UNITS)


def simulate(trials: Sequence[SimTrial], cluster: Cluster) -> Makespan:
    """Place ``trials`` in order on ``cluster`` as Ray would and run them to the end."""
    nodes = [_Node(cluster.cpus * UNITS, [UNITS] * cluster.gpus) for _ in range(cluster.nodes)]
    for t in trials:
        if _place(t, _Node(cluster.cpus * UNITS, [UNITS] * cluster.gpus)) is None:
            raise UserError(
                f"{t.label}: {t.cpus:g} CPUs and {t.gpus:g} GPUs per trial do not fit a node of "
                f"{cluster.label()}; allowed: at most {cluster.cpus} CPUs and {cluster.gpus} GPUs"
            )
    waiting = list(range(len(trials)))
    running: dict[int, _Running] = {}
    on_gpu: dict[tuple[int, int], set[int]] = {}  # (node, gpu) -> indices training there
    heap: list[tuple[float, int, int]] = []  # (time, index, version)
    finish = [0.0] * len(trials)
    gpu_seconds = 0.0
    now = 0.0

    def retime(key: tuple[int, int] | None, now: float) -> None:
        """Advance the trials training on one GPU to ``now`` and re-time them at the new K."""
        members = [running[i] for i in on_gpu.get(key, ())] if key else []
        for r in members:
            r.remaining = max(0.0, r.remaining - r.rate * (now - r.since))
            r.since = now
            r.rate = trials[r.index].rate(len(members))
            r.version += 1
            heapq.heappush(heap, (now + r.remaining / r.rate, r.index, r.version))

    def start_waiting(now: float) -> None:
        full: set[tuple[float, float]] = set()  # demands that found no room in this pass
        for index in list(waiting):
            demand = (trials[index].cpus, trials[index].gpus)
            if demand in full:
                continue
            n, spot = _first_fit(trials[index], nodes)
            if spot is None:
                full.add(demand)
                continue
            waiting.remove(index)
            gpu_ids, units, cpus = spot
            node = nodes[n]
            node.cpus -= cpus
            for g, u in zip(gpu_ids, units, strict=True):
                node.gpus[g] -= u
            r = _Running(index, n, gpu_ids, cpus, units, placed=now, since=now)
            running[index] = r
            heapq.heappush(heap, (now + trials[index].startup_s, index, r.version))

    start_waiting(now)
    while heap:
        time, index, version = heapq.heappop(heap)
        r = running.get(index)
        if r is None or r.version != version:
            continue  # re-timed since, or finished
        now = time
        trial = trials[index]
        key = (r.node, r.gpu_ids[0]) if r.gpu_ids else None
        if not r.training:  # start-up done: train
            r.training, r.remaining, r.since = True, trial.work, now
            if key is None:
                r.rate = trial.rate(1)
                r.version += 1
                heapq.heappush(heap, (now + r.remaining / r.rate, index, r.version))
            else:
                on_gpu.setdefault(key, set()).add(index)
                retime(key, now)
            continue
        finish[index] = now
        del running[index]
        node = nodes[r.node]
        node.cpus += r.cpus
        for g, u in zip(r.gpu_ids, r.units, strict=True):
            node.gpus[g] += u
        gpu_seconds += sum(r.units) / UNITS * (now - r.placed)
        if key is not None:
            on_gpu[key].discard(index)
            retime(key, now)
        start_waiting(now)
    total_gpus = cluster.nodes * cluster.gpus
    utilisation = gpu_seconds / (total_gpus * now) if total_gpus and now > 0 else None
    return Makespan(now, utilisation, dict(Counter(t.label for t in trials)), tuple(finish))


def _first_fit(
    trial: SimTrial, nodes: Sequence[_Node]
) -> tuple[int, tuple[tuple[int, ...], tuple[int, ...], int] | None]:
    """The first node with room for ``trial`` and its spot there (Ray's default packing)."""
    for n, node in enumerate(nodes):
        spot = _place(trial, node)
        if spot is not None:
            return n, spot
    return -1, None


def _place(trial: SimTrial, node: _Node) -> tuple[tuple[int, ...], tuple[int, ...], int] | None:
    """(GPU ids, units taken on each, CPU units) of ``trial`` on ``node``, or None: no room."""
    cpus = _units(trial.cpus)
    if cpus > node.cpus:
        return None
    share = _units(trial.gpus)
    if share == 0:
        return (), (), cpus
    if share <= UNITS:
        for g, free in enumerate(node.gpus):
            if free >= share:
                return (g,), (share,), cpus
        return None
    whole = math.ceil(share / UNITS)
    free = [g for g, f in enumerate(node.gpus) if f == UNITS][:whole]
    return (tuple(free), (UNITS,) * whole, cpus) if len(free) == whole else None


# ---------------------------------------------------------------------- the measured figures


@dataclass(frozen=True)
class Throughput:
    """A model's figures at one input size and width: aggregate samples/s per K trials per GPU,
    start-up seconds, evaluation overhead; ``basis`` is ``measured`` or ``estimated (why)``."""

    model: str
    input_px: int
    width: int
    aggregate: Mapping[int, float]
    startup_s: float
    epoch_overhead: float
    basis: str
    gpu: str = ""

    def per_trial(self, k: int) -> float:
        """Samples/s of one of ``k`` trials training on one GPU: ``aggregate(k) / k``; a K
        between measured ones is interpolated, one beyond them keeps the largest K's aggregate."""
        known = sorted(self.aggregate)
        if k in self.aggregate:
            return self.aggregate[k] / k
        if k > known[-1]:
            return self.aggregate[known[-1]] / k
        if k < known[0]:  # fewer trials than any measured K: no faster than one of those
            return self.aggregate[known[0]] / known[0]
        low = max(n for n in known if n < k)
        high = min(n for n in known if n > k)
        if low == high:
            return self.aggregate[low] / k
        a, b = self.aggregate[low], self.aggregate[high]
        return (a + (b - a) * (k - low) / (high - low)) / k

    def scaled(self, factor: float, px: int, width: int, why: str) -> Throughput:
        """These figures for a network ``factor`` times as costly per sample (estimated)."""
        return Throughput(
            self.model,
            px,
            width,
            {k: v / factor for k, v in self.aggregate.items()},
            self.startup_s,
            self.epoch_overhead,
            f"estimated ({why})",
            self.gpu,
        )


@dataclass
class ThroughputTable:
    """``throughput.csv``: measured rows keyed by (model, input px, width), plus the notes of
    rows marked estimated (they hold no numbers: those are FLOP-scaled at lookup)."""

    rows: dict[tuple[str, int, int], Throughput]
    estimated_notes: dict[tuple[str, int, int], str] = field(default_factory=dict)
    # samples/s of the public REST pipeline (``loop`` = reference): what grid_cost compares with
    reference: dict[tuple[str, int, int], float] = field(default_factory=dict)
    # the same K processes with the CUDA MPS daemon up (``loop`` = single_mps): an opt-in that
    # needs the daemon started on every GPU node, so plans use ``rows`` unless asked
    mps: dict[tuple[str, int, int], Throughput] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | str = TABLE) -> ThroughputTable:
        measured: dict[str, dict[tuple[str, int, int], dict[str, Any]]] = {
            "single": {},
            "single_mps": {},
        }
        notes: dict[tuple[str, int, int], str] = {}
        reference: dict[tuple[str, int, int], float] = {}
        with Path(path).open(newline="") as handle:
            for row in csv.DictReader(handle):
                key = (row["model"], int(row["input_px"]), int(row["width"]))
                if row["basis"] != "measured":
                    notes[key] = row["note"]
                    continue
                if row["loop"] == "reference":
                    reference[key] = float(row["aggregate_samples_s"])
                    continue
                entry = measured[row["loop"]].setdefault(key, {"aggregate": {}, "row": row})
                entry["aggregate"][int(row["processes_per_gpu"])] = float(
                    row["aggregate_samples_s"]
                )

        def throughputs(loop: str) -> dict[tuple[str, int, int], Throughput]:
            return {
                key: Throughput(
                    key[0],
                    key[1],
                    key[2],
                    e["aggregate"],
                    float(e["row"]["startup_s"]),
                    float(e["row"]["epoch_overhead"]),
                    "measured",
                    e["row"]["gpu"],
                )
                for key, e in measured[loop].items()
            }

        return cls(throughputs("single"), notes, reference, throughputs("single_mps"))

    def with_mps(self) -> ThroughputTable:
        """This table with the MPS aggregates in place of the plain ones where measured."""
        return ThroughputTable({**self.rows, **self.mps}, self.estimated_notes, self.reference)

    def gpus(self) -> str:
        return ", ".join(sorted({t.gpu for t in self.rows.values() if t.gpu})) or "unknown GPU"

    def lookup(self, model: str, px: int, width: int) -> Throughput:
        """The measured figures, or FLOP-scaled ones from the same model's measured row
        nearest in input size (or ``REFERENCE_MODEL``'s, for a model never measured)."""
        if (model, px, width) in self.rows:
            return self.rows[(model, px, width)]
        return _scaled_lookup(self, model, px, width)

    def with_gpu_json(self, doc: Mapping[str, Any]) -> ThroughputTable:
        """These rows with the figures of a ``benchmarks/results/gpu.json`` in place of the
        measured ones of the same model and input size, as ``benchmarks/gpu_throughput.py``
        writes them: ``models.<name>.{model, input_size, reference, aggregate.per_k.<K>,
        aggregate_mps.per_k.<K>, startup.<cut|on>.startup_s, variants}``.

        A model measured alone (224-px ResNet-18: no K processes) gets K=1 from its variant in
        ``aggregate_precision`` (the precision its aggregates use). Start-up is the ``cut``
        variant (what trials do) when measured. A reference marked ``reference_valid: false``
        is not taken. A size the table only estimated becomes a measured row, with the width of
        the model's other rows."""
        rows, reference, mps = dict(self.rows), dict(self.reference), dict(self.mps)
        notes = dict(self.estimated_notes)
        gpu = str(doc.get("gpu") or doc.get("device") or "")
        precisions = doc.get("aggregate_precision") or {}
        for name, figures in doc.get("models", {}).items():
            model = str(figures.get("model") or name)
            px = figures.get("input_size")
            per_k = _per_k(figures.get("aggregate"))
            if not per_k:
                variant = (figures.get("variants") or {}).get(precisions.get(model, "fp32"))
                if variant:
                    per_k = {1: float(variant["samples_per_s"])}
            per_k_mps = _per_k(figures.get("aggregate_mps"))
            if per_k_mps and 1 in per_k:  # MPS changes nothing for one process
                per_k_mps = {1: per_k[1], **per_k_mps}
            startups = figures.get("startup") or {}
            startup = (startups.get("cut") or startups.get("on") or {}).get("startup_s")
            startup = figures.get("startup_s", startup)
            keys = [k for k in self.rows if k[0] == model and (px is None or k[1] == int(px))]
            if not keys and px is not None:  # an estimated size, now measured
                widths = sorted({k[2] for k in self.rows if k[0] == model})
                keys = [(model, int(px), widths[0])] if widths else []
            for key in keys:
                value = figures.get("reference")
                if isinstance(value, int | float) and figures.get("reference_valid", True):
                    reference[key] = float(value)
                old = rows.get(key)
                if not per_k:
                    continue
                template = old or next(r for k, r in self.rows.items() if k[0] == model)
                if not per_k_mps:  # MPS figures of another run would not match the new ones
                    mps.pop(key, None)
                for table, aggregate in ((rows, per_k), (mps, per_k_mps)):
                    if not aggregate:
                        continue
                    table[key] = Throughput(
                        model,
                        key[1],
                        key[2],
                        aggregate,
                        float(startup) if startup is not None else template.startup_s,
                        template.epoch_overhead,
                        "measured",
                        gpu or template.gpu,
                    )
                notes.pop(key, None)
        return ThroughputTable(rows, notes, reference, mps)

    def write(self, path: Path | str, source: str, date: str) -> None:
        """Write these rows in ``throughput.csv``'s layout (the ``--write-table`` update path)."""
        with Path(path).open(newline="") as handle:
            old = list(csv.DictReader(handle))
        fields = list(old[0])
        out = []
        for key, value in self.reference.items():
            same = (key[0], str(key[1]), str(key[2]))
            row = next(
                (
                    r
                    for r in old
                    if r["loop"] == "reference" and (r["model"], r["input_px"], r["width"]) == same
                ),
                None,
            )
            if row is None or float(row["aggregate_samples_s"]) != value:  # a new measurement
                template = self.rows.get(key)
                row = {
                    **dict.fromkeys(fields, ""),
                    "model": key[0],
                    "input_px": key[1],
                    "width": key[2],
                    "gpu": template.gpu if template else "",
                    "loop": "reference",
                    "processes_per_gpu": 1,
                    "aggregate_samples_s": f"{value:g}",
                    "epoch_overhead": f"{template.epoch_overhead:g}" if template else "",
                    "basis": "measured",
                    "date": date,
                    "source": source,
                    "note": "the public REST pipeline over a real epoch (gpu_throughput.py)",
                }
            out.append(row)
        measured = [("single", t) for t in self.rows.values()]
        measured += [("single_mps", t) for t in self.mps.values()]
        for loop, t in sorted(measured, key=lambda e: (e[1].model, e[1].input_px, e[0])):
            for k, value in sorted(t.aggregate.items()):
                out.append(
                    {
                        "model": t.model,
                        "input_px": t.input_px,
                        "width": t.width,
                        "gpu": t.gpu,
                        "loop": loop,
                        "processes_per_gpu": k,
                        "aggregate_samples_s": f"{value:g}",
                        "startup_s": f"{t.startup_s:g}",
                        "epoch_overhead": f"{t.epoch_overhead:g}",
                        "basis": "measured",
                        "date": date,
                        "source": source,
                        "note": (
                            "K graphed trial processes over one common window"
                            f"{' under CUDA MPS' if loop == 'single_mps' else ''}; start-up "
                            "of a fresh process (cudnn.benchmark cut); epoch_overhead carried "
                            "over from the row this one replaced"
                        ),
                    }
                )
        measured_keys = {(t.model, t.input_px, t.width) for _, t in measured}
        out += [
            r
            for r in old
            if r["basis"] != "measured"
            and (r["model"], int(r["input_px"]), int(r["width"])) not in measured_keys
        ]
        with Path(path).open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(out)


def _per_k(aggregate: Mapping[str, Any] | None) -> dict[int, float]:
    """``{K: samples/s}`` of a gpu.json ``aggregate`` block (``per_k.<K>.samples_per_s``)."""
    return {
        int(k): float(v["samples_per_s"] if isinstance(v, Mapping) else v)
        for k, v in ((aggregate or {}).get("per_k") or {}).items()
    }


def dense_forward_flops(model: str, px: int, width: int) -> float:
    """Dense forward FLOPs per image (10 classes, ImageNet stem): the scaling yardstick."""
    from trainables.models import MODELS

    return sum(
        layer.flops for layer in MODELS.get(model).layers(10, width, "imagenet", px).values()
    )


def _scaled_lookup(table: ThroughputTable, model: str, px: int, width: int) -> Throughput:
    same = [t for t in table.rows.values() if t.model == model]
    pool = same or [t for t in table.rows.values() if t.model == REFERENCE_MODEL]
    if not pool:
        raise UserError(f"throughput: no measured row for {model!r} or {REFERENCE_MODEL!r}")
    # nearest on a log scale: 128 px is closer to 224 px (1.75x) than to 32 px (4x)
    base = min(pool, key=lambda t: (abs(math.log(t.input_px / px)), abs(t.width - width)))
    factor = dense_forward_flops(model, px, width) / dense_forward_flops(
        base.model, base.input_px, base.width
    )
    why = f"FLOP-scaled from {base.model} at {base.input_px} px, width {base.width}"
    return base.scaled(factor, px, width, why)


# ---------------------------------------------------------------------- a grid's trials


@lru_cache(maxsize=1)
def shipped_table() -> ThroughputTable:
    return ThroughputTable.load()


def trial_work(cfg: TrialConfig) -> tuple[str, int, int, float]:
    """(model, trained input px, width, sample-epochs) of one trial, as the FLOPs estimate
    charges it (``MethodInfo.cost_schedule``: two-network methods count both networks, staged trials
    every stage)."""
    from trainables.datasets import DATASETS, planned_train_samples

    info = DATASETS.get(cfg.dataset)
    schedule = cfg.method_info.cost_schedule(cfg)
    samples = sum(epochs for epochs, _ in schedule) * planned_train_samples(cfg)
    return cfg.model, info.trained_size(cfg.augment), cfg.width, float(samples)


def gpu_trials(
    configs: Iterable[TrialConfig],
    shares: float | Mapping[str, float] | None = None,
    cpus_per_trial: float = 1.0,
    table: ThroughputTable | None = None,
) -> tuple[list[SimTrial], tuple[str, ...]]:
    """The engine's trials for a grid on GPUs, and a note per estimated figure used.

    ``shares`` is ``--gpus-per-trial`` as :func:`rest_sweep.launch_settings.parse_gpu_shares`
    returns it: one share for every model, per-model shares (a model not named keeps its
    catalogue default) or None (every model its default, ``MODELS.get(m).gpu_share``)."""
    from trainables.models import MODELS

    table = table or shipped_table()
    out: list[SimTrial] = []
    notes: dict[str, None] = {}
    for cfg in configs:
        model, px, width, samples = trial_work(cfg)
        figures = table.lookup(model, px, width)
        if figures.basis != "measured":
            notes[f"{model} {px} px width {width}: {figures.basis}"] = None
        if isinstance(shares, Mapping):
            share = shares.get(model, MODELS.get(model).gpu_share)
        else:
            share = MODELS.get(model).gpu_share if shares is None else shares
        if share <= 0:
            raise UserError(
                f"--gpus-per-trial: {model} 0 is not allowed here; allowed: a share > 0 "
                "(the cluster simulation places trials on GPUs)"
            )
        k_max = max(1, int(round(1 / share, 6))) if share < 1 else 1
        if k_max > max(figures.aggregate):
            notes[
                f"{model} {px} px at {k_max} trials per GPU: beyond the measured "
                f"{max(figures.aggregate)}, its aggregate held (not measured)"
            ] = None
        out.append(
            SimTrial(
                model,
                cpus_per_trial,
                share,
                figures.startup_s,
                samples * (1 + figures.epoch_overhead),
                figures.per_trial,
            )
        )
    return out, tuple(notes)


def estimate_makespan(
    configs: Sequence[TrialConfig],
    cluster: Cluster,
    shares: float | Mapping[str, float] | None = None,
    cpus_per_trial: float = 1.0,
    table: ThroughputTable | None = None,
) -> Makespan:
    """The grid's estimated wall time on ``cluster`` (GPU trials), notes included."""
    table = table or shipped_table()
    trials, notes = gpu_trials(configs, shares, cpus_per_trial, table)
    result = simulate(trials, cluster)
    basis = f"figures of {table.gpus()} (search_spaces/throughput.csv)"
    return Makespan(
        result.seconds, result.gpu_utilisation, result.trials, result.finish, (basis, *notes)
    )


def format_duration(seconds: float) -> str:
    """``1 h 05 min`` / ``12 min 30 s`` / ``42 s``: what a planner reads."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
