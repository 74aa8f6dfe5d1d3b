"""The makespan simulation (search_spaces/makespan.py): exact event logic on small cases, Ray's
placement rules, the shipped throughput table (one fact with benchmarks/gpu_shares.csv, FLOP-
scaled estimates marked), its gpu.json update path, and ``grids show --cluster``."""

from __future__ import annotations

import csv
import json

import pytest

from search_spaces import GRIDS, expand
from search_spaces.makespan import (
    Cluster,
    SimTrial,
    Throughput,
    ThroughputTable,
    dense_forward_flops,
    estimate_makespan,
    format_duration,
    shipped_table,
    simulate,
    trial_work,
)
from tests.reliability.helpers import REPO, assert_one_line_error, run_main
from trainables.errors import UserError


def cpu(seconds: float, startup: float = 0.0, cpus: float = 1) -> SimTrial:
    return SimTrial("t", cpus, 0.0, startup, seconds, lambda k: 1.0)


def gpu(work: float, share: float, aggregate: dict[int, float], startup: float = 0.0) -> SimTrial:
    figures = Throughput("m", 32, 64, aggregate, startup, 0.0, "measured")
    return SimTrial("m", 1, share, startup, work, figures.per_trial)


# ---------------------------------------------------------------------- the engine


def test_five_trials_on_two_slots_finish_exactly_when_fifo_says() -> None:
    """3,1,4,1,5 s on 2 CPU slots: t2 takes the slot t1 frees at 1, t3 t0's at 3, t4 t3's at 4."""
    result = simulate([cpu(s) for s in (3, 1, 4, 1, 5)], Cluster(1, 0, 2))
    assert result.finish == (3, 1, 5, 4, 9)
    assert result.seconds == 9 and result.gpu_utilisation is None


def test_start_up_is_paid_per_trial_and_cpus_bound_concurrency() -> None:
    result = simulate([cpu(2, startup=1, cpus=2)] * 3, Cluster(1, 0, 5))  # 2 fit, then 1
    assert result.finish == (3, 3, 6)


def test_trials_sharing_a_gpu_split_its_aggregate_and_speed_up_when_one_ends() -> None:
    # K=2: 16/2 = 8 samples/s each; after the short one ends at 5 s, the other runs at 10.
    result = simulate(
        [gpu(40, 0.5, {1: 10, 2: 16}), gpu(80, 0.5, {1: 10, 2: 16})], Cluster(1, 1, 8)
    )
    assert result.finish == pytest.approx((5.0, 9.0))
    assert result.gpu_utilisation == pytest.approx((0.5 * 5 + 0.5 * 9) / 9)


def test_a_trial_in_start_up_does_not_slow_its_neighbours() -> None:
    # A alone at 10/s for 5 s (B starting up), then both at 8/s: B needs 1.25 s, A 40 more at 10.
    a, b = gpu(100, 0.5, {1: 10, 2: 16}), gpu(10, 0.5, {1: 10, 2: 16}, startup=5)
    assert simulate([a, b], Cluster(1, 1, 8)).finish == pytest.approx((10.25, 6.25))


def test_placement_is_first_fit_in_grid_order_and_whole_gpus_wait_for_empty_ones() -> None:
    # Node 0's GPU takes two 0.5 trials; the whole-GPU trial goes to node 1; the third 0.5 trial
    # waits for a free half (node 1 is full), so it starts when the first finishes.
    trials = [gpu(10, 0.5, {1: 1, 2: 2}), gpu(10, 0.5, {1: 1, 2: 2}), gpu(5, 1, {1: 1})]
    trials.append(gpu(10, 0.5, {1: 1, 2: 2}))
    result = simulate(trials, Cluster(2, 1, 8))
    assert result.finish == pytest.approx((10, 10, 5, 15))


def test_a_trial_no_node_can_hold_is_one_line_naming_it() -> None:
    with pytest.raises(
        UserError, match=r"^t: 4 CPUs and 0 GPUs per trial do not fit a node of 1x0"
    ):
        simulate([cpu(1, cpus=4)], Cluster(1, 0, 2))


