"""Sparsity x objective: a sparse-training method (static, set, rigl) trained on another
method's objective, named in the config (``method=rigl, objective=reweight``)."""

from __future__ import annotations

import pytest

from trainables.config import ConfigError, TrialConfig
from trainables.methods import METHODS, effective_method, method_takes, objectives
from trainables.train import run_trial


def test_objectives_come_from_the_registry_and_compose_labels():
    assert objectives()[:2] == ["erm", "reweight"]
    combined = effective_method("rigl", "reweight")
    assert combined.labels == "bias" and combined.sparse and combined.reweights
    assert effective_method("rigl", "erm") is METHODS.get("rigl")
    assert method_takes("rigl", "upweight") and not method_takes("erm", "density")


def test_bad_combinations_are_one_line_errors():
    for overrides, field in (
        ({"method": "erm", "objective": "reweight"}, "objective"),
        ({"method": "rigl", "density": 0.05, "objective": "nonsense"}, "objective"),
        ({"method": "rigl", "density": 0.05, "upweight": 30.0}, "upweight"),
    ):
        with pytest.raises(Exception) as info:
            TrialConfig.from_recipe("paper", **overrides)
        message = str(info.value)
        assert message.startswith(f"{field}:") and "allowed" in message and "\n" not in message


def test_default_objective_keeps_every_sparse_hash():
    cfg = TrialConfig.from_recipe("paper", method="rigl", density=0.05)
    assert cfg.objective == "erm" and "objective" not in cfg.identity()
    with pytest.raises(ConfigError):
        cfg.replace(objective="reweight")  # the reweighting fields must come with it


def test_rigl_on_the_reweight_objective_is_rest(tiny_cmnist_root, tmp_path):
    """REST is RigL x reweighting under its own name: the same computation, bit for bit."""
    common = dict(
        dataset="cmnist",
        ratio=1.0,
        density=0.1,
        epochs=1,
        data_root=str(tiny_cmnist_root),
        device="cpu",
        width=8,
        update_frequency=3,
    )
    rest = run_trial(
        TrialConfig.from_recipe("paper", method="rest", **common),
        checkpoint_dir=str(tmp_path / "rest"),
    )
    combined_cfg = TrialConfig.from_recipe("paper", method="rigl", objective="reweight", **common)
    assert combined_cfg.reweight == "loss" and combined_cfg.upweight == 30.0
    combined = run_trial(combined_cfg, checkpoint_dir=str(tmp_path / "combined"))
    volatile = {"epoch_time_s", "attempt"}
    assert {k: v for k, v in combined["final"].items() if k not in volatile} == {
        k: v for k, v in rest["final"].items() if k not in volatile
    }
    assert combined["labels_used"] == "bias" and combined["density"] == rest["density"]


@pytest.mark.parametrize("objective", ["groupdro", "jtt"])
def test_rigl_trains_on_other_objectives_with_masks_held(tiny_cmnist_root, tmp_path, objective):
    from trainables.train.trial import Trial

    cfg = TrialConfig.from_recipe(
        "paper",
        method="rigl",
        objective=objective,
        density=0.1,
        epochs=2,
        data_root=str(tiny_cmnist_root),
        device="cpu",
        width=8,
        update_frequency=3,
        **({"jtt_epochs": 1} if objective == "jtt" else {}),  # the recipes' T is 2
    )
    trial = Trial(cfg)
    assert type(trial.method).__name__.endswith("OnRigl")
    assert trial.info.labels == METHODS.get(objective).labels
    for epoch in (1, 2):
        trial.run_epoch(epoch)
        engine, model = trial.method.engine, trial.method.model
        weights = dict(model.named_parameters())
        for name, mask in engine.masks().items():  # JTT re-initialises after epoch 1
            assert int((weights[name].detach()[~mask] != 0).sum()) == 0, name
    summary = trial.summary([trial.best_row], attempts=1)
    assert summary["labels_used"] == trial.info.labels
    assert summary["density"] == pytest.approx(0.1, abs=1e-3)


def test_the_example_grid_crosses_sparsity_with_objective():
    from search_spaces import expand, resolve

    expansion = expand(resolve("search_spaces/examples/sparsity_x_objective.yaml"))
    crossed = {(t.method, t.objective) for t in expansion.trials if t.method != "rest"}
    assert crossed == {
        (m, o) for m in ("static", "set", "rigl") for o in ("erm", "reweight", "groupdro", "jtt")
    }
    assert expansion.count == 3 * 4 * 2 * 3 + 2 * 3
