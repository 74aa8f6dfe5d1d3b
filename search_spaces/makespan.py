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
* **Fused groups** (``--fuse K``, issue 25): the trials are grouped as the launcher groups them
  (``trainables.fusion.fuse_groups``); a group of two or more is one simulated trial holding one
  trial's resources, with its members' work at the table's measured fused aggregate
  (:class:`FusedThroughput`). Refused while the table has no fused figure.

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
from functools import lru_cache, partial
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
    the constant rate of a CPU trial (``gpus == 0``; ``k`` is then always 1). A fused group is
    one such trial: its work is its members' together, ``k`` counts groups and plain trials.
    """

    label: str
    cpus: float
    gpus: float
    startup_s: float
    work: float
    rate: Callable[[int], float]
    members: int = 1  # grid trials it stands for: K for a fused group (one Ray trial)


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
    finish: tuple[float, ...]  # per simulated trial (a fused group is one), in input order
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
    counts: Counter[str] = Counter()
    for t in trials:
        counts[t.label] += t.members
    return Makespan(now, utilisation, dict(counts), tuple(finish))


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
        if k < min(self.aggregate):  # fewer trials than any measured K: no faster than one
            return self.aggregate[min(self.aggregate)] / min(self.aggregate)
        return aggregate_at(self.aggregate, k) / k

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


def aggregate_at(aggregate: Mapping[int, float], k: int) -> float:
    """Aggregate samples/s of ``k`` trials from figures measured at some K: a measured K's own,
    linear between measured ones, the largest K's beyond them (no further gain assumed), and
    below the smallest that K's per-trial rate times ``k`` (no faster than one of those)."""
    known = sorted(aggregate)
    if k in aggregate:
        return aggregate[k]
    if k > known[-1]:
        return aggregate[known[-1]]
    if k < known[0]:
        return aggregate[known[0]] / known[0] * k
    low = max(n for n in known if n < k)
    high = min(n for n in known if n > k)
    a, b = aggregate[low], aggregate[high]
    return a + (b - a) * (k - low) / (high - low)