def test_per_trial_rate_interpolates_between_and_holds_beyond_measured_k() -> None:
    figures = Throughput("m", 32, 64, {1: 10.0, 2: 16.0, 4: 24.0}, 0.0, 0.0, "measured")
    assert figures.per_trial(2) == 8.0
    assert figures.per_trial(3) == pytest.approx(20.0 / 3)
    assert figures.per_trial(8) == 3.0  # aggregate of K=4 held


@pytest.mark.parametrize("given", ["4", "4x", "0x8", "4*8", "axb", "4x8x2"])
def test_a_bad_cluster_names_the_form(given: str) -> None:
    with pytest.raises(UserError, match=r"^--cluster: .* allowed: NODESxGPUS") as caught:
        Cluster.parse(given)
    assert "\n" not in str(caught.value)
    assert Cluster.parse(" 4X8 ") == Cluster(4, 8, 64)


def test_durations_read_as_a_planner_would() -> None:
    assert [format_duration(s) for s in (42, 750, 3900)] == ["42 s", "12 min 30 s", "1 h 05 min"]


# ---------------------------------------------------------------------- the shipped table


def test_the_shipped_figures_are_the_measured_gpu_shares_figures() -> None:
    """One fact in two files: benchmarks/gpu_shares.csv's aggregates equal the table's."""
    with (REPO / "benchmarks" / "gpu_shares.csv").open(newline="") as handle:
        shares = {row["model"]: row for row in csv.DictReader(handle)}
    table = shipped_table()
    measured = {}  # each model's smallest measured input size: the one the shares rest on
    for key, t in sorted(table.rows.items(), key=lambda e: -e[0][1]):
        measured[key[0]] = t
    for model, row in shares.items():
        if row["basis"] != "measured":
            assert model not in measured, model
            continue
        columns = {1: "samples_s_1_process", 2: "samples_s_2_processes", 4: "samples_s_4_processes"}
        aggregate = {k: v for k, v in measured[model].aggregate.items() if k in columns}
        assert aggregate == {k: float(row[c]) for k, c in columns.items()}
        assert measured[model].gpu == row["gpu"]


def test_unmeasured_sizes_are_flop_scaled_and_say_estimated() -> None:
    table = shipped_table()
    # 160 px has no row: scaled from the nearest measured size (224 px)
    base, mid = table.lookup("resnet18", 224, 64), table.lookup("resnet18", 160, 64)
    assert base.basis == "measured" and mid.basis.startswith("estimated (FLOP-scaled")
    ratio = dense_forward_flops("resnet18", 160, 64) / dense_forward_flops("resnet18", 224, 64)
    assert mid.aggregate[1] == pytest.approx(base.aggregate[1] / ratio)
    assert 0.4 < ratio < 0.6
    never = table.lookup("vgg16", 32, 64)  # no row at all: scaled from simple_cnn
    assert never.basis.startswith("estimated (FLOP-scaled from simple_cnn")


def test_gpu_json_replaces_a_models_figures_and_the_table_writes_back(tmp_path) -> None:
    doc = {
        "gpu": "H200",
        "models": {
            "simple_cnn": {
                "reference": 30000.0,
                "aggregate": {"k": 4, "per_k": {"1": 5.0, "8": 9.0}},
                "startup_s": 2.0,
            }
        },
    }
    table = shipped_table().with_gpu_json(doc)
    new = table.rows[("simple_cnn", 28, 64)]
    assert new.aggregate == {1: 5.0, 8: 9.0} and new.startup_s == 2.0 and new.gpu == "H200"
    assert table.reference[("simple_cnn", 28, 64)] == 30000.0
    assert table.rows[("resnet18", 32, 64)] == shipped_table().rows[("resnet18", 32, 64)]
    copy = tmp_path / "throughput.csv"
    copy.write_text((REPO / "search_spaces" / "throughput.csv").read_text())
    table.write(copy, source="gpu.json", date="2026-12-01")
    again = ThroughputTable.load(copy)
    assert (again.rows, again.reference) == (table.rows, table.reference)
    assert again.estimated_notes == table.estimated_notes


# ---------------------------------------------------------------------- a grid, the CLI


