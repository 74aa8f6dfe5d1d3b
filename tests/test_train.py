"""The trial engine on real (tiny) Colored Fashion-MNIST: format, resume, masks, reweighting."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from rest_sweep.cli import main as cli_main
from trainables.config import TrialConfig
from trainables.data import Batch
from trainables.methods.base import Reweighted
from trainables.results import TrialStore
from trainables.train import run_trial
from trainables.train.metrics import GroupAccumulator

VOLATILE = {"epoch_time_s", "attempt"}


def make_config(root, **overrides) -> TrialConfig:
    values = dict(
        dataset="cmnist",
        ratio=1.0,
        method="rest",
        density=0.1,
        epochs=3,
        batch_size=256,
        update_frequency=4,
        data_root=str(root),
        device="cpu",
        seed=41,
        width=16,
    )
    values.update(overrides)
    return TrialConfig.from_recipe(values.pop("recipe", "paper"), **values)


def stable(rows):
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]


def test_group_accumulator_definitions():
    acc = GroupAccumulator(num_classes=2, device=torch.device("cpu"))
    # cells (y, b): (0,0) aligned x2 [1 right], (1,1) aligned x1 [right], (0,1) conflicting x1 [wrong]
    y = torch.tensor([0, 0, 1, 0])
    b = torch.tensor([0, 0, 1, 1])
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 2.0], [0.0, 2.0]])
    acc.update(logits, y, b, torch.tensor([1.0, 2.0, 3.0, 4.0]))
    m = acc.compute("test")
    assert m["test_acc"] == pytest.approx(2 / 4)
    assert m["test_acc_aligned"] == pytest.approx(2 / 3)
    assert m["test_acc_conflicting"] == 0.0
    assert m["test_worst_group_acc"] == 0.0
    assert m["test_unbiased_acc"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)  # 3 cells present
    assert m["test_loss"] == pytest.approx(2.5)


def test_run_trial_writes_the_result_format(tiny_cmnist_root, tmp_path):
    cfg = make_config(tiny_cmnist_root, epochs=2)
    seen = []
    summary = run_trial(cfg, report=seen.append, checkpoint_dir=str(tmp_path / "t"))
    store = TrialStore(str(tmp_path / "t"))
    rows = store.read_metrics()
    assert [r["epoch"] for r in rows] == [1, 2] and len(seen) == 2
    for key in (
        "train_loss",
        "train_acc",
        "valid_acc",
        "valid_acc_aligned",
        "valid_acc_conflicting",
        "valid_worst_group_acc",
        "valid_unbiased_acc",
        "test_acc",
        "test_acc_aligned",
        "test_acc_conflicting",
        "test_worst_group_acc",
        "test_unbiased_acc",
        "density",
        "train_flops",
        "lr",
        "epoch_time_s",
    ):
        assert key in rows[0], key
    assert rows[1]["train_flops"] > rows[0]["train_flops"] > 0
    assert summary["status"] == "finished" and store.read_state()["state"] == "finished"
    assert summary["density"] == pytest.approx(0.1, abs=1e-4)
    assert summary["nonzero_params"] < summary["total_params"]
    assert summary["inference_flops"] < summary["dense_inference_flops"]
    assert summary["train_flops"] < summary["dense_train_flops"]
    assert store.checkpoint_epochs() == [1, 2]
    assert json.loads((tmp_path / "t" / "config.json").read_text())["method"] == "rest"
    # Idempotent: a finished trial returns its summary and trains nothing.
    assert run_trial(cfg, checkpoint_dir=str(tmp_path / "t")) == summary


class Interrupt(RuntimeError):
    pass


def test_resume_gives_exactly_the_uninterrupted_metrics(tiny_cmnist_root, tmp_path):
    cfg = make_config(tiny_cmnist_root, epochs=3)
    straight = run_trial(cfg, checkpoint_dir=str(tmp_path / "straight"))

    def stop_after_first(row):
        if row["epoch"] == 1:
            raise Interrupt("simulated crash")

    with pytest.raises(Interrupt):
        run_trial(cfg, report=stop_after_first, checkpoint_dir=str(tmp_path / "resumed"))
    store = TrialStore(str(tmp_path / "resumed"))
    assert store.read_state()["state"] == "errored"
    assert "simulated crash" in store.read_error()
    resumed = run_trial(cfg, checkpoint_dir=str(tmp_path / "resumed"))
    assert store.read_state()["resumed_from_epoch"] == 1
    assert store.read_state()["attempt"] == 2
    assert stable(store.read_metrics()) == stable(
        TrialStore(str(tmp_path / "straight")).read_metrics()
    )
    assert resumed["train_flops"] == straight["train_flops"]
    assert resumed["selected"]["test_acc"] == straight["selected"]["test_acc"]


def test_resume_after_lost_rows_does_not_duplicate_epochs(tiny_cmnist_root, tmp_path):
    cfg = make_config(tiny_cmnist_root, epochs=2, method="erm", density=1.0)
    folder = str(tmp_path / "t")

    def crash(row):
        raise Interrupt("after epoch 1")

    with pytest.raises(Interrupt):
        run_trial(cfg, report=crash, checkpoint_dir=folder)
    store = TrialStore(folder)
    # A stale extra row (as if a previous attempt wrote epoch 2 but its checkpoint was lost).
    store.write_metrics([*store.read_metrics(), {"epoch": 2, "stale": True}])
    run_trial(cfg, checkpoint_dir=folder)
    rows = store.read_metrics()
    assert [r["epoch"] for r in rows] == [1, 2]
    assert "stale" not in rows[1]


def test_masked_weights_stay_zero_after_every_step(tiny_cmnist_root):
    from trainables.train.trial import Trial

    trial = Trial(make_config(tiny_cmnist_root, method="rigl", density=0.05, update_frequency=3))
    engine = trial.method.engine
    params = dict(trial.method.model.named_parameters())
    original_step = engine.step
    checked = []

    def checked_step(step):
        updated = original_step(step)
        for name, mask in engine.masks().items():
            assert torch.count_nonzero(params[name].detach()[~mask]) == 0, name
        checked.append(updated)
        return updated

    engine.step = checked_step
    trial.run_epoch(1)
    assert len(checked) == trial.steps_per_epoch and any(checked)  # an update happened too
    assert engine.density() == pytest.approx(0.05, abs=1e-4)


def _reweighter(reweight, upweight=30.0, normalise=False, train=None, mean_weight=1.0):
    """The reweighting hooks of a method, on a stand-in holding only what they read."""
    cfg = SimpleNamespace(reweight=reweight, upweight=upweight, reweight_normalise=normalise)
    return SimpleNamespace(cfg=cfg, ctx=SimpleNamespace(train=train), mean_weight=mean_weight)


def test_loss_reweighting_scales_conflicting_gradients():
    y, b = torch.tensor([0, 1]), torch.tensor([0, 0])
    batch = Batch(x=torch.zeros(2, 3, 1, 1), y=y, b=b, index=torch.arange(2))
    logits = torch.zeros(2, 2, requires_grad=True)
    losses = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    Reweighted.loss(_reweighter("loss"), losses, batch).backward()
    grad = logits.grad.abs().sum(dim=1)
    assert grad[1] / grad[0] == pytest.approx(30.0)
    plain = Reweighted.loss(_reweighter("resample"), losses.detach(), batch)
    assert plain.item() == pytest.approx(losses.detach().mean().item())
    # normalised by the training set's mean weight: the gradient scale of ERM's loss
    normalised = Reweighted.loss(
        _reweighter("loss", normalise=True, mean_weight=15.5), losses, batch
    )
    assert normalised.item() == pytest.approx((losses[0] + 30 * losses[1]).item() / 2 / 15.5)


def test_resampling_raises_the_share_of_conflicting_samples(tiny_cmnist_root):
    from trainables.data import DeviceSplit, load_split, make_transform

    split = load_split(str(tiny_cmnist_root), "cmnist", 1.0, "train")
    dev = DeviceSplit(split, "cpu", make_transform("none", "cmnist", train=True))
    p = 1.0 - dev.aligned.float().mean().item()
    weights = Reweighted.sampling_weights(_reweighter("resample", 80.0, train=dev))
    assert Reweighted.sampling_weights(_reweighter("loss", 80.0, train=dev)) is None
    drawn = torch.cat(
        [
            batch.index
            for epoch in range(1, 6)
            for batch in dev.batches(256, epoch=epoch, seed=1, shuffle=True, weights=weights)
        ]
    )
    share = 1.0 - dev.aligned[drawn].float().mean().item()
    expected = 80 * p / (80 * p + (1 - p))
    assert abs(share - expected) < 0.05, (share, expected)
    assert share > 10 * p


def test_cpu_training_is_deterministic_for_a_seed(tiny_cmnist_root, tmp_path):
    cfg = make_config(tiny_cmnist_root, epochs=1, method="set", density=0.2, update_frequency=3)
    a = run_trial(cfg, checkpoint_dir=str(tmp_path / "a"))
    b = run_trial(cfg, checkpoint_dir=str(tmp_path / "b"))
    assert stable([a["final"]]) == stable([b["final"]])


def test_rest_code_recipe_trains(tiny_cmnist_root, tmp_path):
    cfg = make_config(tiny_cmnist_root, recipe="rest-code", epochs=1, density=0.05)
    assert cfg.reweight == "resample" and cfg.optimizer == "sgd"
    summary = run_trial(cfg, checkpoint_dir=str(tmp_path / "t"))
    assert math.isfinite(summary["final"]["train_loss"])


def test_train_cli_writes_and_resumes(tiny_cmnist_root, tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        "--dataset",
        "cmnist",
        "--data-root",
        str(tiny_cmnist_root),
        "--ratio",
        "1pct",
        "--method",
        "rest",
        "--density",
        "0.05",
        "--seed",
        "41",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--no-progress",
        "--set",
        "update_frequency=5",
        "--set",
        "width=16",
    ]
    assert cli_main(args) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["density"] == pytest.approx(0.05, abs=1e-4)
    assert (out / "summary.json").exists() and (out / "metrics.jsonl").exists()
    assert cli_main(args) == 0  # finished: returns at once
    other = [*args[:-2], "--set", "update_frequency=7"]
    assert cli_main(other) == 2
    assert "holds trial" in capsys.readouterr().err


def test_train_cli_rejects_bad_values_in_one_line(tmp_path, capsys):
    code = cli_main(
        [
            "train",
            "--data-root",
            str(tmp_path),
            "--method",
            "rest",
            "--density",
            "2",
            "--out",
            str(tmp_path / "x"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "density" in err and "allowed" in err and "\n" not in err
