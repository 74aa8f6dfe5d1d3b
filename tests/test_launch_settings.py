"""Launch settings are declared once (``rest_sweep.launch_settings``): the ``run``/``resume``
flags, the ledger record, the service's keyword arguments and the choices all come from the
fields of ``LaunchSettings`` and the registries, with no Ray and no data."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from rest_sweep import launch_settings
from rest_sweep.integrations import INTEGRATIONS
from rest_sweep.launch_settings import LaunchSettings, add_flags, flag, given, last_settings
from rest_sweep.schedulers import SCHEDULERS, SchedulerSpec
from trainables.errors import UserError
from trainables.results import ExperimentStore

# One value other than the default for every field: (command-line words, the value they give).
GIVEN: dict[str, tuple[list[str], object]] = {
    "address": (["--address", "auto"], "auto"),
    "cpus_per_trial": (["--cpus-per-trial", "2"], 2.0),
    "gpus_per_trial": (["--gpus-per-trial", "simple_cnn=0.125"], {"simple_cnn": 0.125}),
    "max_concurrent": (["--max-concurrent", "3"], 3),
    "max_failures": (["--max-failures", "5"], 5),
    "scheduler": (["--scheduler", "asha"], "asha"),
    "metric": (["--metric", "valid_unbiased_acc"], "valid_unbiased_acc"),
    "num_cpus": (["--num-cpus", "4"], 4),
    "num_gpus": (["--num-gpus", "1"], 1),
    "reuse_actors": (["--reuse-actors"], True),
    "fuse": (["--fuse", "8"], 8),
    "callbacks": (["--callback", "wandb", "--callback", "mlflow"], ("wandb", "mlflow")),
}
FIELDS = dataclasses.fields(LaunchSettings)


def _parser(resume: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_flags(parser, resume=resume)
    return parser


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The parser's actions by flag."""
    return {option: a for a in parser._actions for option in a.option_strings}


def test_every_field_has_a_generated_flag_with_its_help_default_and_choices() -> None:
    assert set(GIVEN) == {f.name for f in FIELDS}  # a new setting needs a line above
    run, resume = _actions(_parser(resume=False)), _actions(_parser(resume=True))
    for f in FIELDS:
        for actions in (run, resume):
            action = actions[flag(f)]
            assert action.dest == f.name
            text = f.metadata["help"]
            assert action.help.startswith(text() if callable(text) else text)
            choices = f.metadata["choices"]
            assert action.choices == (None if choices is None else list(choices()))
        default = [] if f.default == () else f.default
        assert run[flag(f)].default == default, f.name
        assert resume[flag(f)].default is None, f.name  # as the last launch
        assert resume[flag(f)].help.endswith("(default: as the last launch)")
    assert "(default 1.0)" in run["--cpus-per-trial"].help
    assert "(default: embedded Ray)" in run["--address"].help
    assert "(default: as many as resources allow)" in run["--max-concurrent"].help
    assert run["--gpus-per-trial"].metavar == "SHARE|MODEL=SHARE,..."
    # resume only: the --no- form of a boolean, and a flag that drops the last callbacks
    assert "--no-reuse-actors" in resume and "--no-reuse-actors" not in run
    assert resume["--no-callbacks"].dest == "callbacks" and "--no-callbacks" not in run


def test_each_flag_sets_its_field() -> None:
    words = [w for argv, _ in GIVEN.values() for w in argv]
    expected = LaunchSettings(**{name: value for name, (_, value) in GIVEN.items()})
    for resume in (False, True):
        args = _parser(resume).parse_args(words)
        assert LaunchSettings().override(**given(args)) == expected
    assert LaunchSettings().override(**given(_parser(False).parse_args([]))) == LaunchSettings()
    untouched = _parser(True).parse_args([])  # resume without flags: the last launch's
    assert expected.override(**given(untouched)) == expected
    dropped = given(_parser(True).parse_args(["--no-callbacks", "--no-reuse-actors"]))
    assert expected.override(**dropped) == dataclasses.replace(
        expected, callbacks=(), reuse_actors=False
    )


def test_the_ledger_record_round_trips() -> None:
    every = LaunchSettings(**{name: value for name, (_, value) in GIVEN.items()})
    for settings in (LaunchSettings(), every, LaunchSettings(gpus_per_trial=0.5)):
        record = json.loads(json.dumps(settings.to_dict()))
        assert record == settings.to_dict() and set(record) == {f.name for f in FIELDS}
        assert LaunchSettings.of({"settings": record}) == settings


def test_a_launch_record_written_to_the_ledger_reads_back(tmp_path: Path) -> None:
    from rest_sweep.ledger import start_launch

    store = ExperimentStore(str(tmp_path), "exp")
    store.write_ledger({"name": "exp", "trials": {}, "launches": []})
    settings = LaunchSettings(cpus_per_trial=2.0, gpus_per_trial="resnet18=0.5", max_failures=0)
    launch = start_launch(store, "run", "tiny", [], settings)
    assert last_settings(store.read_ledger()) == settings
    assert LaunchSettings.of(launch) == settings


