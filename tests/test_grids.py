"""Grids: the paper counts, honest conditional axes, pending rows, --set, YAML validation, CLI."""

from __future__ import annotations

import json

import pytest

import search_spaces
from search_spaces import GRIDS, expand, parse_overrides, resolve
from search_spaces.catalog import PAPER_DENSITIES
from trainables.config import TrialConfig
from trainables.errors import UserError
from trainables.methods import METHODS

EXAMPLE = "search_spaces/examples/density_sweep.yaml"


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("paper-table3-cmnist", 336),
        ("paper-table3-cifar10c", 336),
        ("paper-table3-bffhq", 84),
        ("paper-table2-cmnist", 372),
        ("paper-table2-cifar10c", 372),
        ("paper-table2-bffhq", 93),
        ("paper-fig3", 348),
        ("paper-all", 1215),
        ("baselines", 30),
        ("demo", 6),
    ],
)
def test_grid_counts_are_pinned(name: str, count: int) -> None:
    assert expand(GRIDS.get(name)).count == count


def test_table3_per_method_and_axes() -> None:
    trials = expand(GRIDS.get("paper-table3-cmnist")).trials
    assert {t.method for t in trials} == {"rigl", "rest"}
    assert sorted({t.density for t in trials}) == sorted(PAPER_DENSITIES)
    assert {t.seed for t in trials} == {41, 42, 43}
    assert {t.ratio for t in trials} == {0.5, 1.0, 2.0, 5.0}
    assert len({t.trial_hash for t in trials}) == 336


def test_dense_methods_have_no_density_axis_and_sparse_baselines_sweep_it() -> None:
    expansion = expand(GRIDS.get("paper-table2-cmnist"))
    assert expansion.per_method() == {
        "erm": 12,
        "erm_rw": 12,
        "disent": 12,
        "mrm": 168,
        "rest": 168,
    }
    assert {t.density for t in expansion.trials if t.method in ("erm", "erm_rw", "disent")} == {1.0}
    for sparse in ("mrm", "rest"):
        densities = {t.density for t in expansion.trials if t.method == sparse}
        assert sorted(densities) == sorted(PAPER_DENSITIES)
    assert expansion.pending == ()
    erm_rw = next(t for t in expansion.trials if t.method == "erm_rw" and t.ratio == 0.5)
    assert (erm_rw.reweight, erm_rw.upweight) == ("loss", 10.0)


def test_pending_rows_become_trials_once_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    import search_spaces.grid

    registered = {name: METHODS.get(name) for name in ("mrm", "disent")}
    with monkeypatch.context() as patch:
        for name in registered:
            patch.delitem(METHODS._items, name)
        patch.setattr(search_spaces.grid, "PAPER_BASELINES_PENDING", ("mrm", "disent"))
        before = expand(GRIDS.get("paper-table2-cmnist"))
        assert before.pending_per_method() == {"mrm": 168, "disent": 12}
        assert {p.values["density"] for p in before.pending if p.method == "mrm"} == set(
            PAPER_DENSITIES
        )
        assert "mrm" not in before.per_method() and before.count == 192
    after = expand(GRIDS.get("paper-table2-cmnist"))
    assert after.pending == () and after.per_method()["mrm"] == 168


def test_baselines_grid_every_debiasing_method_on_cmnist_1pct() -> None:
    from search_spaces.catalog import SPARSE_ABLATIONS

    expansion = expand(GRIDS.get("baselines"))
    expected = [m for m in METHODS.names() if m not in SPARSE_ABLATIONS]
    assert {"erm", "erm_rw", "lff", "disent", "jtt", "groupdro", "dfr", "mrm", "rigl", "rest"} <= (
        set(expected)
    )
    assert expansion.per_method() == {m: 3 for m in expected}
    assert expansion.pending == ()
    assert {(t.dataset, t.ratio, t.recipe) for t in expansion.trials} == {("cmnist", 1.0, "paper")}
    assert {t.seed for t in expansion.trials} == {41, 42, 43}
    for t in expansion.trials:
        assert t.density == (0.05 if METHODS.get(t.method).sparse else 1.0)


def test_union_counts_shared_trials_once() -> None:
    parts = [n for n in GRIDS if n.startswith("paper-") and n != "paper-all"]
    hashes = {t.trial_hash for n in parts for t in expand(GRIDS.get(n)).trials}
    everything = expand(GRIDS.get("paper-all"))
    assert len(hashes) == everything.count
    assert [t.trial_hash for t in everything.trials][:3] == [
        t.trial_hash for t in expand(GRIDS.get("paper-table2-cmnist")).trials[:3]
    ]


