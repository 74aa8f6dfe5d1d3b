"""The method plug-in API: a method written outside the trial core (here, in a test) trains,
keeps per-sample state indexed by the batch's sample indices, and resumes bit-for-bit."""

from __future__ import annotations

import pytest
import torch

from trainables.config import TrialConfig
from trainables.methods import METHODS, Method, MethodInfo
from trainables.train import run_trial


class LossEmaWeighted(Method):
    """Up-weights samples whose running (EMA) loss is high, as LfF's relative difficulty does:
    per-sample state of the whole training split, updated inside the step by sample index."""

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.ema = torch.zeros(ctx.train.n, device=ctx.device)

    def loss(self, losses, batch):
        updated = 0.7 * self.ema[batch.index] + 0.3 * losses.detach()
        self.ema.index_copy_(0, batch.index, updated)
        weights = updated / (updated.mean() + 1e-8)
        return (losses * weights).mean()

    def graph_state(self):
        return [self.ema]

    def state_dict(self):
        return {**super().state_dict(), "ema": self.ema.cpu().clone()}

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        self.ema.copy_(state["ema"])


@pytest.fixture
def ema_method(monkeypatch: pytest.MonkeyPatch) -> str:
    info = MethodInfo("ema_test", "test: EMA-loss weighting", LossEmaWeighted, labels="none")
    monkeypatch.setitem(METHODS._items, info.name, info)
    return info.name


def _config(root, method: str) -> TrialConfig:
    return TrialConfig.from_recipe(
        "paper", method=method, epochs=2, data_root=str(root), device="cpu", width=8, seed=3
    )


def test_a_plugged_in_method_trains_and_resumes_exactly(tiny_cmnist_root, tmp_path, ema_method):
    cfg = _config(tiny_cmnist_root, ema_method)
    whole = run_trial(cfg, checkpoint_dir=str(tmp_path / "whole"))

    class Stop(Exception):
        pass

    def stop_after_first(row):
        if row["epoch"] == 1:
            raise Stop

    with pytest.raises(Stop):
        run_trial(cfg, report=stop_after_first, checkpoint_dir=str(tmp_path / "split"))
    resumed = run_trial(cfg, checkpoint_dir=str(tmp_path / "split"))
    volatile = {"epoch_time_s", "attempt"}
    assert {k: v for k, v in resumed["final"].items() if k not in volatile} == {
        k: v for k, v in whole["final"].items() if k not in volatile
    }
    assert resumed["labels_used"] == "none"
    # the method's state really changed the training: ERM on the same seed ends elsewhere
    erm = run_trial(_config(tiny_cmnist_root, "erm"), checkpoint_dir=str(tmp_path / "erm"))
    assert erm["final"]["train_loss"] != whole["final"]["train_loss"]
