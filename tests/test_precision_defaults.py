"""Per-model CUDA precision defaults, precision as CUDA-only numerics, and cuDNN autotuning of
training shapes only (docs/performance.md, "Precision")."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings

import pytest
import torch

from tests.fixtures.data import cpu_config
from trainables.config import PRECISIONS, TrialConfig, parse_assignments, recipe_defaults
from trainables.datasets import DATASETS
from trainables.models import MODELS


def _cfg(recipe: str = "paper", **overrides) -> TrialConfig:
    return TrialConfig.from_recipe(recipe, **overrides)


# ---------------------------------------------------------------------- recipe defaults


def test_every_model_declares_a_known_precision():
    assert {name: MODELS.get(name).cuda_precision for name in MODELS} == {
        "simple_cnn": "tf32",
        "resnet18": "bf16",
        "vgg16": "fp32",
        "mlp": "fp32",
    }
    assert all(MODELS.get(name).cuda_precision in PRECISIONS for name in MODELS)


@pytest.mark.parametrize("recipe", ["paper", "rest-code"])
@pytest.mark.parametrize(
    "dataset,ratio,expected",
    [("cmnist", 1.0, "tf32"), ("cifar10c", 1.0, "bf16"), ("bffhq", 0.5, "bf16")],
)
def test_recipe_precision_is_the_dataset_models(recipe, dataset, ratio, expected):
    cfg = _cfg(recipe, dataset=dataset, ratio=ratio, method="erm")
    assert cfg.precision == expected
    assert cfg.precision == MODELS.get(DATASETS.get(dataset).model).cuda_precision
    assert recipe_defaults(recipe, dataset, ratio, "erm")["precision"] == expected


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_every_dataset_gets_its_models_precision(dataset):
    info = DATASETS.get(dataset)
    values = recipe_defaults("paper", dataset, 1.0, "erm")
    assert values["precision"] == MODELS.get(info.model).cuda_precision


@pytest.mark.parametrize(
    "dataset,model,expected",
    [
        ("cmnist", "resnet18", "bf16"),  # simple_cnn's dataset, resnet18's precision
        ("cifar10c", "simple_cnn", "tf32"),
        ("cifar10c", "vgg16", "fp32"),
    ],
)
def test_precision_follows_an_overridden_model(dataset, model, expected):
    cfg = _cfg(dataset=dataset, model=model, method="erm")
    assert (cfg.model, cfg.precision) == (model, expected)
    assert recipe_defaults("paper", dataset, 1.0, "erm", model=model)["precision"] == expected


def test_an_unknown_model_is_still_named_by_validation():
    from trainables.config import ConfigError

    with pytest.raises(ConfigError, match=r"^model: 'vgg99' is not allowed"):
        _cfg(dataset="cmnist", model="vgg99")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_a_given_precision_always_wins(precision):
    assert _cfg(dataset="cmnist", precision=precision).precision == precision
    assert _cfg(dataset="cifar10c", model="simple_cnn", precision=precision).precision == precision
    # the --set route: parsed strings, model before or after precision
    given = parse_assignments([f"precision={precision}", "model=resnet18"])
    assert _cfg(dataset="cmnist", **given).precision == precision


def test_a_grid_plans_the_models_precision_unless_set():
    from search_spaces.grid import Block, Grid, expand

    grid = Grid(
        name="precision-test",
        description="",
        blocks=(Block.of(["erm"], {"dataset": ("cmnist", "cifar10c")}, {"seed": 41}),),
    )
    planned = {t.dataset: t.precision for t in expand(grid).trials}
    assert planned == {"cmnist": "tf32", "cifar10c": "bf16"}
    kept = {t.dataset: t.precision for t in expand(grid, {"precision": "fp32"}).trials}
    assert kept == {"cmnist": "fp32", "cifar10c": "fp32"}


def test_field_default_stays_fp32_so_stored_trials_keep_their_hash():
    default = next(f.default for f in dataclasses.fields(TrialConfig) if f.name == "precision")
    assert default == "fp32"
    assert TrialConfig().precision == "fp32"
    # Hashes of trials planned before per-model precision (every one stored precision=fp32),
    # computed with the code of that time: a stored config dict read back keeps its hash.
    before = {
        "602782a0573222c4": dict(dataset="cmnist", ratio=1.0, method="rest", density=0.05),
        "ce961645498fa0ac": dict(dataset="cifar10c", ratio=1.0, method="rest", density=0.05),
        "4cc0081038113244": dict(dataset="bffhq", ratio=0.5, method="erm"),
        "0e42e2e22a9ac1a6": dict(dataset="cmnist", ratio=1.0, method="erm", model="resnet18"),
    }
    for old_hash, cell in before.items():
        stored = _cfg(**cell, precision="fp32").to_dict()
        assert stored["precision"] == "fp32"
        again = TrialConfig.from_dict(stored)
        assert "precision" not in again.identity()
        assert again.trial_hash == old_hash, cell
        # planned today without a precision: the model's, a different trial
        assert _cfg(**cell).trial_hash != old_hash


# ---------------------------------------------------------------------- CPU ignores precision


def _tiny(root, precision: str) -> TrialConfig:
    return cpu_config(root, precision=precision)


def _same(a: dict, b: dict) -> bool:
    """Rows equal value for value (NaN equals NaN), wall time left out."""
    keys = (set(a) | set(b)) - {"epoch_time_s"}
    for key in keys:
        x, y = a.get(key), b.get(key)
        both_nan = isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)
        if x != y and not both_nan:
            return False
    return True


def test_cpu_trial_ignores_bf16(tiny_cmnist_root):
    from trainables.train.trial import Trial

    rows, weights = {}, {}
    for precision in ("fp32", "bf16"):
        trial = Trial(_tiny(tiny_cmnist_root, precision))
        assert trial.numerics == {"tf32": False, "bf16": False}
        assert isinstance(trial.method.ctx.autocast(), contextlib.nullcontext)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tiny valid split lacks a group
            rows[precision] = trial.run_epoch(1)
        weights[precision] = [m.state_dict() for m in trial.method.modules()]
    assert _same(rows["fp32"], rows["bf16"]), (rows["fp32"], rows["bf16"])
    for fp32, bf16 in zip(weights["fp32"], weights["bf16"], strict=True):
        assert fp32.keys() == bf16.keys()
        for name in fp32:
            assert fp32[name].dtype == bf16[name].dtype
            assert torch.equal(fp32[name], bf16[name]), name


def test_cpu_summary_records_bf16_false(tiny_cmnist_root, tmp_path):
    from trainables.train import run_trial

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = run_trial(_tiny(tiny_cmnist_root, "bf16"), checkpoint_dir=str(tmp_path / "t"))
    assert summary["precision"] == "bf16"
    assert summary["bf16"] is False and summary["tf32"] is False  # CUDA-only numerics


def test_set_precision_reports_cuda_numerics_only():
    from trainables.train.trial import set_precision

    cpu = torch.device("cpu")
    for precision in PRECISIONS:
        assert set_precision(precision, cpu) == {"tf32": False, "bf16": False}


# ---------------------------------------------------------------------- cuDNN autotuning


def test_cudnn_autotune_off_restores_the_flag_also_on_error(monkeypatch):
    from trainables.train.trial import cudnn_autotune_off

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    with cudnn_autotune_off():
        assert torch.backends.cudnn.benchmark is False
    assert torch.backends.cudnn.benchmark is True
    with pytest.raises(RuntimeError, match="boom"), cudnn_autotune_off():
        raise RuntimeError("boom")
    assert torch.backends.cudnn.benchmark is True
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    with cudnn_autotune_off():
        assert torch.backends.cudnn.benchmark is False
    assert torch.backends.cudnn.benchmark is False


def test_evaluation_runs_without_cudnn_autotuning(tiny_cmnist_root, monkeypatch):
    from trainables.train.trial import Trial

    trial = Trial(_tiny(tiny_cmnist_root, "fp32"))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)  # as a CUDA trial sets it
    seen: list[tuple[str, bool]] = []

    def spy(name, function):
        def wrapped(*args, **kwargs):
            seen.append((name, torch.backends.cudnn.benchmark))
            return function(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(trial, "train_epoch", spy("train", trial.train_epoch))
    monkeypatch.setattr(trial, "evaluate", spy("evaluate", trial.evaluate))
    monkeypatch.setattr(
        trial.method, "before_evaluate", spy("before_evaluate", trial.method.before_evaluate)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trial.run_epoch(1)
    assert seen == [
        ("train", True),
        ("before_evaluate", False),
        ("evaluate", False),
        ("evaluate", False),
    ]
    assert torch.backends.cudnn.benchmark is True  # restored for the next epoch's training
