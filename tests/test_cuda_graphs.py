"""CUDA-graph replay of the train step gives the eager loop's results (GPU machines only).

CI has no GPU, so these tests skip there; they run on the lent GPU machine (see the closing
notes in benchmarks/README.md for the last run).
"""

from __future__ import annotations

import pytest
import torch

from trainables.config import TrialConfig
from trainables.results import TrialStore
from trainables.train import run_trial

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def config(root, recipe: str, **overrides) -> TrialConfig:
    values = dict(
        dataset="cmnist",
        ratio=1.0,
        method="rest",
        density=0.1,
        epochs=3,
        update_frequency=3,
        data_root=str(root),
        device="cuda",
        seed=41,
    )
    values.update(overrides)
    return TrialConfig.from_recipe(recipe, **values)


@pytest.mark.parametrize("recipe", ["paper", "rest-code"])  # Adam + loss rw; SGD + plateau
def test_graphs_match_the_eager_loop(tiny_cmnist_root, tmp_path, recipe):
    eager_cfg = config(tiny_cmnist_root, recipe, cuda_graphs=False, channels_last=False)
    eager = run_trial(eager_cfg, checkpoint_dir=str(tmp_path / "e"))
    cfg = config(tiny_cmnist_root, recipe)  # the default CUDA path: graphs + channels_last
    graphed = run_trial(cfg, checkpoint_dir=str(tmp_path / "g"))
    assert graphed["trial_hash"] == eager["trial_hash"]  # a speed knob, not a new trial
    for key in ("train_loss", "train_acc", "test_acc", "valid_acc"):
        # cuDNN may pick other algorithms per run: equal up to float noise over 3 epochs.
        assert graphed["final"][key] == pytest.approx(eager["final"][key], rel=0.03, abs=0.02)
    assert graphed["density"] == pytest.approx(eager["density"], abs=1e-6)
    assert graphed["train_flops"] == eager["train_flops"]


def test_graphed_trial_resumes(tiny_cmnist_root, tmp_path):
    cfg = config(tiny_cmnist_root, "paper", cuda_graphs=True)

    def stop(row):
        if row["epoch"] == 1:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError):
        run_trial(cfg, report=stop, checkpoint_dir=str(tmp_path / "t"))
    summary = run_trial(cfg, checkpoint_dir=str(tmp_path / "t"))
    store = TrialStore(str(tmp_path / "t"))
    assert [r["epoch"] for r in store.read_metrics()] == [1, 2, 3]
    assert store.read_state()["resumed_from_epoch"] == 1
    assert summary["final"]["train_acc"] > 0.3
