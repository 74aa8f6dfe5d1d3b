"""One --set rule for train, run and grids, and train's flags generated from TrialConfig."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from rest_sweep.cli import build_parser, main
from rest_sweep.commands.train import build_config
from search_spaces import GRIDS, expand, parse_overrides
from search_spaces.grid import Block, Grid
from trainables.config import TrialConfig
from trainables.errors import UserError


def train_args(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["train", "--data-root", "data", "--out", "o", *extra])


def test_train_has_a_flag_per_config_field_and_keeps_its_defaults() -> None:
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for f in dataclasses.fields(TrialConfig):
        assert "--" + f.name.replace("_", "-") in text
    cfg = build_config(train_args())
    assert (cfg.dataset, cfg.ratio, cfg.method, cfg.seed, cfg.recipe) == (
        "cmnist",
        1.0,
        "rest",
        41,
        "paper",
    )
    assert cfg == TrialConfig.from_recipe(
        "paper", dataset="cmnist", ratio=1.0, method="rest", seed=41, data_root="data"
    )


def test_train_flags_and_set_are_typed_and_only_given_ones_override() -> None:
    cfg = build_config(
        train_args(
            "--ratio",
            "5pct",
            "--lr",
            "0.05",
            "--batch-size",
            "64",
            "--no-cuda-graphs",
            "--optimizer",
            "sgd",
            "--epochs",
            "3",
        )
    )
    assert (cfg.ratio, cfg.lr, cfg.batch_size, cfg.cuda_graphs, cfg.optimizer, cfg.epochs) == (
        5.0,
        0.05,
        64,
        False,
        "sgd",
        3,
    )
    code = build_config(train_args("--set", "recipe=rest-code", "--set", "width=16"))
    assert code.recipe == "rest-code" and code.optimizer == "sgd" and code.width == 16
    assert code == build_config(train_args("--recipe", "rest-code", "--width", "16"))


def test_train_rejects_what_the_method_does_not_take(capsys: pytest.CaptureFixture[str]) -> None:
    for extra in (["--density", "0.05"], ["--set", "density=0.05"]):
        assert main(["train", "--data-root", "d", "--out", "o", "--method", "erm", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert "density" in err and "rest" in err and "\n" not in err
    assert main(["train", "--data-root", "d", "--out", "o", "--set", "lr=0.1pct"]) == 2
    assert "lr" in capsys.readouterr().err


def test_set_applies_to_the_methods_that_take_it_and_says_so() -> None:
    grid = GRIDS.get("paper-table2-bffhq")
    # 2 epochs would never reach DisEnt's feature swap: planning refuses that unless allowed
    overrides = ["density=0.1", "epochs=2", "disent_allow_no_swap=true"]
    expansion = expand(grid, parse_overrides(overrides))
    assert expansion.per_method() == {"erm": 3, "erm_rw": 3, "disent": 3, "mrm": 3, "rest": 3}
    assert {t.epochs for t in expansion.trials} == {2}
    note, allow = expansion.set_notes()
    assert note.startswith("--set density: applied to 6 of 15 trials") and "rest" in note
    assert allow.startswith("--set disent_allow_no_swap: applied to 3 of 15 trials")


def test_set_key_no_trial_takes_is_an_error_naming_the_takers() -> None:
    dense = Grid("dense", "dense only", (Block.of(["erm", "erm_rw"], {"seed": [41, 42]}),))
    with pytest.raises(UserError, match=r"--set density: no trial of grid dense .*rest"):
        expand(dense, parse_overrides(["density=0.1"]))
    with pytest.raises(UserError, match=r"--set method: not allowed on a grid"):
        expand(dense, {"method": "rest"})
    with pytest.raises(UserError, match="lr"):
        parse_overrides(["lr=0.1pct"])
    assert parse_overrides(["ratio=1pct"]) == {"ratio": 1.0}


def test_grids_show_prints_the_set_note(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grids", "show", "paper-table2-bffhq", "--no-cost", "--set", "density=0.1"]) == 0
    assert "--set density: applied to 6 of 15 trials" in capsys.readouterr().out


def test_run_and_resume_flags() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["run", "--grid", "demo", "--data-root", "d", "--storage", "s", "--name", "n"]
    )
    assert (args.gpus_per_trial, args.cpus_per_trial, args.max_failures, args.scheduler) == (
        None,
        1.0,
        2,
        "fifo",
    )
    again = parser.parse_args(["resume", "--storage", "s", "--name", "n"])
    assert all(
        getattr(again, k) is None
        for k in (
            "address",
            "cpus_per_trial",
            "gpus_per_trial",
            "max_concurrent",
            "max_failures",
            "scheduler",
            "metric",
            "num_cpus",
            "num_gpus",
            "reuse_actors",
        )
    )
    with pytest.raises(SystemExit):
        parser.parse_args(
            [
                "run",
                "--grid",
                "demo",
                "--data-root",
                "d",
                "--storage",
                "s",
                "--name",
                "n",
                "--pack-size",
                "4",
            ]
        )
