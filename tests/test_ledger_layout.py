"""The ledger in parts (``ExperimentStore``): an update touches only what it changes.

A heartbeat, a launch update, its end and an early stop each write one small file whatever the
number of planned trials; planning writes each trial once, and planning the same grid again
writes nothing; a ledger of the old one-file layout reads as before, resumes, and is rewritten
in parts by its first update.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from rest_sweep import ledger as ledgers
from rest_sweep import service
from rest_sweep.launch_settings import LaunchSettings
from rest_sweep.sweep_status import status
from search_spaces import Expansion, expand, resolve
from tests.reliability.helpers import write_grid
from trainables import results
from trainables.errors import UserError
from trainables.results import EXPERIMENT_FILE, ExperimentStore, Location


def _grid(folder: Path, seeds: int, densities=(0.05, 0.1), name: str = "g") -> Expansion:
    """``len(densities) * seeds * 2`` trials (static and rest), planned without data."""
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nfixed: {{dataset: cmnist, epochs: 2}}\n"
        f"axes: {{seed: {list(range(seeds))}, density: {list(densities)}}}\n"
        "methods: [static, rest]\n"
    )
    return expand(resolve(str(path)))


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bytes]]:
    """Every file the result format writes from now on: (path, bytes)."""
    calls: list[tuple[str, bytes]] = []
    real = Location.write_bytes

    def write_bytes(self: Location, name: str, data: bytes) -> None:
        calls.append((self.file(name), data))
        real(self, name, data)

    monkeypatch.setattr(Location, "write_bytes", write_bytes)
    return calls


def _update_costs(tmp_path: Path, seeds: int, written: list) -> dict[str, list[tuple[str, int]]]:
    store = ExperimentStore(str(tmp_path / f"s{seeds}"), "exp")
    expansion = _grid(tmp_path, seeds)
    ledgers.record_plan(store, expansion, "/data")
    hashes = list(expansion.by_hash())
    launch = ledgers.start_launch(store, "run", "g", hashes, LaunchSettings())
    costs = {}
    for name, update in {
        "heartbeat": lambda: ledgers.heartbeat(store, launch["id"]),
        "launch update": lambda: ledgers.update_launch(store, launch["id"], resources={"x": 1}),
        "early stop": lambda: ledgers.mark_stopped(store, hashes[0], launch["id"], 1),
        "end": lambda: ledgers.end_launch(store, launch["id"], "completed", {"trials": 1}),
    }.items():
        written.clear()
        update()
        costs[name] = [
            (str(Path(path).relative_to(store.loc.path)), len(data)) for path, data in written
        ]
    return costs


def test_an_update_writes_one_small_file_whatever_the_plan(tmp_path, written):
    small, large = _update_costs(tmp_path, 2, written), _update_costs(tmp_path, 200, written)
    assert len(ExperimentStore(str(tmp_path / "s200"), "exp").read_ledger()["trials"]) == 800
    for name in small:
        (path, size), (path_large, size_large) = (*small[name], *large[name])
        assert path.split("/")[0] == path_large.split("/")[0], (name, small, large)
        assert abs(size - size_large) < 16, (name, small, large)  # the tune path's length
        assert size < 1000, (name, size)  # a few hundred bytes: no trial list, no plan
    for name in ("heartbeat", "launch update", "end"):  # the launch record, not its trial list
        assert small[name][0][0].startswith("launches/L001-"), small[name]
        assert not small[name][0][0].endswith(".trials.json"), small[name]
    assert small["early stop"][0][0].startswith("stopped/"), small["early stop"]


def test_a_heartbeat_reads_no_plan(tmp_path, monkeypatch):
    store = ExperimentStore(str(tmp_path / "s"), "exp")
    ledgers.record_plan(store, _grid(tmp_path, 3), "/data")
    launch = ledgers.start_launch(store, "run", "g", [], LaunchSettings())
    read: list[str] = []
    real = Location.read_bytes

    def read_bytes(self: Location, name: str) -> bytes:
        read.append(str(Path(self.file(name)).relative_to(store.loc.path)))
        return real(self, name)

    monkeypatch.setattr(Location, "read_bytes", read_bytes)
    ledgers.heartbeat(store, launch["id"])
    assert read == [EXPERIMENT_FILE, f"launches/{launch['id']}.json"]


def test_planning_writes_each_trial_once(tmp_path, written, monkeypatch):
    monkeypatch.setattr(results, "PLAN_FILE_TRIALS", 7)  # several plan files
    store = ExperimentStore(str(tmp_path / "s"), "exp")
    expansion = _grid(tmp_path, 5)  # 20 trials: files of 7, 7 and 6

    def plan_files() -> dict[str, list[str]]:
        out = {}
        for path, data in written:
            if "/plan/" in path:
                out[Path(path).name] = [h for h, _ in json.loads(data)["trials"]]
        return out

    ledgers.record_plan(store, expansion, "/data")
    files = plan_files()
    assert sorted(files) == ["00000.json", "00001.json", "00002.json"]
    planned = [h for name in sorted(files) for h in files[name]]
    assert planned == [cfg.trial_hash for cfg in expansion.trials]  # each once, in plan order
    ledger = store.read_ledger()
    assert list(ledger["trials"]) == ledger["order"] == planned

    written.clear()
    ledgers.record_plan(store, expansion, "/data")  # the same plan again: nothing to write
    assert written == []

    written.clear()
    grown = _grid(tmp_path, 6)  # one more seed: 4 new trials appended
    ledgers.record_plan(store, grown, "/data")
    files = plan_files()
    assert sorted(files) == ["00002.json", "00003.json"]  # the full files are not rewritten
    new = set(grown.by_hash()) - set(expansion.by_hash())
    assert [h for name in sorted(files) for h in files[name]][-len(new) :] == [
        h for h in store.read_ledger()["order"] if h in new
    ]
    assert store.read_ledger()["order"][:20] == planned

    written.clear()  # a field outside the hash changed for every trial: each rewritten once
    again = expand(resolve(str(tmp_path / "g.yaml")), {"checkpoint_every": 2})
    ledgers.record_plan(store, again, "/data")
    rewritten = [h for hashes in plan_files().values() for h in hashes]
    assert sorted(rewritten) == sorted(store.read_ledger()["order"])
    assert {c["checkpoint_every"] for c in store.read_ledger()["trials"].values()} == {2}


def _old_ledger(store: ExperimentStore, expansion: Expansion, data_root: str) -> dict:
    """The one-file ledger of before the split (schema 1), as it was written."""
    configs = {cfg.trial_hash: cfg.to_dict() for cfg in expansion.trials}
    order = list(configs)
    first, second = order[:2]
    launch = {
        "id": "L001-20260101-000000",
        "command": "run",
        "grid": "tiny",
        "started": time.time() - 100,
        "heartbeat": time.time() - 100,
        "ended": time.time() - 50,
        "outcome": "interrupted",
        "host": "elsewhere",
        "pid": 1,
        "trials": order,
        "pack_size": 4,  # a key of older launch records
        "tune_path": f"{store.uri}/tune/L001-20260101-000000",
    }
    return {
        "name": store.name,
        "schema": 1,
        "trials": configs,
        "order": order,
        "grids": [{"grid": "tiny", "recipe": "paper", "overrides": {}, "count": len(order)}],
        "pending_rows": {},
        "stopped": {second: {"launch": launch["id"], "epoch": 1}},
        "data_root": data_root,
        "launches": [launch],
        "finished_marker": first,
    }


def test_an_old_one_file_ledger_reads_resumes_and_is_split_by_its_first_update(
    tmp_path, tiny_cmnist_root, monkeypatch
):
    store = ExperimentStore(str(tmp_path / "s"), "exp")
    expansion = expand(resolve(write_grid(tmp_path, (41, 42, 43))), {})
    old = _old_ledger(store, expansion, str(tiny_cmnist_root))
    store.loc.write_json(EXPERIMENT_FILE, old)  # exactly as the one-file ledger was written
    finished, stopped, fresh = old["order"]
    store.trial(finished).write_metrics([{"epoch": 1, "train_loss": 0.5}])
    store.trial(finished).write_summary({"status": "finished", "final": {"epoch": 1}})

    assert store.read_ledger() == json.loads(json.dumps(old))
    report = status(store.storage, "exp", close_dead=False)
    assert (report.planned, report.finished, report.stopped, report.pending) == (3, 1, 1, 1)

    class Launched(Exception):
        pass

    def capture(store, command, grid, hashes, settings, resources=None, **kw):
        raise Launched(hashes)

    with monkeypatch.context() as patch:
        patch.setattr(ledgers, "start_launch", capture)
        with pytest.raises(Launched) as launched:
            service.resume(store.storage, "exp")
    assert launched.value.args[0] == [fresh]  # not the finished one, not the stopped one
    assert not store.loc.child("plan").exists()  # reading never rewrites

    launch = ledgers.start_launch(store, "resume", "(all planned)", [fresh], LaunchSettings())
    head = json.loads(Path(store.loc.file(EXPERIMENT_FILE)).read_text())
    assert head["schema"] == 2 and "trials" not in head and "launches" not in head
    assert head["finished_marker"] == finished  # every other key stays in the head
    ledger = store.read_ledger()
    assert ledger["order"] == old["order"] and ledger["trials"] == json.loads(
        json.dumps(old["trials"])
    )
    assert ledger["stopped"] == old["stopped"] and ledger["data_root"] == old["data_root"]
    assert [x["id"] for x in ledger["launches"]] == [old["launches"][0]["id"], launch["id"]]
    assert ledger["launches"][0] == json.loads(json.dumps(old["launches"][0]))
    assert ledger["launches"][1]["trials"] == [fresh]
    report = status(store.storage, "exp")
    assert (report.planned, report.finished, report.stopped, report.live_launch) == (
        3,
        1,
        1,
        launch["id"],
    )


def test_a_whole_ledger_written_replaces_the_parts(tmp_path):
    store = ExperimentStore(str(tmp_path / "s"), "exp")
    ledgers.record_plan(store, _grid(tmp_path, 2), "/data")
    first = ledgers.start_launch(store, "run", "g", ["a"], LaunchSettings())
    ledgers.end_launch(store, first["id"], "completed", {})
    ledgers.mark_stopped(store, "a", first["id"], 1)
    store.write_ledger({"name": "exp", "trials": {}, "launches": []})  # a plain dict: all of it
    assert store.read_ledger() == {
        "name": "exp",
        "schema": 2,
        "trials": {},
        "order": [],
        "launches": [],
        "stopped": {},
    }
    assert sorted(p.name for p in Path(store.loc.path).rglob("*") if p.is_file()) == [
        EXPERIMENT_FILE
    ]


def test_a_dropped_or_discarded_launch_leaves_no_file(tmp_path):
    store = ExperimentStore(str(tmp_path / "s"), "exp")
    ledgers.record_plan(store, _grid(tmp_path, 2), "/data")
    launch = ledgers.start_launch(store, "run", "g", ["a", "b"], LaunchSettings())
    assert len(store.loc.child("launches").list_names()) == 2  # the record and its trial list
    ledgers.drop_launch(store, launch["id"])
    assert store.loc.child("launches").list_names() == []
    assert store.read_ledger()["launches"] == []
    ledgers.discard_if_unlaunched(store)
    assert not Path(store.loc.path).exists()


def test_a_garbled_ledger_file_is_one_line_naming_it(tmp_path):
    store = ExperimentStore(str(tmp_path / "s"), "exp")
    ledgers.record_plan(store, _grid(tmp_path, 2), "/data")
    launch = ledgers.start_launch(store, "run", "g", [], LaunchSettings())
    plan = Path(store.loc.file("plan/00000.json"))
    plan.write_text(plan.read_text()[:100])
    with pytest.raises(UserError, match=r"exp/plan/00000.json: unreadable ledger") as info:
        store.read_ledger()
    assert "\n" not in str(info.value)
    ledgers.heartbeat(store, launch["id"])  # updates that never read the plan go on
    Path(store.loc.file(f"launches/{launch['id']}.json")).write_text("[1]")
    with pytest.raises(UserError, match=r"launches/L001-.*\.json: unreadable ledger"):
        store.read_ledger(("launches",))
