"""A finished trial's stored results are checked and repairable; stored files of the wrong shape
are one line (issue 23).

Faults: a metrics row lost at a line boundary while the trial runs; a finished trial's
``summary.json`` truncated; a garbled, emptied, shortened or edited ``metrics.jsonl``; a
garbled ``state.json``; a ledger of the wrong shape; the old error kept after a successful
retry. Each asserts what survives (rebuilt identically, listed as damaged with its repair
command, one line) and that ``status``, ``analyze`` and ``report`` still read the other trials.

The experiment is three 2-epoch ERM trials (width 8) on the tiny Colored MNIST bundle, trained
once by ``rest_sweep.local`` (no Ray); each test damages a copy. "Resume" is the same local
command again, which trains what ``resume`` would (``service.unfinished``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from rest_sweep.local import run_local
from rest_sweep.service import unfinished
from rest_sweep.sweep_status import status
from tests.fixtures.data import cpu_config
from tests.reliability.helpers import assert_one_line_error, run_main
from trainables.config import TrialConfig
from trainables.results import (
    CHECKPOINT_DIR,
    METRICS_DAMAGED_FILE,
    SUMMARY_DAMAGED_FILE,
    ExperimentStore,
    TrialStore,
)
from trainables.train import run_trial

pytestmark = pytest.mark.reliability

GRID = """name: rel23
fixed: {dataset: cmnist, ratio: 1.0, epochs: 2, width: 8, update_frequency: 4}
axes: {seed: [41, 42, 43]}
methods:
  erm: {}
