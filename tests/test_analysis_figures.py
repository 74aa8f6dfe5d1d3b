"""Figures (traces, axes, names) and the analyze / report commands."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from analysis import figures, synthetic
from analysis.api import build
from trainables.errors import UserError


@pytest.fixture(scope="module")
def two_ratios(tmp_path_factory: pytest.TempPathFactory) -> str:
    storage = tmp_path_factory.mktemp("fig")
    configs = synthetic.grid_configs(
        ratios=(1.0, 5.0), methods=("erm", "rigl", "rest"), densities=(0.005, 0.05, 0.5), epochs=3
    )
    pending = {synthetic.config_hash(configs[-1]): "pending"}
    synthetic.write_experiment(str(storage), "exp", configs, statuses=pending)
    return str(storage)


def test_density_curves_traces(two_ratios: str) -> None:
    analysis = build(two_ratios, "exp")
    fig = figures.density_curves(analysis.frame, "cmnist", "paper")
    # per ratio: 2 sparse methods x 2 metrics x (band + line) + ERM x 2 metrics = 10
    assert len(fig.data) == 20
    layout = fig.to_dict()["layout"]
    xaxes = [k for k in layout if k.startswith("xaxis")]
    assert len(xaxes) == 2 and all(layout[k]["type"] == "log" for k in xaxes)
    lines = [t for t in fig.data if t.fill is None]
    names = {t.name for t in lines}
    assert names == {
        f"{m} · {k}"
        for m in ("RigL", "REST", "ERM (dense)")
        for k in ("bias-conflicting", "unbiased")
    }
    dash = {t.name: t.line.dash for t in lines}
    assert dash["REST · bias-conflicting"] == "solid" and dash["REST · unbiased"] == "dash"
    assert sum(t.showlegend is True for t in lines) == 6  # legend once, not per panel
    bands = [t for t in fig.data if t.fill == "toself"]
    assert len(bands) == 8 and all(t.showlegend is False for t in bands)
    erm = next(t for t in lines if t.name == "ERM (dense) · unbiased")
    assert erm.y[0] == erm.y[1] and erm.x[1] == 1.0  # a horizontal line
    rest = next(t for t in lines if t.name == "REST · unbiased" and t.xaxis == "x")
    assert list(rest.x) == [0.005, 0.05, 0.5]
    cells = analysis.cells
    assert rest.y[1] == pytest.approx(
        float(
            cells[
                (cells["method"] == "rest") & (cells["ratio"] == 1.0) & (cells["density"] == 0.05)
            ]["test_mean"].iloc[0]
        )
    )


def test_flops_scatter_and_training_curves(two_ratios: str) -> None:
    analysis = build(two_ratios, "exp")
    fig = figures.flops_scatter(analysis.frame, "cmnist", analysis.options.choice)
    assert [t.name for t in fig.data] == ["ERM", "RigL", "REST"]
    assert fig.layout.xaxis.type == "log"
    assert sum(len(t.x) for t in fig.data) == int((analysis.frame["status"] == "finished").sum())
    hashes = list(analysis.frame["trial_hash"][:2])
    curves = figures.training_curves(analysis.epochs.to_pandas(), analysis.frame, hashes)
    assert len(curves.data) == 2 * 6  # 3 accuracies + 2 losses + density per trial
    assert all(len(t.x) == 3 for t in curves.data)


def _parser() -> argparse.ArgumentParser:
    from rest_sweep.commands import analyze, report

    parser = argparse.ArgumentParser(prog="rest-sweep")
    sub = parser.add_subparsers(dest="command", required=True)
    analyze.register(sub)
    report.register(sub)
    return parser


def test_analyze_and_report_commands(
    two_ratios: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    parser = _parser()
    prefix = sorted((Path(two_ratios) / "exp" / "trials").iterdir())[0].name[:8]
    args = parser.parse_args(
        [
            "analyze",
            "--storage",
            two_ratios,
            "--name",
            "exp",
            "--out",
            str(tmp_path),
            "--curves",
            prefix,
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "planned trials" in out and "pending 1" in out
    produced = {p.name for p in (tmp_path / "figures").iterdir()}
    assert produced == {"density_cmnist_paper.html", "flops_cmnist.html", "training_curves.html"}
    args = parser.parse_args(["report", "--storage", two_ratios, "--name", "exp"])
    assert args.func(args) == 0
    assert (Path(two_ratios) / "exp" / "analysis" / "report.html").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--metric", "best"], "metric: 'best' is not allowed"),
        (["--min-seeds", "0"], "min_seeds: 0 is not allowed"),
        (["--curves", "zzzz"], "--curves: 'zzzz' matches no trial"),
        (["--no-figures", "--png"], "--no-figures"),
    ],
)
def test_command_errors_are_one_line(
    two_ratios: str, tmp_path: Path, argv: list[str], message: str
) -> None:
    args = _parser().parse_args(
        ["analyze", "--storage", two_ratios, "--name", "exp", "--out", str(tmp_path), *argv]
    )
    with pytest.raises(UserError, match=message) as info:
        args.func(args)
    assert "\n" not in str(info.value)


def test_help_has_examples() -> None:
    parser = _parser()
    for command in ("analyze", "report"):
        sub = parser._subparsers._group_actions[0].choices[command]  # noqa: SLF001
        assert "examples:" in sub.format_help()


def test_cli_dispatch_exit_code_and_message(two_ratios: str, capsys: pytest.CaptureFixture) -> None:
    from rest_sweep.cli import main

    assert main(["analyze", "--storage", two_ratios, "--name", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rest-sweep analyze: error:") and "no experiment.json" in err
    assert "\n" not in err
