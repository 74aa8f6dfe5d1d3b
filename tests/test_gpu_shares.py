"""GPU share per model: the measured table, ``--gpus-per-trial`` forms, what ``resume`` keeps,
Tune's per-trial resources callable, and the per-model "fits on some node" check."""

from __future__ import annotations

import csv
import dataclasses
import pickle
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import rest_sweep
from rest_sweep.cluster import TrialResources
from rest_sweep.launch_settings import LaunchSettings, format_gpu_shares, parse_gpu_shares
from rest_sweep.service import describe_resources, trial_resources
from rest_sweep.tuner import ResourcesByModel
from tests.reliability.helpers import REPO
from trainables.config import TrialConfig
from trainables.errors import UserError
from trainables.models import MODELS
from trainables.results import ExperimentStore

TABLE = REPO / "benchmarks" / "gpu_shares.csv"
GRID = """name: two-models
fixed: {{dataset: cmnist, ratio: 1.0, epochs: 1, width: 8, update_frequency: 4}}
axes: {{seed: [41], model: {models}}}
methods:
  erm: {{}}
"""


def _rows() -> dict[str, dict[str, str]]:
    with TABLE.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len({row["model"] for row in rows}) == len(rows), "one row per model"
    return {row["model"]: row for row in rows}


def write_grid(folder: Path, models: list[str]) -> str:
    path = folder / "two.yaml"
    path.write_text(GRID.format(models=models))
    return str(path)


# ---------------------------------------------------------------------- the measured table


def test_the_catalogue_shares_are_the_rows_of_the_measured_table() -> None:
    rows = _rows()
    assert sorted(rows) == sorted(MODELS.names()), "every model has a row, and only models do"
    for name in MODELS.names():
        assert MODELS.get(name).gpu_share == float(rows[name]["gpu_share"]), name


def test_a_measured_share_follows_from_its_figures() -> None:
    """Share 1/K for the K processes per GPU with the highest measured aggregate samples/s;
    an unmeasured share says so and why."""
    for name, row in _rows().items():
        assert row["basis"] in ("measured", "assumed"), row
        if row["basis"] == "assumed":
            assert row["note"].startswith("not measured"), row
            continue
        assert row["gpu"] and row["date"] and "_throughput.py" in row["command"], row
        aggregate = {
            k: float(row[f"samples_s_{k}_process{'es' if k > 1 else ''}"]) for k in (1, 2, 4)
        }
        best = max(aggregate, key=aggregate.__getitem__)
        assert float(row["gpu_share"]) == 1 / best, (name, aggregate)
        assert best * float(row["peak_gib_real_trial"]) < 80, "K trials fit in the GPU's memory"


# ---------------------------------------------------------------------- --gpus-per-trial


def test_gpus_per_trial_takes_one_value_or_per_model_values() -> None:
    assert parse_gpu_shares(None) is None
    assert parse_gpu_shares("0.25") == 0.25 and parse_gpu_shares(1) == 1.0
    per_model = parse_gpu_shares(" resnet18=0.5 , simple_cnn=0.125")
    assert per_model == {"resnet18": 0.5, "simple_cnn": 0.125}
    assert parse_gpu_shares({"simple_cnn": 1}) == {"simple_cnn": 1.0}
    assert format_gpu_shares(per_model) == "resnet18=0.5,simple_cnn=0.125"
    settings = LaunchSettings(gpus_per_trial="simple_cnn=0.125")
    assert settings.given_gpu_share("simple_cnn") == 0.125
    assert settings.given_gpu_share("resnet18") is None  # not named: its default share
    assert LaunchSettings(gpus_per_trial=0.5).given_gpu_share("resnet18") == 0.5