def test_a_uniform_grid_runs_in_exact_waves() -> None:
    """336 simple_cnn trials at 4 per GPU on 4x8 = 128 at a time, all K=4: three waves."""
    trials = expand(GRIDS.get("paper-table3-cmnist")).trials
    figures = shipped_table().lookup("simple_cnn", 28, 64)
    _, _, _, samples = trial_work(trials[0])
    wave = figures.startup_s + samples * (1 + figures.epoch_overhead) / figures.per_trial(4)
    result = estimate_makespan(trials, Cluster.parse("4x8"))
    assert len(trials) == 336 and result.seconds == pytest.approx(3 * wave)
    assert result.trials == {"simple_cnn": 336}


def test_grids_show_cluster_prints_the_makespan_and_json_has_it() -> None:
    code, out, _ = run_main("grids", "show", "paper-all", "--cluster", "4x8", "--limit", "0")
    assert code == 0
    (line,) = [x for x in out.splitlines() if x.startswith("estimated makespan on 4x8 GPUs: ")]
    # 224 px is measured alone (no K processes): K=4 keeps that aggregate, and says so
    assert "resnet18 224 px at 4 trials per GPU: beyond the measured 1" in line
    hours = float(line.split("(")[1].split(" h;")[0])
    code, out, _ = run_main(
        "grids", "show", "paper-all", "--cluster", "4x8", "--limit", "0", "--no-cost", "--mps"
    )
    assert code == 0
    (mps,) = [x for x in out.splitlines() if x.startswith("estimated makespan on 4x8 GPUs with")]
    assert "with CUDA MPS: " in mps and float(mps.split("(")[1].split(" h;")[0]) < hours
    code, _, err = run_main("grids", "show", "paper-all", "--mps")
    assert code == 2 and "--mps: only with --cluster" in err
    code, out, _ = run_main(
        "grids",
        "show",
        "paper-all",
        "--cluster",
        "2x4",
        "--gpus-per-trial",
        "resnet18=0.5",
        "--json",
    )
    doc = json.loads(out)["makespan"]
    assert doc["cluster"] == {"nodes": 2, "gpus_per_node": 4, "cpus_per_node": 32}
    assert doc["gpus_per_trial"] == {"resnet18": 0.5} and doc["seconds"] > 0


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--cluster", "4by8"], "--cluster: '4by8' is not allowed; allowed: NODESxGPUS"),
        (["--cluster", "1x1", "--gpus-per-trial", "foo=1"], "unknown model 'foo'"),
        (["--gpus-per-trial", "0.5"], "only with --cluster NODESxGPUS"),
    ],
)
def test_grids_show_bad_cluster_options_are_one_line(argv: list[str], needle: str) -> None:
    code, _, err = run_main("grids", "show", "demo", *argv)
    assert_one_line_error(code, err, needle)


def test_gpu_json_in_the_scripts_shape_measures_the_224_px_row() -> None:
    doc = {
        "gpu": "H200",
        "models": {
            "resnet18_224": {
                "model": "resnet18",
                "input_size": 224,
                "aggregate": {
                    "per_k": {"1": {"samples_per_s": 3000.0}, "2": {"samples_per_s": 3300.0}}
                },
                "startup": {"on": {"startup_s": 14.0}},
            }
        },
    }
    table = shipped_table().with_gpu_json(doc)
    rows = [r for k, r in table.rows.items() if k[:2] == ("resnet18", 224)]
    assert [(r.aggregate, r.startup_s, r.basis) for r in rows] == [
        ({1: 3000.0, 2: 3300.0}, 14.0, "measured")
    ]
    assert rows[0].per_trial(1) == 3000.0 and rows[0].per_trial(2) == 1650.0
    # The 32-px row is another size: untouched.
    assert table.rows[("resnet18", 32, 64)] == shipped_table().rows[("resnet18", 32, 64)]


def test_fewer_trials_than_any_measured_k_are_no_faster_than_that_k() -> None:
    row = shipped_table().rows[("simple_cnn", 28, 64)]
    only_high = type(row)(row.model, 28, 64, {2: 200.0, 4: 300.0}, 1.0, 0.0, "measured")
    assert only_high.per_trial(1) == 100.0  # not the aggregate of 2 trials


