"""Fused trial groups (``trainables/train/fused.py``) against the same trials run alone.

Real tiny Colored MNIST on the CPU. A fused member computes the solo arithmetic with other
kernels (vmap turns the convolutions into one grouped convolution and BatchNorm into batched
reductions), so sums round differently: losses agree to ~1e-8 here, not bit for bit. The
tolerances below are that rounding, with room: losses to 1e-5 relative; train accuracy to one
sample; evaluation accuracies to 1 % (after three epochs an image or two of the 300
validation images sits close enough to the decision boundary to flip); masks exactly or, where a near-tie in |w| or |grad| falls the other way under
rounding, at no more than 0.1 % of a layer's positions; each layer's weights to 1 % relative L2
distance (measured: at most 0.4 % after three epochs).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
import torch

from tests.fixtures.data import cpu_config
from trainables.fusion import fuse_groups, fuse_key
from trainables.results import TrialStore
from trainables.train import run_trial
from trainables.train.fused import run_group

LOSS_RTOL = 1e-5
MASK_FLIPS = 0.001
EVAL_ATOL = 0.01
WEIGHT_DRIFT = (
    1e-2  # relative L2 distance of a layer's weights (measured: at most 0.4 %, a BatchNorm bias)
)


def configs(root, epochs: int = 2, **overrides):
    """RigL, REST (two densities) and ERM + reweighting: one fuse key, mask updates every 3
    steps (8 steps per epoch at 2000 samples and batch 256)."""
    common = dict(epochs=epochs, update_frequency=3, checkpoint_every=1, keep_checkpoints=3)
    common.update(overrides)
    return [
        cpu_config(root, method="rigl", density=0.1, seed=0, **common),
        cpu_config(root, method="rest", density=0.1, seed=1, **common),
        cpu_config(root, method="rest", density=0.3, seed=2, **common),
        cpu_config(root, method="erm_rw", seed=3, **common),
    ]


def last_checkpoint(folder: Path) -> dict:
    loaded = TrialStore(str(folder)).load_latest_checkpoint()
    assert loaded is not None
    return loaded[1]


def assert_same_trial(solo: Path, fused: Path) -> None:
    """The fused folder holds the solo folder's rows and final state, within rounding."""
    rows_solo = TrialStore(str(solo)).read_metrics()
    rows_fused = TrialStore(str(fused)).read_metrics()
    assert [r["epoch"] for r in rows_fused] == [r["epoch"] for r in rows_solo]
    n_train = 2000
    for a, b in zip(rows_solo, rows_fused, strict=True):
        assert math.isclose(a["train_loss"], b["train_loss"], rel_tol=LOSS_RTOL)
        assert abs(a["train_acc"] - b["train_acc"]) <= 1 / n_train + 1e-12
        for key in ("valid_acc", "test_acc", "test_unbiased_acc"):
            if key in a:
                assert abs(a[key] - b[key]) <= EVAL_ATOL, key
        assert a["density"] == b["density"]
        assert math.isclose(a["train_flops"], b["train_flops"], rel_tol=1e-9)
    state_solo, state_fused = last_checkpoint(solo), last_checkpoint(fused)
    assert state_solo["step"] == state_fused["step"]
    if state_solo["engine"] is not None:
        assert state_solo["engine"]["updates"] == state_fused["engine"]["updates"] > 0
        for name, mask in state_solo["engine"]["masks"].items():
            other = state_fused["engine"]["masks"][name]
            flips = int((mask != other).sum())
            assert flips <= MASK_FLIPS * mask.numel(), (name, flips)
    for name, weight in state_solo["model"].items():
        other = state_fused["model"][name]
        assert other.shape == weight.shape
        if weight.is_floating_point():
            drift = float((weight - other).norm() / weight.norm().clamp_min(1e-12))
            assert drift <= WEIGHT_DRIFT, (name, drift)
        else:  # BatchNorm's num_batches_tracked: each member counts its own steps
            assert torch.equal(weight, other), name


def test_rigl_rest_and_erm_rw_fused_equal_their_solo_runs(tiny_cmnist_root, tmp_path):
    trials = configs(tiny_cmnist_root)
    assert len(fuse_groups(trials, 4)) == 1
    for cfg in trials:
        run_trial(cfg, checkpoint_dir=str(tmp_path / "solo" / cfg.trial_hash))
    results = run_group(trials, [str(tmp_path / "fused" / c.trial_hash) for c in trials])
    for cfg, result in zip(trials, results, strict=True):
        assert isinstance(result, dict), result
        assert result["status"] == "finished"
        assert_same_trial(tmp_path / "solo" / cfg.trial_hash, tmp_path / "fused" / cfg.trial_hash)
        assert result["fused"] == 4
    assert_own_weights_only(
        tmp_path / "solo" / trials[0].trial_hash, tmp_path / "fused" / trials[0].trial_hash
    )