@pytest.mark.parametrize(
    ("given", "match"),
    [
        (
            "foo=0.5",
            r"^--gpus-per-trial: unknown model 'foo' in 'foo=0.5'; allowed: simple_cnn, re",
        ),
        ("resnet18=1.5", r"^--gpus-per-trial: resnet18=1.5 is not allowed; allowed: a fraction"),
        ("resnet18=-1", r"^--gpus-per-trial: resnet18=-1 is not allowed; allowed: >= 0"),
        ("1.5", r"^--gpus-per-trial: 1.5 is not allowed; allowed: a fraction"),
        ("half", r"^--gpus-per-trial: 'half' is not allowed; allowed: a number .*MODEL one of sim"),
        ("resnet18=0.5,resnet18=1", r"\(resnet18 given twice\)"),
        ("resnet18=0.5,,mlp=1", r"\('' is not MODEL=SHARE\)"),
        ("resnet18=x", r"^--gpus-per-trial: 'resnet18=x' is not allowed"),
    ],
)
def test_bad_gpus_per_trial_is_one_line_naming_the_field_and_the_allowed(given, match) -> None:
    with pytest.raises(UserError, match=match) as caught:
        LaunchSettings(gpus_per_trial=given).validate()
    assert "\n" not in str(caught.value)


def test_shares_round_trip_through_the_ledger_and_old_ledgers_read() -> None:
    for given in (None, 0.25, "simple_cnn=0.125,resnet18=0.5"):
        settings = LaunchSettings(gpus_per_trial=given)
        assert LaunchSettings.of({"settings": settings.to_dict()}) == settings
    assert LaunchSettings.of({"settings": {"gpus_per_trial": 0.5}}).gpus_per_trial == 0.5
    flat = {"resources": {"cpu": 2.0, "gpu": 0.25}, "max_failures": 1}  # before "settings"
    assert LaunchSettings.of(flat) == LaunchSettings(
        cpus_per_trial=2.0, gpus_per_trial=0.25, max_failures=1
    )


def _resumed_settings(monkeypatch, tmp_path: Path, last: LaunchSettings, **given) -> LaunchSettings:
    """The settings ``resume`` would launch with after a launch with ``last``."""
    from rest_sweep import service

    store = ExperimentStore(str(tmp_path), "exp")
    launch = {"id": "L001", "host": "elsewhere", "pid": 1, "ended": 1.0, "heartbeat": 0.0}
    launch.update(trials=[], settings=last.to_dict())
    store.write_ledger({"name": "exp", "trials": {}, "launches": [launch], "data_root": ""})
    seen = {}
    monkeypatch.setattr(service, "validate_data", lambda root, trials, **_: "/data")

    def capture(store, ledger, command, grid, configs, settings, **_):
        seen["settings"] = settings
        return service.SweepResult(store.name, store.storage, None, 0, 0)

    monkeypatch.setattr(service, "_launch", capture)
    service.resume(store.storage, store.name, **given)
    return seen["settings"]


def test_resume_keeps_the_shares_given_and_replaces_them_as_a_whole(monkeypatch, tmp_path) -> None:
    last = LaunchSettings(gpus_per_trial="simple_cnn=0.125,resnet18=0.5")
    assert _resumed_settings(monkeypatch, tmp_path / "a", last) == last
    changed = _resumed_settings(monkeypatch, tmp_path / "b", last, gpus_per_trial="resnet18=1")
    assert changed == dataclasses.replace(last, gpus_per_trial={"resnet18": 1.0})


# ---------------------------------------------------------------------- resolution


def _configs(*models: str) -> list[TrialConfig]:
    return [
        TrialConfig.from_recipe("paper", dataset="cmnist", ratio=1.0, method="erm", model=m)
        for m in models
    ]