@dataclass(frozen=True)
class FusedThroughput:
    """A model's fused-group figures (``trainables.train.fused``, issue 25) at one input size
    and width: aggregate samples/s of one process training K trials as one step
    (``single[K]``), of P such processes on one GPU under CUDA MPS (``mps[(P, K)]``), the
    group's start-up beyond a plain trial's (``extra_startup_s[K]``, see
    :func:`_fused_figures`) and the GPU that measured them."""

    single: Mapping[int, float]
    mps: Mapping[tuple[int, int], float]
    extra_startup_s: Mapping[int, float]
    gpu: str = ""

    def aggregate(self, k: int, processes: int, mps: bool) -> float:
        """Samples/s of ``processes`` fused groups of ``k`` trials training on one GPU, all
        together. One process: ``single`` at K (interpolated as :func:`aggregate_at`). More
        processes without MPS time-slice the GPU: no gain over one is assumed (not measured).
        With MPS: the measured P x K run with the most processes up to ``processes`` at this K,
        if it beats one process; otherwise one process's figure (an approximation: the GPU
        script measures MPS at one K per P, the fastest that fits in memory)."""
        one = aggregate_at(self.single, k)
        if processes <= 1 or not mps:
            return one
        at_k = {p: v for (p, kk), v in self.mps.items() if kk == k and p <= processes}
        return max(one, at_k[max(at_k)]) if at_k else one

    def per_group(self, k: int, mps: bool, processes: int) -> float:
        """Samples/s of one of ``processes`` fused groups of ``k`` sharing one GPU."""
        return self.aggregate(k, processes, mps) / processes

    def startup(self, k: int) -> float:
        """Seconds beyond a plain trial's start-up for a group of ``k`` (nearest measured K at
        or below, else the smallest: a larger group captures a larger graph)."""
        if not self.extra_startup_s:
            return 0.0
        known = sorted(self.extra_startup_s)
        below = [n for n in known if n <= k]
        return self.extra_startup_s[below[-1] if below else known[0]]


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
    # fused groups (``loop`` = fused: one process of ``trials_per_process`` trials; fused_mps:
    # ``processes_per_gpu`` such processes under MPS): used by plans that ask (``--fuse K``)
    fused: dict[tuple[str, int, int], FusedThroughput] = field(default_factory=dict)
    # the plan runs the CUDA MPS daemon (``with_mps``): fused groups sharing a GPU use fused_mps
    mps_daemon: bool = False

    @classmethod
    def load(cls, path: Path | str = TABLE) -> ThroughputTable:
        measured: dict[str, dict[tuple[str, int, int], dict[str, Any]]] = {
            "single": {},
            "single_mps": {},
        }
        notes: dict[tuple[str, int, int], str] = {}
        reference: dict[tuple[str, int, int], float] = {}
        fused: dict[tuple[str, int, int], dict[str, dict[Any, float]]] = {}
        with Path(path).open(newline="") as handle:
            for row in csv.DictReader(handle):
                key = (row["model"], int(row["input_px"]), int(row["width"]))
                if row["basis"] != "measured":
                    notes[key] = row["note"]
                    continue
                if row["loop"] == "reference":
                    reference[key] = float(row["aggregate_samples_s"])
                    continue
                if row["loop"] in ("fused", "fused_mps"):
                    entry = fused.setdefault(
                        key, {"single": {}, "mps": {}, "startup": {}, "gpu": row["gpu"]}
                    )
                    k, p = int(row["trials_per_process"]), int(row["processes_per_gpu"])
                    value = float(row["aggregate_samples_s"])
                    if row["loop"] == "fused":
                        entry["single"][k] = value
                        entry["startup"][k] = float(row["startup_s"] or 0.0)
                    else:
                        entry["mps"][(p, k)] = value
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

        groups = {
            key: FusedThroughput(e["single"], e["mps"], e["startup"], e["gpu"])
            for key, e in fused.items()
            if e["single"]  # MPS figures alone cannot be placed: no one-process K
        }
        return cls(throughputs("single"), notes, reference, throughputs("single_mps"), groups)

    def with_mps(self) -> ThroughputTable:
        """This table with the MPS aggregates in place of the plain ones where measured, and
        fused groups sharing a GPU timed with the MPS figures."""
        return ThroughputTable(
            {**self.rows, **self.mps}, self.estimated_notes, self.reference, {}, self.fused, True
        )

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
        the model's other rows. Fused groups (``fused.per_k.<K>``, ``fused_mps.per_run.<P>x<K>``)
        replace that key's fused figures; ``fused`` null keeps the table's."""
        rows, reference, mps = dict(self.rows), dict(self.reference), dict(self.mps)
        notes, fused = dict(self.estimated_notes), dict(self.fused)
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
            groups = _fused_figures(figures.get("fused"), figures.get("fused_mps"), gpu)
            for key in keys:
                value = figures.get("reference")
                if isinstance(value, int | float) and figures.get("reference_valid", True):
                    reference[key] = float(value)
                if groups is not None:
                    fused[key] = groups
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
        return ThroughputTable(rows, notes, reference, mps, fused, self.mps_daemon)

    def write(self, path: Path | str, source: str, date: str) -> None:
        """Write these rows in ``throughput.csv``'s layout (the ``--write-table`` update path)."""
        with Path(path).open(newline="") as handle:
            old = list(csv.DictReader(handle))
        fields = list(old[0])
        if "trials_per_process" not in fields:  # a table written before fused groups
            fields.insert(fields.index("processes_per_gpu") + 1, "trials_per_process")
            for r in old:
                r["trials_per_process"] = "1"
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
                    "trials_per_process": 1,
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
                        "trials_per_process": 1,
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
        out += self._fused_rows(source, date)
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

    def _fused_rows(self, source: str, date: str) -> list[dict[str, Any]]:
        """The fused figures as ``throughput.csv`` rows (``fused`` and ``fused_mps`` loops)."""
        out: list[dict[str, Any]] = []
        for key, groups in sorted(self.fused.items()):
            plain = self.rows.get(key)
            common = {
                "model": key[0],
                "input_px": key[1],
                "width": key[2],
                "gpu": groups.gpu or (plain.gpu if plain else ""),
                "epoch_overhead": f"{plain.epoch_overhead:g}" if plain else "",
                "basis": "measured",
                "date": date,
                "source": source,
            }
            for k, value in sorted(groups.single.items()):
                out.append(
                    {
                        **common,
                        "loop": "fused",
                        "processes_per_gpu": 1,
                        "trials_per_process": k,
                        "aggregate_samples_s": f"{value:g}",
                        "startup_s": f"{groups.startup(k):g}",
                        "note": "one process training K trials as one fused step; startup_s: "
                        "the group's build and capture beyond a plain trial's start-up",
                    }
                )
            for (p, k), value in sorted(groups.mps.items()):
                out.append(
                    {
                        **common,
                        "loop": "fused_mps",
                        "processes_per_gpu": p,
                        "trials_per_process": k,
                        "aggregate_samples_s": f"{value:g}",
                        "startup_s": "",
                        "note": "P processes of one fused group of K trials each, CUDA MPS",
                    }
                )
        return out