def test_set_switches_recipe_and_collapses_axes() -> None:
    grid = GRIDS.get("paper-table3-bffhq")
    code = expand(grid, parse_overrides(["recipe=rest-code", "epochs=2"]))
    assert {t.recipe for t in code.trials} == {"rest-code"}
    assert {t.optimizer for t in code.trials} == {"sgd"} and {t.epochs for t in code.trials} == {2}
    one_seed = expand(grid, parse_overrides(["seed=41"]))
    assert one_seed.count == 28
    one_density = expand(GRIDS.get("paper-table2-bffhq"), parse_overrides(["density=0.1"]))
    assert one_density.per_method() == {"erm": 3, "erm_rw": 3, "disent": 3, "mrm": 3, "rest": 3}
    with pytest.raises(UserError, match="allowed"):
        parse_overrides(["epoch=2"])
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["epochs"])


def test_example_yaml_expands() -> None:
    expansion = expand(resolve(EXAMPLE))
    assert expansion.grid == "density-sweep"
    assert expansion.per_method() == {"erm": 4, "erm_rw": 4, "rigl": 20, "rest": 20}
    assert {t.drop_fraction for t in expansion.trials if t.method == "rest"} == {0.5}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("methods: [erm]\nsweep: {}\n", r"sweep: unknown key; allowed: name, description"),
        ("methods: [erm]\naxes: {desnity: [0.1]}\n", r"axes\.desnity: unknown field; allowed:"),
        ("methods: [erm, lasso]\n", r"methods: 'lasso' is not allowed; allowed: erm"),
        ("methods: [erm]\nfixed: {epochs: many}\n", r"fixed\.epochs: epochs: cannot read"),
        ("methods: [erm]\naxes: {seed: 41}\n", r"axes\.seed: expected a non-empty list"),
        ("methods: [erm]\nrecipe: fast\n", r"recipe: 'fast' is not allowed; allowed: paper"),
        ("methods: [erm]\nfixed: {method: rest}\n", r"fixed\.method: not allowed here"),
        ("axes: {seed: [1]}\n", r"methods: required"),
        ("methods: [rest]\nfixed: {density: 2.0}\n", r"density: 2\.0 is not allowed"),
        ("methods: {rest: {axis: {}}}\n", r"methods\.rest\.axis: unknown key; allowed: axes"),
        ("methods: [erm\n", r"not valid YAML \(line"),
    ],
)
def test_yaml_errors_name_file_key_and_allowed(tmp_path, text: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=match) as info:
        resolve(str(path))
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message


def test_unknown_grid_lists_registered_names(tmp_path) -> None:
    with pytest.raises(UserError, match="allowed: paper-table2-cmnist"):
        resolve("paper-table9")
    with pytest.raises(UserError, match="grid file not found"):
        resolve(str(tmp_path / "missing.yaml"))