def test_older_flat_launch_records_still_read() -> None:
    flat = {
        "address": None,
        "resources": {"cpu": 2.0, "gpu": 0.25},
        "max_concurrent": None,
        "scheduler": "asha",
        "metric": "valid_worst_group_acc",
        "max_failures": 1,
        "pack_size": "auto",  # no longer a setting: dropped
    }
    assert LaunchSettings.of(flat) == LaunchSettings(
        cpus_per_trial=2.0, gpus_per_trial=0.25, max_failures=1, scheduler="asha"
    )
    assert LaunchSettings.of({"settings": {"max_failures": None}}) == LaunchSettings()


def test_scheduler_and_callback_choices_are_their_registries() -> None:
    fields = {f.name: f for f in FIELDS}
    assert list(fields["scheduler"].metadata["choices"]()) == SCHEDULERS.names()
    assert list(fields["callbacks"].metadata["choices"]()) == INTEGRATIONS.names()
    run = _actions(_parser(resume=False))
    assert run["--scheduler"].choices == SCHEDULERS.names() == ["fifo", "asha"]
    assert run["--callback"].choices == INTEGRATIONS.names()
    for name in SCHEDULERS.names():  # the help describes every registered scheduler
        assert f"{name} {SCHEDULERS.get(name).summary}" in run["--scheduler"].help
    import rest_sweep.ledger

    assert not hasattr(rest_sweep.ledger, "SCHEDULER_NAMES")  # no retyped list


def test_a_newly_registered_scheduler_is_a_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = SchedulerSpec(lambda **_: None, needs_metric=False, summary="never stops")
    monkeypatch.setitem(SCHEDULERS._items, "patient", spec)
    assert "patient" in _actions(_parser(resume=False))["--scheduler"].choices
    LaunchSettings(scheduler="patient").validate()
    with pytest.raises(
        UserError, match=r"^--scheduler: 'hyper' is not allowed; allowed: .*patient"
    ):
        LaunchSettings(scheduler="hyper").validate()


def test_the_service_takes_settings_and_given_names(tmp_path: Path, monkeypatch) -> None:
    """``rest_sweep.run(..., settings, **given)``: the given names replace the settings' values;
    a name that is no setting is a TypeError (launch and data check stubbed)."""
    import rest_sweep
    from rest_sweep import service

    seen = {}
    monkeypatch.setattr(service, "validate_data", lambda root, trials, **_: "/data")

    def launch(store, ledger, command, grid, configs, settings, **_):
        seen["settings"] = settings
        return service.SweepResult(store.name, store.storage, None, 0, 0)

    monkeypatch.setattr(service, "_launch", launch)
    base = LaunchSettings(max_failures=5, scheduler="asha")
    rest_sweep.run("demo", "data", str(tmp_path), "e", base, cpus_per_trial=2, quiet=True)
    assert seen["settings"] == dataclasses.replace(base, cpus_per_trial=2.0)
    rest_sweep.run("demo", "data", str(tmp_path), "e", quiet=True, gpus_per_trial=0)
    assert seen["settings"] == LaunchSettings(gpus_per_trial=0.0)
    with pytest.raises(TypeError, match=r"unknown launch setting\(s\) pack_size; allowed: addr"):
        rest_sweep.run("demo", "data", str(tmp_path), "e", pack_size="auto")
    with pytest.raises(TypeError, match=r"unknown launch setting"):
        rest_sweep.resume(str(tmp_path), "e", cpu=2)


def test_the_cli_passes_every_setting_to_the_service(tmp_path: Path, monkeypatch) -> None:
    from rest_sweep import service
    from rest_sweep.cli import build_parser
    from rest_sweep.commands.run import launch_options

    words = [w for argv, _ in GIVEN.values() for w in argv]
    common = ["--storage", str(tmp_path), "--name", "e", "--quiet"]
    args = build_parser().parse_args(["run", "--grid", "demo", "--data-root", "d", *common, *words])
    options = launch_options(args)
    assert set(options) == {*launch_settings.names(), "quiet", "force"}
    seen = {}
    monkeypatch.setattr(service, "validate_data", lambda root, trials, **_: "/data")
    monkeypatch.setattr(LaunchSettings, "validate", lambda self: None)  # --address with --num-*
    monkeypatch.setattr(service.integrations, "targets", lambda *a: [])  # not installed here

    def launch(store, ledger, command, grid, configs, settings, **_):
        seen["settings"] = settings
        return service.SweepResult(store.name, store.storage, None, 0, 0)

    monkeypatch.setattr(service, "_launch", launch)
    assert args.func(args) == 0
    assert seen["settings"] == LaunchSettings(**{n: v for n, (_, v) in GIVEN.items()})
