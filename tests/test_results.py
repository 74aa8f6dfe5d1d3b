"""The on-disk result format: atomic writes, de-duplicated metrics, checkpoint retention."""

from __future__ import annotations

import pyarrow.fs as pafs
import pytest

from trainables.results import ExperimentStore, Location, TrialStore, list_experiments


def test_metrics_are_one_row_per_epoch_last_write_wins(tmp_path):
    store = TrialStore(str(tmp_path / "t"))
    store.append_metrics({"epoch": 1, "x": 1})
    store.append_metrics({"epoch": 2, "x": 2})
    store.append_metrics({"epoch": 2, "x": 3})  # a retried epoch replaces, never duplicates
    assert store.read_metrics() == [{"epoch": 1, "x": 1}, {"epoch": 2, "x": 3}]
    store.append_metrics({"epoch": 1, "x": 9})  # going back truncates later epochs
    assert store.read_metrics() == [{"epoch": 1, "x": 9}]


def test_writes_leave_no_temporary_files(tmp_path):
    loc = Location.of(str(tmp_path / "d"))
    loc.write_json("a.json", {"k": 1})
    loc.write_json("a.json", {"k": 2})
    assert loc.read_json("a.json") == {"k": 2}
    assert loc.list_names() == ["a.json"]


def test_checkpoints_keep_the_newest_and_skip_truncated_ones(tmp_path):
    store = TrialStore(str(tmp_path / "t"), keep_checkpoints=2)
    for epoch in (1, 2, 3):
        store.save_checkpoint(epoch, {"epoch": epoch})
    assert store.checkpoint_epochs() == [2, 3]
    # A crash mid-write on a filesystem without atomic rename leaves a truncated file.
    (tmp_path / "t" / "checkpoints" / "epoch_0004.pt").write_bytes(b"\x80\x02trunc")
    with pytest.warns(RuntimeWarning, match="epoch_0004.pt: cannot load"):
        epoch, state = store.load_latest_checkpoint()
    assert (epoch, state["epoch"]) == (3, 3)


def test_a_stale_unloadable_later_checkpoint_never_outranks_new_ones(tmp_path):
    # keep 1, a garbled epoch 50 and training restarted from scratch: every new checkpoint
    # must survive (pruning by epoch number alone would delete each one right after writing).
    store = TrialStore(str(tmp_path / "t"), keep_checkpoints=1)
    store.checkpoints.write_bytes(store.checkpoint_name(50), b"garbled")
    with pytest.warns(RuntimeWarning):
        assert store.load_latest_checkpoint() is None
    store.save_checkpoint(5, {"epoch": 5})
    assert store.checkpoint_epochs() == [5]
    store.save_checkpoint(10, {"epoch": 10})
    assert store.checkpoint_epochs() == [10]
    assert store.load_latest_checkpoint()[0] == 10


def test_state_and_summary_round_trip(tmp_path):
    store = TrialStore(str(tmp_path / "t"))
    assert not store.is_finished() and store.read_state() is None
    store.write_state("running", attempt=1)
    store.write_state("errored", error="boom")
    state = store.read_state()
    assert state["state"] == "errored" and state["attempt"] == 1 and state["error"] == "boom"
    store.write_summary({"status": "finished"})
    assert store.is_finished()


def test_experiment_store_on_a_uri_filesystem(tmp_path):
    uri = f"file://{tmp_path}/storage"
    exp = ExperimentStore(uri, "exp1")
    ledger = exp.read_ledger()
    ledger["trials"]["abc"] = {"method": "erm"}
    exp.write_ledger(ledger)
    exp.trial("abc").write_summary({"ok": True})
    assert list_experiments(uri) == ["exp1"]
    assert ExperimentStore(str(tmp_path / "storage"), "exp1").trial("abc").is_finished()
    fs, path = pafs.FileSystem.from_uri(f"{uri}/exp1/trials/abc/summary.json")
    assert fs.get_file_info(path).type == pafs.FileType.File