def test_each_model_gets_its_share_and_the_others_their_default(monkeypatch) -> None:
    configs = _configs("resnet18", "simple_cnn", "resnet18")
    given = LaunchSettings(cpus_per_trial=2, gpus_per_trial="simple_cnn=0.125")
    with_gpus = SimpleNamespace(cluster_resources=lambda: {"CPU": 16, "GPU": 1})
    monkeypatch.setitem(sys.modules, "ray", with_gpus)
    default = MODELS.get("resnet18").gpu_share
    resources = trial_resources(given, configs)
    assert resources == {
        "resnet18": TrialResources(2, default),
        "simple_cnn": TrialResources(2, 0.125),
    }
    assert describe_resources(resources, given) == (
        f"2 CPU each; GPU per trial: resnet18 {default:g} (default), simple_cnn 0.125"
    )
    monkeypatch.setitem(sys.modules, "ray", SimpleNamespace(cluster_resources=lambda: {"CPU": 2}))
    on_cpus = trial_resources(given, configs)  # no GPUs: the defaults are 0, given shares stay
    assert on_cpus == {"resnet18": TrialResources(2, 0.0), "simple_cnn": TrialResources(2, 0.125)}
    monkeypatch.setitem(sys.modules, "ray", None)  # every share given: Ray is not asked
    assert trial_resources(LaunchSettings(gpus_per_trial=0.5), configs)["simple_cnn"].gpus == 0.5


def test_tune_asks_the_resources_callable_per_trial_and_it_pickles() -> None:
    from ray import tune
    from ray.tune.trainable.function_trainable import wrap_function

    by_model = ResourcesByModel.of(
        {"simple_cnn": TrialResources(1, 0.125), "resnet18": TrialResources(2, 0.5)}
    )

    def trainable(config):
        return None

    wrapped = wrap_function(tune.with_resources(trainable, by_model))  # what Tune does with it
    config = {"trial": {"config": {"model": "resnet18"}}}
    assert wrapped.default_resource_request(config) == {"cpu": 2, "gpu": 0.5}
    config["trial"]["config"]["model"] = "simple_cnn"
    assert wrapped.default_resource_request(config) == {"cpu": 1, "gpu": 0.125}
    assert pickle.loads(pickle.dumps(by_model)) == by_model  # tuner.pkl holds it
    assert type(by_model).__module__ == "rest_sweep.tuner"
    with pytest.raises(KeyError, match="no resources planned for model 'mlp'"):
        by_model({"trial": {"config": {"model": "mlp"}}})


# ---------------------------------------------------------------------- on the session's Ray


@pytest.mark.ray
def test_a_share_no_node_holds_is_refused_naming_the_model(ray_session, tiny_cmnist_root, tmp_path):
    grid = write_grid(tmp_path, ["simple_cnn", "resnet18"])
    storage = tmp_path / "s"
    with pytest.raises(UserError) as caught:  # the session's Ray has no GPU
        rest_sweep.run(
            grid, str(tiny_cmnist_root), str(storage), "e", gpus_per_trial="resnet18=1", quiet=True
        )
    message = str(caught.value)
    assert message.startswith(
        "--cpus-per-trial 1 --gpus-per-trial resnet18=1: no node of the cluster can run a resnet18 trial"
    )
    assert "allowed: at most 2 CPUs and 0 GPUs per trial" in message and "\n" not in message
    assert not (storage / "e").exists()  # refused before fit(): nothing left behind


@pytest.mark.ray
def test_a_sweep_records_the_share_given_and_what_each_model_got(
    ray_session, tiny_cmnist_root, tmp_path, capsys
) -> None:
    grid = write_grid(tmp_path, ["simple_cnn"])
    storage = tmp_path / "s"
    result = rest_sweep.run(
        grid,
        str(tiny_cmnist_root),
        str(storage),
        "e",
        gpus_per_trial="resnet18=1",
        reuse_actors=True,
    )  # resnet18 is not in this launch: its share cannot stop it
    assert result.outcome == "completed"
    (launch,) = ExperimentStore(str(storage), "e").read_ledger()["launches"]
    assert launch["settings"]["gpus_per_trial"] == {"resnet18": 1.0}  # as given
    assert launch["resources"] == {"simple_cnn": {"cpu": 1.0, "gpu": 0.0}}  # what trials got
    assert "1 CPU each; GPU per trial: simple_cnn 0 (default)" in capsys.readouterr().out