def _fused_figures(
    fused: Mapping[str, Any] | None, fused_mps: Mapping[str, Any] | None, gpu: str = ""
) -> FusedThroughput | None:
    """A gpu.json model's fused blocks as figures; None when it has no fused K measured.

    The benchmark builds each group in a warm process: ``build_s + warm_s`` less one steady
    epoch (``samples / epochs / samples_per_s``) is the group's build and first (capturing)
    epoch. A plain trial's start-up already holds one member's, so a K's extra is that less
    K = 1's (the script always measures K = 1; without it the whole figure is kept, an upper
    bound). An MPS run of processes that are not under MPS (``mps: false``, the CPU's --tiny
    run) is not taken."""
    single: dict[int, float] = {}
    whole: dict[int, float] = {}
    for k, run in ((fused or {}).get("per_k") or {}).items():
        rate = float(run["samples_per_s"])
        single[int(k)] = rate
        epoch_s = float(run.get("samples", 0)) / max(int(run.get("epochs", 1)), 1) / rate
        build = float(run.get("build_s", 0.0)) + float(run.get("warm_s", 0.0))
        whole[int(k)] = max(0.0, build - epoch_s)
    if not single:
        return None
    one = whole.get(1, 0.0)
    startup = {k: round(max(0.0, v - one), 4) for k, v in whole.items()}
    mps = {
        (int(run["processes"]), int(run["fuse"])): float(run["samples_per_s"])
        for run in ((fused_mps or {}).get("per_run") or {}).values()
        if run.get("mps", True)
    }
    return FusedThroughput(single, mps, startup, gpu)


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
    fuse: int = 1,
) -> tuple[list[SimTrial], tuple[str, ...]]:
    """The engine's trials for a grid on GPUs, and a note per estimated figure used.

    ``shares`` is ``--gpus-per-trial`` as :func:`rest_sweep.launch_settings.parse_gpu_shares`
    returns it: one share for every model, per-model shares (a model not named keeps its
    catalogue default) or None (every model its default, ``MODELS.get(m).gpu_share``).

    ``fuse`` > 1 groups the trials as the launcher does (``--fuse K``:
    :func:`trainables.fusion.fuse_groups`): a group of two or more is one engine trial holding
    one trial's resources, with its members' work together, the fused figures' rate and a
    plain trial's start-up plus the group's extra. A group whose (model, size, width) has no
    measured fused figure is planned as its members, alone, and a note says so."""
    from trainables.fusion import fuse_groups
    from trainables.models import MODELS

    table = table or shipped_table()
    if fuse > 1 and not table.fused:
        raise UserError(
            f"--fuse: {fuse} is not allowed yet; allowed: 1, until the throughput table has "
            "measured fused-group figures (benchmarks/gpu_call_issue25.sh on a GPU, then "
            "benchmarks/grid_cost.py --from-gpu-json gpu.json --write-table)"
        )
    out: list[SimTrial] = []
    notes: dict[str, None] = {}
    units = fuse_groups(list(configs), fuse) if fuse > 1 else [[cfg] for cfg in configs]
    for unit in units:
        model, px, width, _ = trial_work(unit[0])
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
        groups = table.fused.get((model, px, width)) if len(unit) > 1 else None
        if len(unit) > 1 and groups is None:
            notes[f"{model} {px} px: no measured fused figure, planned as plain trials"] = None
        if groups is not None:
            k = len(unit)
            work = sum(trial_work(cfg)[3] for cfg in unit) * (1 + figures.epoch_overhead)
            rate = partial(groups.per_group, k, table.mps_daemon)
            startup = figures.startup_s + groups.startup(k)
            out.append(SimTrial(model, cpus_per_trial, share, startup, work, rate, members=k))
            continue
        if k_max > max(figures.aggregate):
            notes[
                f"{model} {px} px at {k_max} trials per GPU: beyond the measured "
                f"{max(figures.aggregate)}, its aggregate held (not measured)"
            ] = None
        for cfg in unit:
            work = trial_work(cfg)[3] * (1 + figures.epoch_overhead)
            out.append(
                SimTrial(model, cpus_per_trial, share, figures.startup_s, work, figures.per_trial)
            )
    return out, tuple(notes)


def estimate_makespan(
    configs: Sequence[TrialConfig],
    cluster: Cluster,
    shares: float | Mapping[str, float] | None = None,
    cpus_per_trial: float = 1.0,
    table: ThroughputTable | None = None,
    fuse: int = 1,
) -> Makespan:
    """The grid's estimated wall time on ``cluster`` (GPU trials; ``fuse``: fused groups of
    up to that many trials, as ``--fuse``), notes included."""
    table = table or shipped_table()
    trials, notes = gpu_trials(configs, shares, cpus_per_trial, table, fuse)
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