"""
VOLATILE = {"epoch_time_s", "attempt"}


def stable(rows):
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]


# ---------------------------------------------------------------------- the experiment


@pytest.fixture(scope="module")
def pristine(tiny_cmnist_root, tmp_path_factory) -> Path:
    """Three finished trials, trained once; tests damage copies of it."""
    base = tmp_path_factory.mktemp("stored_results")
    (base / "rel23.yaml").write_text(GRID)
    result = run_local(
        [str(base / "rel23.yaml")],
        str(tiny_cmnist_root),
        str(base / "storage"),
        "exp",
        device="cpu",
        quiet=True,
    )
    assert result.counts["finished"] == 3
    return base


class Exp:
    """A copy of the pristine experiment, with what its files held before any damage."""

    def __init__(self, pristine: Path, tmp_path: Path, data_root: Path) -> None:
        shutil.copytree(pristine / "storage", tmp_path / "storage")
        self.grid = str(pristine / "rel23.yaml")
        self.data_root = str(data_root)
        self.storage = str(tmp_path / "storage")
        self.store = ExperimentStore(self.storage, "exp")
        self.ledger = self.store.read_ledger()
        self.hashes = list(self.ledger["order"])
        self.folders = [tmp_path / "storage" / "exp" / "trials" / h for h in self.hashes]
        self.metrics = [(f / "metrics.jsonl").read_bytes() for f in self.folders]
        self.summaries = [json.loads((f / "summary.json").read_text()) for f in self.folders]

    def args(self, *more: str) -> list[str]:
        return ["--storage", self.storage, "--name", "exp", *more]

    def resume(self):
        """What ``rest-sweep resume`` trains, without Ray: the same local command again."""
        return run_local([self.grid], self.data_root, self.storage, "exp", device="cpu", quiet=True)

    def unfinished(self) -> list[str]:
        return unfinished(self.store, self.store.read_ledger(), self.hashes)

    def others_untouched(self) -> None:
        for folder, metrics, summary in zip(
            self.folders[1:], self.metrics[1:], self.summaries[1:], strict=True
        ):
            assert (folder / "metrics.jsonl").read_bytes() == metrics
            assert json.loads((folder / "summary.json").read_text()) == summary


@pytest.fixture()
def exp(pristine, tmp_path, tiny_cmnist_root) -> Exp:
    return Exp(pristine, tmp_path, tiny_cmnist_root)


def analyze_lists_it_and_the_others(exp: Exp, tmp_path: Path, needle: str) -> None:
    """``analyze`` and ``report`` exit 0 with the other trials' results and the damaged trial
    listed with its repair command."""
    out = tmp_path / "analysis"
    code, text, err = run_main("analyze", *exp.args("--out", str(out), "--no-figures"))
    assert code == 0, err
    assert "damaged cmnist" in text and needle in text and "rest-sweep verify" in text
    trials = pd.read_parquet(out / "trials.parquet").set_index("trial_hash")
    epochs = pd.read_parquet(out / "epochs.parquet")
    assert trials.loc[exp.hashes[0], "status"] == "damaged"
    assert "--repair" in trials.loc[exp.hashes[0], "error"]
    assert (trials.loc[exp.hashes[1:], "status"] == "finished").all()
    assert sorted(epochs["trial_hash"].unique()) == sorted(exp.hashes[1:])
    assert len(epochs) == 2 * 2 and pd.isna(trials.loc[exp.hashes[0], "final_test_acc"])
    code, _, err = run_main("report", *exp.args("--out", str(out)))
    assert code == 0, err
    page = (out / "report.html").read_text()
    assert "Damaged trials" in page and exp.hashes[0] in page


# ---------------------------------------------------------------------- a row lost while running


def tiny_config(root, **overrides) -> TrialConfig:
    values = dict(
        dataset="cmnist",
        ratio=5.0,
        method="erm",
        epochs=3,
        batch_size=256,
        data_root=str(root),
        device="cpu",
        seed=41,
        width=8,
    )
    values.update(overrides)
    return TrialConfig.from_recipe("paper", **values)


@pytest.fixture(scope="module")
def uninterrupted(tiny_cmnist_root, tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    run_trial(tiny_config(tiny_cmnist_root), checkpoint_dir=str(folder))
    return stable(TrialStore(str(folder)).read_metrics())


@pytest.mark.parametrize(
    ("after", "found"),
    [
        (2, "rows of epochs 1, 2 expected, found epochs 1; rewrote it"),
        (3, "rows of epochs 1..3 expected, found epochs 1, 2; rewrote it"),
    ],
    ids=["mid-run", "last-epoch"],
)
def test_a_row_lost_at_a_line_boundary_while_running_is_rebuilt(
    tiny_cmnist_root, tmp_path, uninterrupted, after, found
):
    """The last row vanishes after epoch ``after`` (a lost NFS write): the next row's write
    (or the check before summary.json) sees the gap and rewrites the file from the rows the
    attempt holds, with a warning; never epochs [1, 3]."""
    metrics = tmp_path / "metrics.jsonl"

    def lose_last_row(row):
        if row["epoch"] == after:
            lines = metrics.read_text().splitlines(keepends=True)
            metrics.write_text("".join(lines[:-1]))

    with pytest.warns(RuntimeWarning, match="nothing lost") as caught:
        run_trial(tiny_config(tiny_cmnist_root), report=lose_last_row, checkpoint_dir=str(tmp_path))
    assert any(found in str(w.message) for w in caught), [str(w.message) for w in caught]
    store = TrialStore(str(tmp_path))
    assert stable(store.read_metrics()) == uninterrupted  # epochs 1..3, none skipped
    assert store.check_results().intact  # the summary's checksum is over the rebuilt file
    assert found in store.read_state()["warning"]


# ---------------------------------------------------------------------- damaged finished trials


def _garble_line(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[0] = lines[0][: len(lines[0]) // 2] + "\n"
    path.write_text("".join(lines))


def _edit_row(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1]["test_acc"] = 0.999
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


DAMAGE = {
    "garbled-line": (_garble_line, "metrics.jsonl line 1: not a metrics row"),
    "empty": (lambda p: p.write_text(""), "metrics.jsonl: no rows"),
    "row-missing": (  # the last row, removed at a line boundary
        lambda p: p.write_text(p.read_text().splitlines(keepends=True)[0]),
        "metrics.jsonl: rows of epochs 1..2 expected, found epochs 1, missing 2",
    ),
    "edited-row": (_edit_row, "checksum mismatch"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_rows_are_listed_then_rebuilt_from_the_checkpoint(exp, tmp_path, damage):
    spoil, needle = DAMAGE[damage]
    spoil(exp.folders[0] / "metrics.jsonl")

    report = status(exp.storage, "exp")
    assert (report.finished, report.damaged, report.state) == (2, 1, "damaged")
    assert needle in report.damaged_trials[0]["problem"]
    code, text, _ = run_main("status", *exp.args())
    assert code == 0 and "damaged 1" in text and needle in text
    assert f"rest-sweep verify {' '.join(exp.args())} --repair" in text
    assert exp.unfinished() == [exp.hashes[0]]  # resume would run it, and only it
    analyze_lists_it_and_the_others(exp, tmp_path, needle)

    code, text, _ = run_main("verify", *exp.args())
    assert code == 1 and needle in text
    assert "--repair would: rebuild metrics.jsonl (epochs 1..2) from the checkpoint of epoch 2" in (
        text
    )
    code, text, _ = run_main("verify", *exp.args("--repair"))
    assert code == 0 and "repaired: rebuild metrics.jsonl" in text, text

    assert (exp.folders[0] / "metrics.jsonl").read_bytes() == exp.metrics[0]  # identical
    assert (exp.folders[0] / METRICS_DAMAGED_FILE).exists()  # the damaged file, kept
    assert status(exp.storage, "exp").finished == 3 and exp.unfinished() == []
    assert run_main("verify", *exp.args())[0] == 0
    exp.others_untouched()


def test_a_truncated_summary_is_set_aside_and_resume_rebuilds_it(exp, tmp_path):
    summary = exp.folders[0] / "summary.json"
    summary.write_text(summary.read_text()[:100])
    needle = "summary.json: unreadable"

    report = status(exp.storage, "exp")
    assert report.damaged == 1 and needle in report.damaged_trials[0]["problem"]
    analyze_lists_it_and_the_others(exp, tmp_path, needle)
    code, text, _ = run_main("verify", *exp.args())
    assert code == 1 and "retrains nothing: it rebuilds the summary" in text
    code, text, _ = run_main("verify", *exp.args("--repair"))
    assert code == 1 and "set aside for resume" in text and "rest-sweep resume" in text
    assert (exp.folders[0] / SUMMARY_DAMAGED_FILE).exists() and not summary.exists()
    after = status(exp.storage, "exp")
    assert after.damaged == 0 and after.pending == 1 and after.interrupted == 1

    result = exp.resume()
    assert result.launched == 1 and result.counts["finished"] == 3
    assert (exp.folders[0] / "metrics.jsonl").read_bytes() == exp.metrics[0]
    rebuilt = json.loads(summary.read_text())
    assert rebuilt.pop("attempts") == 2
    assert rebuilt == {k: v for k, v in exp.summaries[0].items() if k != "attempts"}
    exp.others_untouched()


def test_resume_alone_retrains_a_damaged_trial_whose_rows_no_checkpoint_holds(exp):
    """No checkpoint left (deleted by hand) and a garbled metrics.jsonl: ``resume`` (no
    ``verify`` first) runs exactly that trial again from epoch 1, with the same rows."""
    shutil.rmtree(exp.folders[0] / CHECKPOINT_DIR)
    _garble_line(exp.folders[0] / "metrics.jsonl")
    code, text, _ = run_main("verify", *exp.args())
    assert code == 1 and "from epoch 1 (no checkpoint holds its state)" in text
    assert exp.unfinished() == [exp.hashes[0]]

    result = exp.resume()
    assert result.launched == 1 and result.counts["finished"] == 3
    rows = TrialStore(str(exp.folders[0])).read_metrics()
    original = [json.loads(line) for line in exp.metrics[0].decode().splitlines()]
    assert stable(rows) == stable(original)  # retrained, bit-identical on the CPU
    assert (exp.folders[0] / SUMMARY_DAMAGED_FILE).exists()
    assert status(exp.storage, "exp").finished == 3
    exp.others_untouched()


def test_weights_only_trials_rebuild_their_rows_from_final_weights(tiny_cmnist_root, tmp_path):
    cfg = tiny_config(tiny_cmnist_root, epochs=2, final_checkpoint="weights")
    first = run_trial(cfg, checkpoint_dir=str(tmp_path))
    original = (tmp_path / "metrics.jsonl").read_bytes()
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.warns(RuntimeWarning, match=r"no rows.*rebuilt metrics\.jsonl.*final_weights"):
        again = run_trial(cfg, checkpoint_dir=str(tmp_path))
    assert again == first and (tmp_path / "metrics.jsonl").read_bytes() == original


# ---------------------------------------------------------------------- state.json and ledgers


def test_a_garbled_state_json_never_stops_status_list_or_the_trial(exp, tmp_path, tiny_cmnist_root):
    state = exp.folders[0] / "state.json"
    state.write_text('{"state": "fini')
    report = status(exp.storage, "exp")
    assert report.finished == 3 and "state.json: unreadable" in report.notes[0]["note"]
    code, text, err = run_main("list", "--storage", exp.storage)
    assert code == 0 and "exp" in text and "Traceback" not in err
    assert run_main("status", *exp.args())[0] == 0
    code, _, err = run_main("analyze", *exp.args("--out", str(tmp_path / "a"), "--no-figures"))
    assert code == 0, err
    code, text, _ = run_main("verify", *exp.args("--repair"))
    assert code == 0 and 'rewrite state.json as "finished"' in text
    assert json.loads(state.read_text())["state"] == "finished"

    # A trial that runs on with a garbled state.json: it continues from its checkpoint.
    folder = tmp_path / "trial"

    def crash(row):
        raise RuntimeError("crash after epoch 1")

    cfg = tiny_config(tiny_cmnist_root, epochs=2)
    with pytest.raises(RuntimeError):
        run_trial(cfg, report=crash, checkpoint_dir=str(folder))
    (folder / "state.json").write_bytes(b"\x00\xff garbage")
    run_trial(cfg, checkpoint_dir=str(folder))
    written = TrialStore(str(folder)).read_state()
    assert written["state"] == "finished" and written["resumed_from_epoch"] == 1


WRONG_SHAPES = {
    "trials-values": {"trials": {"abc": 5}},
    "launches-str": {"launches": "x"},
    "trials-list": {"trials": []},
    "launches-ints": {"launches": [5]},
    "launch-trials": {"trials": {}, "launches": [{"id": "L1", "trials": "abc"}]},
}


@pytest.mark.parametrize("shape", list(WRONG_SHAPES))
def test_a_ledger_of_the_wrong_shape_is_one_line(tmp_path, shape):
    storage = tmp_path / "s"
    ExperimentStore(str(storage), "good").write_ledger({"name": "good", "trials": {}})
    (storage / "bad").mkdir()
    (storage / "bad" / "experiment.json").write_text(json.dumps(WRONG_SHAPES[shape]))
    common = ["--storage", str(storage), "--name", "bad"]
    out = ["--out", str(tmp_path / "o")]
    for argv in (["status"], ["report", *out], ["analyze", *out], ["verify"]):
        code, _, err = run_main(*argv, *common)
        assert_one_line_error(code, err, "bad/experiment.json: unreadable ledger (wrong shape")
    code, out, err = run_main("list", "--storage", str(storage))
    assert code == 0 and "Traceback" not in err
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert rows["good"].split()[1] == "planned" and rows["bad"].split()[1] == "unreadable"


# ---------------------------------------------------------------------- a retry's old error


def test_a_successful_retry_clears_the_old_error(tiny_cmnist_root, tmp_path):
    cfg = tiny_config(tiny_cmnist_root, epochs=2)

    def crash(row):
        raise RuntimeError("crash after epoch 1")

    with pytest.raises(RuntimeError):
        run_trial(cfg, report=crash, checkpoint_dir=str(tmp_path))
    store = TrialStore(str(tmp_path))
    assert store.read_state()["error"] == "RuntimeError: crash after epoch 1"
    run_trial(cfg, checkpoint_dir=str(tmp_path))
    state = store.read_state()
    assert state["state"] == "finished" and state["error"] is None and not state["diverged"]
    assert state["last_error"] == "RuntimeError: crash after epoch 1"  # history, not current


# ---------------------------------------------------------------------- a staged trial


def test_a_damaged_staged_trial_is_rebuilt_from_its_stage_folders(tiny_cmnist_root, tmp_path):
    """A prune trial (two levels, each a stage folder): its garbled trial-level rows are rebuilt
    from the stages by ``verify --repair`` without training, identical; a damaged stage is
    rebuilt from its own checkpoint the same way."""
    cfg = cpu_config(tiny_cmnist_root, method="prune", epochs=1, seed=3, levels=1)
    store = ExperimentStore(str(tmp_path / "s"), "exp")
    store.write_ledger({"name": "exp", "trials": {cfg.trial_hash: cfg.to_dict()}, "launches": []})
    folder = tmp_path / "s" / "exp" / "trials" / cfg.trial_hash
    summary = run_trial(cfg, checkpoint_dir=str(folder))
    original = (folder / "metrics.jsonl").read_bytes()
    stages = {p: p.read_bytes() for p in (folder / "stages").rglob("*") if p.is_file()}
    common = ["--storage", str(tmp_path / "s"), "--name", "exp"]

    _garble_line(folder / "metrics.jsonl")
    assert status(str(tmp_path / "s"), "exp").damaged == 1
    code, text, _ = run_main("verify", *common)
    assert code == 1 and "rebuild metrics.jsonl and summary.json from the stage folders" in text
    code, text, _ = run_main("verify", *common, "--repair")
    assert code == 0 and "repaired" in text, text
    assert (folder / "metrics.jsonl").read_bytes() == original
    assert json.loads((folder / "summary.json").read_text()) == summary
    assert {p: p.read_bytes() for p in stages} == stages  # nothing retrained

    level = folder / "stages" / "level_0001"
    (level / "metrics.jsonl").write_text("")  # a stage's own rows: verify checks them too
    code, text, _ = run_main("verify", *common)
    assert code == 1 and "level_0001/metrics.jsonl: no rows" in text
    assert "stage level_0001: rebuild metrics.jsonl (epochs 1..1) from" in text
    assert "aside" not in text  # nothing to retrain: the stage's rows come back in place
    assert run_main("verify", *common, "--repair")[0] == 0
    assert {p: p.read_bytes() for p in stages} == stages