def test_gpu_json_of_the_gpu_script_gives_plain_and_mps_rows(tmp_path) -> None:
    """The GPU script's shape: a model measured alone takes K=1 from its aggregate precision's
    variant, start-up is the ``cut`` variant, an invalid reference is not taken, MPS
    aggregates become ``single_mps`` rows that survive a write and a load."""
    doc = {
        "gpu": "H200",
        "aggregate_precision": {"simple_cnn": "tf32", "resnet18": "bf16"},
        "models": {
            "simple_cnn": {
                "model": "simple_cnn",
                "input_size": 28,
                "reference": 1.0,
                "reference_valid": False,
                "aggregate": {
                    "per_k": {"1": {"samples_per_s": 10.0}, "4": {"samples_per_s": 12.0}}
                },
                "aggregate_mps": {"per_k": {"4": {"samples_per_s": 20.0}}},
                "startup": {"on": {"startup_s": 9.0}, "cut": {"startup_s": 7.0}},
            },
            "resnet18_224": {
                "model": "resnet18",
                "input_size": 224,
                "variants": {"tf32": {"samples_per_s": 3.0}, "bf16": {"samples_per_s": 5.0}},
                "startup": {"on": {"startup_s": 4.0}},
            },
        },
    }
    base = shipped_table()
    table = base.with_gpu_json(doc)
    small = table.rows[("simple_cnn", 28, 64)]
    assert small.aggregate == {1: 10.0, 4: 12.0} and small.startup_s == 7.0
    assert table.mps[("simple_cnn", 28, 64)].aggregate == {1: 10.0, 4: 20.0}
    assert table.reference[("simple_cnn", 28, 64)] == base.reference[("simple_cnn", 28, 64)]
    big = table.rows[("resnet18", 224, 64)]
    assert big.aggregate == {1: 5.0} and big.startup_s == 4.0 and big.basis == "measured"
    assert table.with_mps().lookup("simple_cnn", 28, 64).aggregate[4] == 20.0
    path = tmp_path / "throughput.csv"
    path.write_text((REPO / "search_spaces" / "throughput.csv").read_text())
    table.write(path, source="gpu.json", date="2026-11-30")
    again = ThroughputTable.load(path)
    assert again.rows == table.rows and again.mps == table.mps
    assert again.reference == table.reference


def test_a_new_reference_is_written_on_its_own_size_row(tmp_path) -> None:
    """A valid reference at a size the table had none for (224 px) gets its own row, and the
    32-px reference row keeps its value: rows are matched on (model, px, width), not model."""
    doc = {
        "gpu": "H200",
        "models": {
            "resnet18_224": {
                "model": "resnet18",
                "input_size": 224,
                "reference": 600.0,
                "aggregate": {"per_k": {"1": 12000.0}},
            }
        },
    }
    base = shipped_table()
    table = base.with_gpu_json(doc)
    path = tmp_path / "throughput.csv"
    path.write_text((REPO / "search_spaces" / "throughput.csv").read_text())
    table.write(path, source="gpu.json", date="2026-11-30")
    again = ThroughputTable.load(path)
    assert again.reference[("resnet18", 224, 64)] == 600.0
    assert again.reference[("resnet18", 32, 64)] == base.reference[("resnet18", 32, 64)]
    rows = list(csv.DictReader(path.open()))
    new = [r for r in rows if r["loop"] == "reference" and r["input_px"] == "224"]
    assert len(new) == 1 and new[0]["gpu"] == "H200" and new[0]["date"] == "2026-11-30"


