"""Which data a number comes from: the trial records its bundle's source.json, the analysis
turns it into trials.parquet columns, names the data in tables, figures and the report, and
refuses a difference to the paper for data that are not the paper's (docs/analysis.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from analysis import synthetic
from analysis.api import Options, build, report
from analysis.cells import data_names
from analysis.figures import density_curves, flops_scatter
from trainables.data.provenance import AUTHORS_IMAGES, bundle_source, data_source
from trainables.data.verify import read_source_record

# What `rest-sweep data make cmnist` records for Fashion-MNIST images (trimmed).
STAND_IN = {
    "generator": "cmnist",
    "images": "Fashion-MNIST",
    "stand_in": True,
    "known": True,
    "title": "Colored Fashion-MNIST",
    "comparable": False,
    "palette": "disent",
    "seed": 0,
}
# The same generator on real MNIST: comparable with the paper.
REAL_MNIST = {
    **STAND_IN,
    "images": "MNIST",
    "stand_in": False,
    "title": "Colored MNIST",
    "comparable": True,
}
REFUSED = "not comparable (Colored Fashion-MNIST stand-in)"


def _configs(**kw) -> list[dict]:
    return synthetic.grid_configs(
        **{"ratios": (1.0,), "methods": ("erm", "rest"), "densities": (0.05,), **kw}
    )


def _paper_rows(analysis) -> dict[tuple[str, str, str], list]:
    """Paper-comparison rows by (table, method, recipe)."""
    return {(r[0], r[3], r[4]): r for r in analysis.tables["paper_comparison"].rows}


# ------------------------------------------------------------------ the record itself
def test_data_source_normalises_a_record_and_the_authors_bundle(tmp_path: Path) -> None:
    authors = data_source("cmnist", None)
    assert authors == {
        "title": "Colored MNIST",
        "images": AUTHORS_IMAGES,
        "stand_in": False,
        "comparable": True,
    }
    assert data_source("cmnist", STAND_IN) == STAND_IN  # complete records are kept as they are
    # a record that does not say it is comparable is not; the title falls back to the registry
    partial = data_source("cifar10c", {"generator": "cifar10c", "images": "CIFAR-10"})
    assert partial["comparable"] is False and partial["stand_in"] is True
    assert partial["title"] == "Corrupted CIFAR-10" and partial["generator"] == "cifar10c"
    # a data root without source.json is the authors' download; with one, its record
    (tmp_path / "cmnist").mkdir()
    assert bundle_source(tmp_path, "cmnist") == authors
    (tmp_path / "cmnist" / "source.json").write_text(json.dumps(STAND_IN))
    assert bundle_source(tmp_path, "cmnist") == STAND_IN


def test_trial_summary_records_its_bundle_once(
    tiny_cmnist_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    import trainables.data.provenance as provenance
    from tests.fixtures.data import cpu_config
    from trainables.train.trial import Trial

    calls = []

    def counting(folder):
        calls.append(Path(folder))
        return read_source_record(folder)

    monkeypatch.setattr(provenance, "read_source_record", counting)
    trial = Trial(cpu_config(tiny_cmnist_root, epochs=2, selection="last"))
    rows = [trial.run_epoch(1), trial.run_epoch(2)]
    summary = trial.summary(rows, attempts=1)
    assert calls == [tiny_cmnist_root / "cmnist"]  # read once, at set-up
    # whatever images the fixture was made from: the bundle's own source.json decides
    expected = read_source_record(tiny_cmnist_root / "cmnist")
    recorded = summary["data_source"]
    assert recorded == data_source("cmnist", expected)
    if expected is not None:
        assert recorded["title"] == expected["title"]
        assert recorded["comparable"] is expected["comparable"]
        assert recorded["images"] == expected["images"]
    assert json.loads(json.dumps(recorded)) == recorded  # JSON-safe as summary.json needs


# ------------------------------------------------------------------ trials.parquet
def test_parquet_columns_from_summary_data_root_or_nothing(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "cmnist").mkdir(parents=True)
    (root / "cmnist" / "source.json").write_text(json.dumps(STAND_IN))
    recorded = synthetic.make_config(method="erm", seed=41, epochs=2)
    older = synthetic.make_config(method="erm", seed=42, epochs=2, data_root=str(root))
    pending = synthetic.make_config(method="erm", seed=43, epochs=2, data_root=str(root))
    unknown = synthetic.make_config(method="erm", seed=44, epochs=2)
    store = synthetic.write_experiment(
        str(tmp_path), "exp", [recorded], source=REAL_MNIST
    )  # the ledger; the other trials are written below
    synthetic.write_trial(store, older, source=None)  # finished before trials recorded data
    synthetic.write_trial(store, unknown, source=None)
    ledger = store.read_ledger()
    ledger["trials"].update({synthetic.config_hash(c): c for c in (older, pending, unknown)})
    store.write_ledger(ledger)
    table = build(str(tmp_path), "exp").trials
    trials = table.to_pandas()
    by_seed = trials.set_index("cfg_seed")
    assert by_seed.loc[41, ["data_title", "data_images", "data_record"]].tolist() == [
        "Colored MNIST",
        "MNIST",
        "summary",
    ]
    assert bool(by_seed.loc[41, "data_comparable"]) is True
    for seed in (42, 43):  # no record of their own: the data root's source.json, read now
        row = by_seed.loc[seed]
        assert row["data_record"] == "data root" and row["data_title"] == "Colored Fashion-MNIST"
        assert not row["data_comparable"]
    row = by_seed.loc[44]  # no record and no data root: nulls, never a guess
    assert row["data_record"] == "none"
    assert pd.isna(row["data_title"]) and pd.isna(row["data_images"])
    assert pd.isna(row["data_comparable"])
    schema = table.schema
    assert str(schema.field("data_comparable").type) == "bool"
    assert schema.metadata[b"rest_sweep.schema_version"] == b"3"


# ------------------------------------------------------------------ names and the paper
def test_stand_in_is_named_and_refuses_the_paper_difference(tmp_path: Path) -> None:
    synthetic.write_experiment(str(tmp_path), "exp", _configs(), source=STAND_IN)
    analysis = build(str(tmp_path), "exp")
    rows = _paper_rows(analysis)
    erm = rows[("2", "ERM [none]", "paper")]
    assert erm[1] == "Colored Fashion-MNIST" and erm[5] == "69.6"
    assert erm[6].shown  # our number is still shown beside the paper's ...
    assert erm[8] == REFUSED  # ... but no difference
    assert all(r[8] == REFUSED for r in rows.values())
    for name in ("table2", "table3", "table1", "methods"):
        assert {r[0] for r in analysis.tables[name].rows} == {"Colored Fashion-MNIST"}, name
    assert set(analysis.cells["data"]) == {"Colored Fashion-MNIST"}
    frame = analysis.frame
    assert density_curves(frame, "cmnist", "paper").layout.title.text.startswith(
        "Colored Fashion-MNIST, paper recipe"
    )
    choice = Options().choice
    assert flops_scatter(frame, "cmnist", choice).layout.title.text.startswith(
        "Colored Fashion-MNIST:"
    )
    html = Path(report(str(tmp_path), "exp", str(tmp_path / "out"))).read_text()
    assert (
        "Data: <code>cmnist</code> = Colored Fashion-MNIST (not comparable with the paper: "
        "Colored Fashion-MNIST stand-in)" in html
    )
    assert REFUSED in html


def test_comparable_data_keep_the_difference(tmp_path: Path) -> None:
    synthetic.write_experiment(str(tmp_path), "exp", _configs(), source=REAL_MNIST)
    analysis = build(str(tmp_path), "exp")
    erm = _paper_rows(analysis)[("2", "ERM [none]", "paper")]
    assert erm[1] == "Colored MNIST"
    assert erm[8] == f"{erm[6].mean - 69.6:+.1f}"
    assert analysis.tables["table2"].rows[0][0] == "Colored MNIST"


def test_authors_bundle_is_comparable_by_default(tmp_path: Path) -> None:
    synthetic.write_experiment(str(tmp_path), "exp", _configs())  # no source.json: authors'
    analysis = build(str(tmp_path), "exp")
    assert set(analysis.frame["data_images"]) == {AUTHORS_IMAGES}
    erm = _paper_rows(analysis)[("2", "ERM [none]", "paper")]
    assert erm[1] == "Colored MNIST" and erm[8].startswith(("+", "-"))


def test_mixed_or_unrecorded_data_are_said_and_not_compared(tmp_path: Path) -> None:
    configs = _configs()
    store = synthetic.write_experiment(str(tmp_path / "mixed"), "exp", configs, source=REAL_MNIST)
    synthetic.write_trial(store, configs[0], source=STAND_IN)  # one seed from other data
    analysis = build(str(tmp_path / "mixed"), "exp")
    name = "CMNIST (mixed data: Colored Fashion-MNIST, Colored MNIST)"
    assert analysis.tables["table2"].rows[0][0] == name
    assert {r[8] for r in analysis.tables["paper_comparison"].rows} == {
        "not comparable (mixed data)"
    }

    synthetic.write_experiment(str(tmp_path / "old"), "exp", configs, source=None)
    analysis = build(str(tmp_path / "old"), "exp")
    assert analysis.tables["table2"].rows[0][0] == "CMNIST (data source not recorded)"
    assert {r[8] for r in analysis.tables["paper_comparison"].rows} == {
        "not comparable (data source not recorded)"
    }


def test_names_come_from_finished_trials_and_frames_without_columns_keep_the_registry() -> None:
    frame = pd.DataFrame(
        {
            "dataset": ["cmnist", "cmnist", "cifar10c"],
            "status": ["finished", "pending", "pending"],
            "data_title": ["Colored Fashion-MNIST", None, None],
            "data_comparable": [False, None, None],
            "data_record": ["summary", "none", "none"],
        }
    )
    names = data_names(frame)
    assert names["cmnist"].name == "Colored Fashion-MNIST"  # the pending trial has no numbers
    assert names["cifar10c"].name == "CIFAR-10-C (data source not recorded)"
    legacy = data_names(frame[["dataset", "status"]])
    assert legacy["cmnist"].name == "CMNIST" and legacy["cmnist"].comparable