def test_grids_cli_list_and_show_json(capsys: pytest.CaptureFixture[str]) -> None:
    from rest_sweep.cli import main

    assert main(["grids"]) == 0
    out = capsys.readouterr().out
    assert "paper-table3-cmnist" in out and "336" in out
    assert main(["grids", "show", "demo", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"name", "count", "per_method", "trials", "pending", "cost"} <= set(doc)
    assert doc["count"] == 6 == len(doc["trials"])
    assert doc["per_method"] == {"erm": 1, "erm_rw": 1, "rigl": 2, "rest": 2}
    assert 0 < doc["cost"]["train_flops"] < doc["cost"]["dense_train_flops"]
    assert main(["grids", "show", "nope"]) == 2


def test_grids_show_table2_runs_mrm_at_every_density(capsys: pytest.CaptureFixture[str]) -> None:
    from rest_sweep.cli import main

    assert main(["grids", "show", "paper-table2-cmnist", "--json", "--no-cost"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["pending"] == [] and doc["count"] == 372 == len(doc["trials"])
    mrm = {t["density"] for t in doc["trials"] if t["method"] == "mrm"}
    assert mrm == set(PAPER_DENSITIES)
    assert {t["density"] for t in doc["trials"] if t["method"] == "disent"} == {1.0}
    assert main(["grids", "show", "baselines", "--json", "--no-cost"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["count"] == 30 and doc["pending"] == []


def test_grids_show_lists_pending_rows(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import search_spaces.grid
    from rest_sweep.cli import main

    monkeypatch.delitem(METHODS._items, "disent")
    monkeypatch.setattr(search_spaces.grid, "PAPER_BASELINES_PENDING", ("disent",))
    assert main(["grids", "show", "paper-table2-bffhq", "--no-cost"]) == 0
    assert "pending (method not registered yet" in capsys.readouterr().out


def test_resolve_is_the_only_entry_point() -> None:
    assert search_spaces.resolve("demo") is GRIDS.get("demo")


def _lottery(grid: str, overrides: dict | None = None) -> dict[int, TrialConfig]:
    trials = expand(GRIDS.get(grid), overrides or {}).trials
    return {t.seed: t for t in trials if t.retrain == "lottery"}


def test_sdd_branch_grids_read_the_lottery_run_of_their_parent_grid() -> None:
    """Each branch grid reads the lottery trial its parent grid plans, starts at that trial's
    rewind point (the same rewind_step) and keeps its values but for what only a branch sets."""
    redense = [0, 3, 6, 9, 12, 15, 19, 22, 26]  # README:85 --levels=0,3,6,9,12,15,19,22,26
    for name, parent_grid, branches, levels in (
        ("sdd-redense-cifar10", "sdd-retrain-cifar10", {"redense"}, redense),
        ("sdd-reinit-cifar10", "sdd-retrain-cifar10", {"reinit", "random_prune"}, range(1, 28)),
        ("sdd-redense-cifar100", "sdd-lottery-cifar100", {"redense"}, redense),
    ):
        parents = _lottery(parent_grid)
        trials = expand(GRIDS.get(name)).trials
        assert {t.branch for t in trials} == branches
        assert sorted({t.branch_level for t in trials}) == list(levels)
        for t in trials:
            parent = parents[t.seed]
            assert t.branch_of == parent.trial_hash
            assert t.rewind_step == parent.rewind_step == 1000  # README:81,85,90,94 1000it
            own = {"branch", "branch_of", "branch_level", "epochs", "redense_step", "seed"}
            differ = {k for k, v in parent.identity().items() if getattr(t, k) != v}
            assert differ <= own, differ
    cifar100 = expand(GRIDS.get("sdd-redense-cifar100")).trials
    # README:81,85: CIFAR-100 with 40 % random labels; 320ep, the regain at 160ep
    assert {(t.dataset, t.random_labels_fraction) for t in cifar100} == {("cifar100", 0.4)}
    for name in ("sdd-redense-cifar10", "sdd-redense-cifar100"):
        trials = expand(GRIDS.get(name)).trials
        assert {(t.epochs, t.redense_step, t.milestones) for t in trials} == {
            (320, "160ep", "80,120")
        }


def test_a_set_on_a_branch_grid_points_branch_of_at_the_parent_planned_with_it() -> None:
    """``branch_of`` follows the overrides the parent takes (the parent grid planned with the
    same ``--set`` has that hash), and ignores the keys only branches have."""

    def lottery(overrides: dict, grid: str = "sdd-retrain-cifar10") -> dict[int, str]:
        return {seed: t.trial_hash for seed, t in _lottery(grid, overrides).items()}

    default = lottery({})
    for overrides in ({"precision": "fp32"}, {"epochs": 3, "recipe": "rest-code"}):
        parents = lottery(overrides)
        assert parents != default
        trials = expand(GRIDS.get("sdd-reinit-cifar10"), overrides).trials
        assert trials and all(t.branch_of == parents[t.seed] for t in trials)
        parents = lottery(overrides, "sdd-lottery-cifar100")
        trials = expand(GRIDS.get("sdd-redense-cifar100"), overrides).trials
        assert trials and all(t.branch_of == parents[t.seed] for t in trials)
    trials = expand(GRIDS.get("sdd-redense-cifar10"), {"redense_step": "100ep"}).trials
    assert {t.redense_step for t in trials} == {"100ep"}
    assert all(t.branch_of == default[t.seed] for t in trials)  # a branch-only key


@pytest.mark.parametrize("recipe", ["paper", "rest-code"])
def test_every_disent_trial_of_the_paper_grids_swaps(recipe: str) -> None:
    """DisEnt's feature swap starts after disent_swap_step (DisEnt's curr_step, 10,000): every
    DisEnt trial the paper grids plan reaches it (BFFHQ at DisEnt's batch 64, learner.py); a
    cell that would not is a one-line planning error unless disent_allow_no_swap is set."""
    from trainables.methods.disent import planned_steps

    trials = expand(resolve("paper-all"), {"recipe": recipe}).trials
    disent = [t for t in trials if t.method == "disent"]
    assert len(disent) == 27  # 4 + 4 + 1 ratios x 3 seeds
    for t in disent:
        assert planned_steps(t) - 1 > t.disent_swap_step, t.short_name()
    assert {t.batch_size for t in disent if t.dataset == "bffhq"} == {64}
    assert {t.batch_size for t in trials if t.method != "disent"} == {256}

    grid = GRIDS.get("paper-table2-bffhq")
    with pytest.raises(UserError) as info:
        expand(grid, {"recipe": recipe, **parse_overrides(["batch_size=256"])})
    message = str(info.value)
    assert "\n" not in message
    for word in ("disent_swap_step", "epochs", "batch_size", "steps", "disent_allow_no_swap"):
        assert word in message, (word, message)
    allowed = expand(
        grid, {"recipe": recipe, **parse_overrides(["batch_size=256", "disent_allow_no_swap=1"])}
    )
    assert allowed.per_method()["disent"] == 3