def assert_own_weights_only(solo: Path, fused: Path) -> None:
    """A fused member's weights are slices of the group's stacks; its checkpoint must not carry
    the other members' weights (torch.save writes a view's whole storage)."""
    solo_store, fused_store = TrialStore(str(solo)), TrialStore(str(fused))
    name = solo_store.checkpoint_name(solo_store.checkpoint_epochs()[-1])
    size_solo = len(solo_store.checkpoints.read_bytes(name))
    size_fused = len(fused_store.checkpoints.read_bytes(name))
    assert size_fused <= size_solo * 1.05
    state = torch.load(io.BytesIO(fused_store.checkpoints.read_bytes(name)), weights_only=False)
    for weight in state["model"].values():
        assert weight.untyped_storage().nbytes() == weight.numel() * weight.element_size()


class Stop(Exception):
    """The test's stand-in for a killed group, raised from a member's report."""


def test_a_group_resumes_as_any_grouping(tiny_cmnist_root, tmp_path):
    """Stopped after epoch 2 (checkpoints every epoch), the group resumes split: one trial
    alone, the other two fused, one of those from an older checkpoint (it trains an epoch
    alone, then fuses). Every folder ends as the uninterrupted solo run's."""
    trials = [configs(tiny_cmnist_root, epochs=3)[i] for i in (0, 1, 3)]
    for cfg in trials:
        run_trial(cfg, checkpoint_dir=str(tmp_path / "solo" / cfg.trial_hash))
    folders = [str(tmp_path / "fused" / c.trial_hash) for c in trials]

    def stop_at_2(row):
        if row["epoch"] == 2:
            raise Stop("stopped")

    first = run_group(trials, folders, reports=[stop_at_2] * len(trials))
    assert all(isinstance(r, Stop) for r in first)
    for folder in folders:
        assert TrialStore(folder).checkpoint_epochs() == [1, 2]
    # One member goes back to its checkpoint of epoch 1.
    behind = TrialStore(folders[2])
    behind.checkpoints.delete(behind.checkpoint_name(2))
    run_trial(trials[0], checkpoint_dir=folders[0])
    rest = run_group(trials[1:], folders[1:])
    assert all(isinstance(r, dict) for r in rest), rest
    for cfg, folder in zip(trials, folders, strict=True):
        assert_same_trial(tmp_path / "solo" / cfg.trial_hash, Path(folder))
        assert TrialStore(folder).read_state()["attempt"] == 2


def test_a_diverging_member_fails_alone(tiny_cmnist_root, tmp_path):
    trials = configs(tiny_cmnist_root, epochs=1)[:3]
    diverging = cpu_config(
        tiny_cmnist_root, method="rigl", density=0.1, seed=9, epochs=1, update_frequency=3, lr=1e30
    )
    group = [*trials, diverging]
    assert len({fuse_key(c) for c in group}) == 1
    results = run_group(group, [str(tmp_path / c.trial_hash) for c in group])
    assert all(isinstance(r, dict) for r in results[:3])
    assert "non-finite loss" in str(results[3])
    assert TrialStore(str(tmp_path / diverging.trial_hash)).read_state()["state"] == "errored"


def test_only_same_shape_fusable_trials_share_a_group(tiny_cmnist_root):
    a = cpu_config(tiny_cmnist_root, method="rigl", density=0.1, seed=0)
    b = cpu_config(tiny_cmnist_root, method="rest", density=0.2, seed=1, lr=0.002)
    other_data = cpu_config(tiny_cmnist_root, method="rigl", density=0.1, ratio=5.0)
    other_width = cpu_config(tiny_cmnist_root, method="rigl", density=0.1, width=16)
    unfusable = cpu_config(tiny_cmnist_root, method="lff")
    assert fuse_key(a) == fuse_key(b) is not None
    assert fuse_key(unfusable) is None
    groups = fuse_groups([a, other_data, b, unfusable, other_width], 4)
    assert [[c.trial_hash for c in g] for g in groups] == [
        [a.trial_hash, b.trial_hash],
        [other_data.trial_hash],
        [unfusable.trial_hash],
        [other_width.trial_hash],
    ]
    assert [len(g) for g in fuse_groups([a, b, a.replace(seed=5)], 2)] == [2, 1]
    assert [len(g) for g in fuse_groups([a, b], 1)] == [1, 1]
    with pytest.raises(ValueError, match="one fuse_key"):
        run_group([a, other_data], ["x", "y"])


