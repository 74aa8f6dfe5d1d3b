"""One check shared by the method tests: a run interrupted after an epoch and resumed from its
folder ends with exactly the metrics of an uninterrupted run (CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trainables.config import TrialConfig
from trainables.train import run_trial

VOLATILE = {"epoch_time_s", "attempt"}


class _Stop(Exception):
    """Raised from the report callback to interrupt a trial after an epoch."""


def assert_resumes_exactly(
    cfg: TrialConfig, folder: Path, stop_at: int = 1
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``cfg`` whole and interrupted after epoch ``stop_at`` then resumed; assert the final
    rows (and training FLOPs) are equal; return both summaries (whole, resumed)."""
    whole = run_trial(cfg, checkpoint_dir=str(folder / "whole"))

    def stop(row: dict[str, Any]) -> None:
        if row["epoch"] == stop_at:
            raise _Stop

    with pytest.raises(_Stop):
        run_trial(cfg, report=stop, checkpoint_dir=str(folder / "split"))
    resumed = run_trial(cfg, checkpoint_dir=str(folder / "split"))
    assert {k: v for k, v in resumed["final"].items() if k not in VOLATILE} == {
        k: v for k, v in whole["final"].items() if k not in VOLATILE
    }
    assert resumed["train_flops"] == whole["train_flops"]
    return whole, resumed