@pytest.mark.parametrize(
    ("grid", "samples"), [("sdd-retrain-cifar10", 50_000), ("sdd-retrain-mnist", 60_000)]
)
def test_train_on_valid_trials_are_planned_on_train_plus_valid(grid: str, samples: int) -> None:
    """The SDD grids train on train + valid (train_on_valid): cost, makespan and step counts
    plan the union (CIFAR-10 45,000 + 5,000, MNIST 55,000 + 5,000), not the train split."""
    from search_spaces.cost import estimate
    from trainables.datasets import planned_train_samples
    from trainables.methods.disent import planned_steps

    cfg = expand(GRIDS.get(grid)).trials[0]
    assert cfg.train_on_valid and planned_train_samples(cfg) == samples
    train_only = cfg.replace(train_on_valid=False)
    assert planned_train_samples(train_only) == samples - 5_000
    ratio = samples / (samples - 5_000)
    assert trial_work(cfg)[3] == pytest.approx(trial_work(train_only)[3] * ratio)
    assert estimate([cfg]).train_flops == pytest.approx(estimate([train_only]).train_flops * ratio)
    assert planned_steps(cfg) == cfg.epochs * -(-samples // cfg.batch_size)


# ---------------------------------------------------------------------- fused groups (issue 25)

FUSED_DOC = {
    "gpu": "H200",
    "models": {
        "simple_cnn": {
            "model": "simple_cnn",
            "input_size": 28,
            "fused": {
                "per_k": {
                    # one steady epoch: 1,000 samples / 10 epochs at 100/s = 1 s
                    "1": {
                        "samples_per_s": 100.0,
                        "samples": 1000,
                        "epochs": 10,
                        "build_s": 2.0,
                        "warm_s": 1.5,
                    },
                    "4": {
                        "samples_per_s": 300.0,
                        "samples": 3000,
                        "epochs": 10,
                        "build_s": 3.0,
                        "warm_s": 4.0,
                    },
                }
            },
            "fused_mps": {
                "per_run": {
                    "2x4": {"processes": 2, "fuse": 4, "samples_per_s": 500.0, "mps": True},
                    "4x2": {"processes": 4, "fuse": 2, "samples_per_s": 900.0, "mps": False},
                }
            },
        }
    },
}


def fusable_trials(n: int) -> list:
    """The first ``n`` trials of paper-table3-cmnist that share one fuse key (REST and RigL
    at several densities and seeds: one shape, 100 epochs)."""
    from trainables.fusion import fuse_key

    trials = [t for t in expand(GRIDS.get("paper-table3-cmnist")).trials if fuse_key(t)]
    key = fuse_key(trials[0])
    same = [t for t in trials if fuse_key(t) == key][:n]
    assert len(same) == n
    return same


def test_fused_figures_come_from_the_gpu_scripts_json_and_survive_a_write(tmp_path) -> None:
    table = shipped_table().with_gpu_json(FUSED_DOC)
    groups = table.fused[("simple_cnn", 28, 64)]
    assert groups.single == {1: 100.0, 4: 300.0}
    # build + warm-up epoch - one steady epoch (2 + 1.5 - 1 and 3 + 4 - 1), less K = 1's: a
    # plain trial's start-up already holds one member's build and capture
    assert groups.extra_startup_s == {1: 0.0, 4: 3.5} and groups.gpu == "H200"
    assert groups.mps == {(2, 4): 500.0}  # the run not under MPS (mps: false) is not taken
    assert shipped_table().fused == {}  # nothing measured yet in the shipped table
    path = tmp_path / "throughput.csv"
    path.write_text((REPO / "search_spaces" / "throughput.csv").read_text())
    table.write(path, source="gpu.json", date="2026-12-08")
    again = ThroughputTable.load(path)
    assert again.fused == table.fused and again.rows == table.rows
    loops = [
        (r["loop"], r["processes_per_gpu"], r["trials_per_process"])
        for r in csv.DictReader(path.open())
        if r["loop"].startswith("fused")
    ]
    assert loops == [("fused", "1", "1"), ("fused", "1", "4"), ("fused_mps", "2", "4")]


def test_fused_aggregates_interpolate_in_k_and_need_mps_to_share_a_gpu() -> None:
    groups = shipped_table().with_gpu_json(FUSED_DOC).fused[("simple_cnn", 28, 64)]
    assert groups.aggregate(2, 1, mps=False) == pytest.approx(100 + 200 / 3)
    assert groups.aggregate(8, 1, mps=False) == 300.0  # beyond K = 4: held
    assert groups.aggregate(4, 2, mps=False) == 300.0  # time-sliced: no gain assumed
    assert groups.aggregate(4, 2, mps=True) == 500.0
    assert groups.aggregate(4, 3, mps=True) == 500.0  # the run with most processes <= 3
    assert groups.aggregate(2, 2, mps=True) == pytest.approx(100 + 200 / 3)  # not at K = 2
    assert groups.per_group(4, True, 2) == 250.0
    assert (groups.startup(1), groups.startup(3), groups.startup(16)) == (0.0, 0.0, 3.5)


def test_a_fused_group_is_one_trial_with_its_members_work_at_the_fused_rate() -> None:
    """8 same-shape trials, one whole GPU each (share 1) on 1x1: --fuse 4 runs two groups one
    after the other, each a plain start-up plus the group's extra, then 4 trials' work at the
    fused aggregate; --fuse 1 runs the 8 trials alone at the plain K = 1 rate."""
    trials = fusable_trials(8)
    table = shipped_table().with_gpu_json(FUSED_DOC)
    figures = table.lookup("simple_cnn", 28, 64)
    work = trial_work(trials[0])[3] * (1 + figures.epoch_overhead)
    fused = estimate_makespan(trials, Cluster.parse("1x1"), 1.0, table=table, fuse=4)
    group = figures.startup_s + 3.5 + 4 * work / 300.0
    assert fused.seconds == pytest.approx(2 * group)
    assert fused.trials == {"simple_cnn": 8} and len(fused.finish) == 2
    alone = estimate_makespan(trials, Cluster.parse("1x1"), 1.0, table=table)
    assert alone.seconds == pytest.approx(8 * (figures.startup_s + work / figures.per_trial(1)))
    # two groups sharing a GPU (share 0.5) under MPS: 500 samples/s between them
    shared = estimate_makespan(trials, Cluster.parse("1x1"), 0.5, table=table.with_mps(), fuse=4)
    assert shared.seconds == pytest.approx(figures.startup_s + 3.5 + 8 * work / 500.0)


def test_trials_that_cannot_fuse_and_sizes_without_figures_stay_alone() -> None:
    from search_spaces.makespan import gpu_trials

    disent = [t for t in expand(GRIDS.get("paper-table2-cmnist")).trials if t.method == "disent"]
    trials = [disent[0], *fusable_trials(3)]
    table = shipped_table().with_gpu_json(FUSED_DOC)
    sims, _ = gpu_trials(trials, 1.0, table=table, fuse=4)
    assert [s.members for s in sims] == [1, 3]
    no_figures = ThroughputTable(
        table.rows, fused={("resnet18", 32, 64): table.fused[("simple_cnn", 28, 64)]}
    )
    sims, notes = gpu_trials(trials, 1.0, table=no_figures, fuse=4)
    assert [s.members for s in sims] == [1, 1, 1, 1]
    assert "simple_cnn 28 px: no measured fused figure, planned as plain trials" in notes


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--cluster", "1x1", "--fuse", "4"], "--fuse: 4 is not allowed yet; allowed: 1, until"),
        (["--fuse", "2"], "--fuse: only with --cluster NODESxGPUS"),
        (["--cluster", "1x1", "--fuse", "0"], "--fuse: 0 is not allowed; allowed: an integer"),
    ],
)
def test_grids_show_fuse_is_checked_in_one_line(argv: list[str], needle: str) -> None:
    code, _, err = run_main("grids", "show", "demo", *argv)
    assert_one_line_error(code, err, needle)


def test_grids_show_plans_fused_groups_from_the_tables_fused_figures(monkeypatch) -> None:
    """With fused figures in the table, ``--fuse 4`` changes the plan and says so; the JSON
    records the group size and counts every member as a trial."""
    import search_spaces.makespan as makespan

    table = shipped_table().with_gpu_json(FUSED_DOC)
    monkeypatch.setattr(makespan, "shipped_table", lambda: table)
    argv = ["grids", "show", "paper-table3-cmnist", "--cluster", "1x4", "--no-cost", "--json"]
    code, out, _ = run_main(*argv, "--fuse", "4")
    doc = json.loads(out)["makespan"]
    assert code == 0 and doc["fuse"] == 4 and doc["trials_per_model"] == {"simple_cnn": 336}
    code, out, _ = run_main(*argv)
    plain = json.loads(out)["makespan"]
    assert plain["fuse"] == 1 and plain["seconds"] != doc["seconds"]
    code, out, _ = run_main(*argv[:-1], "--fuse", "4")
    assert "estimated makespan on 1x4 GPUs in fused groups of up to 4: " in out