GRID = """\
name: tiny-fused
description: RigL and REST, 2 densities, 1 epoch (fused launcher test)
recipe: paper
fixed:
  dataset: cmnist
  ratio: 1.0
  epochs: 1
  width: 8
axes:
  seed: [7]
methods:
  rigl:
    axes:
      density: [0.05, 0.2]
  rest:
    axes:
      density: [0.05, 0.2]
  lff: {}
"""


def test_the_no_ray_launcher_fuses_and_a_later_run_trains_nothing(
    tiny_cmnist_root, tmp_path, capsys
):
    from rest_sweep.local import run_local

    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID)
    storage = str(tmp_path / "runs")
    result = run_local([str(grid)], str(tiny_cmnist_root), storage, "tiny", device="cpu", fuse=3)
    out = capsys.readouterr().out
    assert "5 of 5 trials in 3 fused group(s) of up to 3" in out  # 3 + 1 fusable, lff alone
    assert result.counts["finished"] == 5 and result.outcome == "completed"
    again = run_local([str(grid)], str(tiny_cmnist_root), storage, "tiny", device="cpu", fuse=3)
    assert again.outcome == "nothing to run" and again.counts["finished"] == 5


def test_a_method_that_declares_can_fuse_has_the_base_step():
    """The fused step replays the base ``Method.train_step`` (one network, the method's
    ``loss``, its one optimizer): a method that overrides the step must not declare it."""
    from trainables.methods import METHODS
    from trainables.methods.base import Method

    fusable = []
    for name in METHODS:
        info = METHODS.get(name)
        if not info.can_fuse:
            continue
        fusable.append(name)
        assert info.implementation.train_step is Method.train_step, name
        assert info.networks == 1 and info.stages is None, name
        for hook in ("modules", "optimizers"):
            assert getattr(info.implementation, hook) is getattr(Method, hook), (name, hook)
    assert sorted(fusable) == ["erm", "erm_rw", "rest", "rigl", "set", "static"]


def test_optimizer_state_takes_its_weights_layout_after_a_load():
    """A trial alone on CUDA keeps channels_last weights and state; in a group its weights are
    contiguous slices. CUDA's fused optimizer kernels need weight, gradient and state to share
    strides, so a state saved in one layout is re-laid out for the other when loaded."""
    from trainables.train.optim import match_state_layout

    weight = torch.nn.Parameter(
        torch.randn(4, 3, 5, 5).contiguous(memory_format=torch.channels_last)
    )
    saved = torch.optim.SGD([weight], lr=0.1, momentum=0.9)
    weight.grad = torch.ones_like(weight)
    saved.step()
    state = saved.state_dict()
    contiguous = torch.nn.Parameter(weight.detach().contiguous())
    loaded = torch.optim.SGD([contiguous], lr=0.1, momentum=0.9)
    loaded.load_state_dict(state)
    buffer = loaded.state[contiguous]["momentum_buffer"]
    assert buffer.stride() != contiguous.stride()  # what load_state_dict leaves
    match_state_layout(loaded)
    moved = loaded.state[contiguous]["momentum_buffer"]
    assert moved.stride() == contiguous.stride() and torch.equal(moved, buffer)


def test_cudnn_autotune_stays_on_for_training_when_members_evaluate_at_once():
    """Members of a group evaluate in threads at once; each turns cuDNN autotuning off around
    its evaluation. Interleaved enter/exit must leave it as it was for the next training."""
    import threading

    from trainables.train.trial import cudnn_autotune_off

    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    entered, release = threading.Barrier(2), threading.Event()

    def evaluate(first: bool) -> None:
        # A enters, B enters (it finds the flag off), A leaves, then B leaves: saving and
        # restoring per caller would end with B restoring "off".
        with cudnn_autotune_off():
            entered.wait()
            if not first:
                release.wait()
        if first:
            release.set()

    try:
        threads = [threading.Thread(target=evaluate, args=(i == 0,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert torch.backends.cudnn.benchmark is True
    finally:
        torch.backends.cudnn.benchmark = before
