"""Trial-level faults without Ray: divergence, a broken metrics.jsonl, stale temporaries, ENOSPC.

Each drives ``run_trial`` on the tiny real Colored Fashion-MNIST bundle (1-2 epochs of ERM).
"""

from __future__ import annotations

import errno
import io
import os
import time

import pytest
import torch

from trainables.config import TrialConfig
from trainables.errors import DivergenceError
from trainables.results import CHECKPOINT_ROWS, Location, MetricsFileError, TrialStore
from trainables.train import run_trial

pytestmark = pytest.mark.reliability
VOLATILE = {"epoch_time_s", "attempt"}


def config(root, **overrides) -> TrialConfig:
    values = dict(
        dataset="cmnist",
        ratio=5.0,
        method="erm",
        epochs=2,
        batch_size=256,
        data_root=str(root),
        device="cpu",
        seed=41,
        width=16,
    )
    values.update(overrides)
    return TrialConfig.from_recipe("paper", **values)


def stable(rows):
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]


def crash_after_epoch_1(row):
    if row["epoch"] == 1:
        raise RuntimeError("crash after epoch 1")


@pytest.fixture(scope="module")
def uninterrupted(tiny_cmnist_root, tmp_path_factory):
    """The metrics of an uninterrupted 2-epoch run (the reference for every recovery)."""
    folder = tmp_path_factory.mktemp("reference")
    run_trial(config(tiny_cmnist_root), checkpoint_dir=str(folder))
    return stable(TrialStore(str(folder)).read_metrics())


def interrupted_after_epoch_1(root, folder) -> TrialStore:
    with pytest.raises(RuntimeError, match="crash after epoch 1"):
        run_trial(config(root), report=crash_after_epoch_1, checkpoint_dir=str(folder))
    store = TrialStore(str(folder))
    assert store.checkpoint_epochs() == [1]
    return store


def test_nan_loss_stops_the_trial_with_the_epoch_and_step(tiny_cmnist_root, tmp_path):
    # lr 1e30: the first step sends the weights to inf, the second step's loss is NaN.
    cfg = config(tiny_cmnist_root, lr=1e30)
    with pytest.raises(DivergenceError, match=r"^non-finite loss at epoch 1 step 2$"):
        run_trial(cfg, checkpoint_dir=str(tmp_path))
    store = TrialStore(str(tmp_path))
    state = store.read_state()
    assert state["state"] == "errored" and state["diverged"] is True
    assert state["error"] == "non-finite loss at epoch 1 step 2"  # what resume keys on
    assert store.read_metrics() == [] and store.checkpoint_epochs() == []
    assert "DivergenceError" in store.read_error()


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_broken_metrics_file_is_rebuilt_from_the_checkpoint(
    tiny_cmnist_root, tmp_path, uninterrupted, damage
):
    store = interrupted_after_epoch_1(tiny_cmnist_root, tmp_path)
    metrics = tmp_path / "metrics.jsonl"
    if damage == "truncated":
        metrics.write_text(metrics.read_text()[:40])
    else:
        metrics.unlink()

    with pytest.warns(RuntimeWarning, match=r"metrics\.jsonl.*rebuilt epochs 1\.\.1"):
        run_trial(config(tiny_cmnist_root), checkpoint_dir=str(tmp_path))

    assert stable(store.read_metrics()) == uninterrupted  # nothing lost, nothing duplicated
    assert store.read_state()["resumed_from_epoch"] == 1


def test_metrics_lost_with_no_rows_in_checkpoint_restarts_once(
    tiny_cmnist_root, tmp_path, uninterrupted
):
    store = interrupted_after_epoch_1(tiny_cmnist_root, tmp_path)
    # A checkpoint written before rows were kept in it, next to a garbled metrics file.
    path = tmp_path / "checkpoints" / "epoch_0001.pt"
    state = torch.load(path, weights_only=False)
    del state[CHECKPOINT_ROWS]
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path.write_bytes(buffer.getvalue())
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2, oops\n')

    with pytest.warns(RuntimeWarning, match=r"metrics\.jsonl line 2: .*restarts from epoch 1"):
        run_trial(config(tiny_cmnist_root), checkpoint_dir=str(tmp_path))

    assert stable(store.read_metrics()) == uninterrupted  # retrained from scratch, same result
    assert store.read_state()["resumed_from_epoch"] == 0
    assert "restarts from epoch 1" in store.read_state()["warning"]
    assert run_trial(config(tiny_cmnist_root), checkpoint_dir=str(tmp_path))["epochs"] == 2


def test_metrics_json_error_names_the_file_and_line(tmp_path):
    store = TrialStore(str(tmp_path))
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": 0.5}\n{"epoch": 2,\n')
    with pytest.raises(MetricsFileError) as caught:
        store.read_metrics()
    assert str(caught.value).startswith(f"{tmp_path / 'metrics.jsonl'} line 2: ")
    assert caught.value.rows == [{"epoch": 1, "train_loss": 0.5}]


def test_stale_temporaries_are_removed_when_a_trial_starts(tiny_cmnist_root, tmp_path):
    store = interrupted_after_epoch_1(tiny_cmnist_root, tmp_path)
    old = time.time() - 3600
    stale = [
        tmp_path / ".state.json.0123abcd.tmp",
        tmp_path / "checkpoints" / ".epoch_0002.pt.89abcdef.tmp",
    ]
    fresh = tmp_path / "checkpoints" / ".epoch_0003.pt.fedcba98.tmp"  # a live writer's
    other = tmp_path / ".notes.tmp"  # not a write_bytes temporary
    for path in [*stale, fresh, other]:
        path.write_bytes(b"partial")
    for path in [*stale, other]:
        os.utime(path, (old, old))

    assert sorted(store.remove_stale_temporaries()) == sorted(str(p) for p in stale)
    assert fresh.exists() and other.exists()

    stale[0].write_bytes(b"partial")
    os.utime(stale[0], (old, old))
    run_trial(config(tiny_cmnist_root), checkpoint_dir=str(tmp_path))  # resumes and cleans
    assert not stale[0].exists() and store.is_finished()


def test_full_disk_while_recording_raises_the_original_error(
    tiny_cmnist_root, tmp_path, monkeypatch
):
    real_write = Location.write_bytes
    disk_full = []

    def write_bytes(self, name, data):
        if disk_full:
            raise OSError(errno.ENOSPC, "No space left on device (recording)")
        return real_write(self, name, data)

    def fill_disk(row):
        disk_full.append(True)
        raise OSError(errno.ENOSPC, "No space left on device (the epoch's write)")

    monkeypatch.setattr(Location, "write_bytes", write_bytes)
    with pytest.raises(OSError, match=r"the epoch's write") as caught:
        run_trial(
            config(tiny_cmnist_root, epochs=1), report=fill_disk, checkpoint_dir=str(tmp_path)
        )
    assert caught.value.errno == errno.ENOSPC
