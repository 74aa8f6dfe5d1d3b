"""Packed trials give each trial its single-trial numbers, resume per trial, and plan sensibly.

CPU only, tiny: the REST Simple CNN at width 16 on the shared Colored Fashion-MNIST fixture.
Packed and single runs differ only by floating-point summation order (grouped vs separate
convolutions), so metrics are compared to a tolerance and masks position by position.
"""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from trainables.config import TrialConfig
from trainables.pack import can_pack, plan_packs, run_pack
from trainables.pack.optim import PackOptimizer
from trainables.results import TrialStore
from trainables.train import run_trial

VOLATILE = {"epoch_time_s", "attempt", "pack_size"}


@pytest.fixture(scope="module")
def pack_root(fmnist_dir, tmp_path_factory):
    """640 train images (10 steps of 64), ratios 1% and 5% (same size), small valid/test."""
    from trainables.data.make_cmnist import make_cmnist

    root = tmp_path_factory.mktemp("pack-data")
    make_cmnist(fmnist_dir, root, ratios=(1.0, 5.0), limit=640, valid_size=128, test_size=256)
    return root


def cfg(root, **overrides) -> TrialConfig:
    values = dict(
        dataset="cmnist", ratio=1.0, method="erm", epochs=2, batch_size=64, width=16,
        update_frequency=4, data_root=str(root), device="cpu", seed=41,
    )  # fmt: skip
    values.update(overrides)
    return TrialConfig.from_recipe(values.pop("recipe", "paper"), **values)


def assert_rows_close(single: list[dict], packed: list[dict], tol: float = 1e-4) -> None:
    assert [r["epoch"] for r in single] == [r["epoch"] for r in packed]
    for a, b in zip(single, packed, strict=True):
        assert set(a) - VOLATILE == set(b) - VOLATILE
        for key, value in a.items():
            if key in VOLATILE:
                continue
            if isinstance(value, float) and not math.isnan(value):
                assert b[key] == pytest.approx(value, rel=tol, abs=tol), (a["epoch"], key)
            else:
                assert b[key] == value, (a["epoch"], key)


def masks_of(folder, epoch: int) -> dict[str, torch.Tensor]:
    state = torch.load(
        f"{folder}/checkpoints/epoch_{epoch:04d}.pt", map_location="cpu", weights_only=False
    )
    return state["engine"]["masks"]


def test_pack_matches_separate_runs(pack_root, tmp_path):
    """Dense ERM, RigL (ratio 5: another training set) and REST (loss reweighting, own lr),
    BN in train mode, mask updates at steps 4 and 8 inside the 10-step window.

    The dense trial agrees to 1e-4. A sparse trial's prune-and-grow sorts |w| and |grad|: a
    near-tie closer than the rounding noise may pick another weight, after which the runs
    drift apart slowly, so sparse metrics get a looser bound and the masks a 99.9% match."""
    configs = [
        cfg(pack_root, epochs=1),
        cfg(pack_root, epochs=1, method="rigl", density=0.1, seed=42, ratio=5.0),
        cfg(pack_root, epochs=1, method="rest", density=0.2, seed=43, lr=0.003),
    ]
    assert can_pack(configs)
    singles = [run_trial(c, checkpoint_dir=str(tmp_path / f"s{i}")) for i, c in enumerate(configs)]
    seen: list[tuple[int, int]] = []
    packed = run_pack(
        configs, [str(tmp_path / f"p{i}") for i in range(3)],
        report=lambda i, row: seen.append((i, row["epoch"])),
    )  # fmt: skip
    assert sorted(seen) == [(0, 1), (1, 1), (2, 1)]
    for i in range(3):
        rows_s = TrialStore(str(tmp_path / f"s{i}")).read_metrics()
        rows_p = TrialStore(str(tmp_path / f"p{i}")).read_metrics()
        assert_rows_close(rows_s, rows_p, tol=1e-4 if i == 0 else 1e-2)
        for key in ("density", "nonzero_params", "total_params", "inference_flops", "train_flops"):
            assert packed[i][key] == pytest.approx(singles[i][key], rel=1e-9), key
        assert packed[i]["pack_size"] == 3 and packed[i]["status"] == "finished"
    for i in (1, 2):  # sparse: the masks after 2 updates agree (near-ties may flip a few)
        ms, mp = masks_of(tmp_path / f"s{i}", 1), masks_of(tmp_path / f"p{i}", 1)
        same = sum(int((ms[k] == mp[k]).sum()) for k in ms)
        assert same >= 0.999 * sum(m.numel() for m in ms.values())


class Interrupt(RuntimeError):
    pass


def test_pack_resumes_per_trial_and_checkpoints_are_single_trial_format(pack_root, tmp_path):
    configs = [
        cfg(pack_root, method="rigl", density=0.1, epochs=2),
        cfg(pack_root, method="set", density=0.1, seed=44, lr=0.003),
    ]
    straight = run_pack(configs, [str(tmp_path / f"a{i}") for i in range(2)])

    def crash(index: int, row: dict) -> None:
        raise Interrupt("simulated crash after epoch 1")

    dirs = [str(tmp_path / f"b{i}") for i in range(2)]
    with pytest.raises(Interrupt):
        run_pack(configs, dirs, report=crash)
    for d in dirs:
        assert TrialStore(d).read_state()["state"] == "errored"
        assert TrialStore(d).checkpoint_epochs() == [1]
    solo = str(tmp_path / "solo")
    shutil.copytree(dirs[0], solo)
    resumed = run_pack(configs, dirs)
    for i, d in enumerate(dirs):
        store = TrialStore(d)
        assert store.read_state()["resumed_from_epoch"] == 1
        a = [{k: v for k, v in r.items() if k not in VOLATILE} for r in store.read_metrics()]
        b = TrialStore(str(tmp_path / f"a{i}")).read_metrics()
        assert a == [{k: v for k, v in r.items() if k not in VOLATILE} for r in b]
        assert resumed[i]["train_flops"] == straight[i]["train_flops"]
    # A pack checkpoint is a single-trial checkpoint: run_trial continues trial 0 alone.
    run_trial(configs[0], checkpoint_dir=solo)
    assert_rows_close(
        TrialStore(str(tmp_path / "a0")).read_metrics(), TrialStore(solo).read_metrics(), 1e-2
    )


def test_plan_packs_groups_balances_and_falls_back(pack_root):
    base = cfg(pack_root)
    grid = [base.replace(seed=s) for s in range(10)]
    grid += [base.replace(model="resnet18"), base.replace(batch_size=32), base.replace(ratio=5.0)]
    packs = plan_packs(grid, max_pack=8)
    assert sorted(i for p in packs for i in p) == list(range(len(grid)))
    assert sorted(len(p) for p in packs if p[0] < 10) == [5, 5]
    assert [10] in packs and [11] in packs and [12] in packs
    assert all(len(p) == 1 for p in plan_packs(grid, max_pack=1))
    assert not can_pack([base, base.replace(optimizer="sgd")])
    assert not can_pack([base])
    with pytest.raises(ValueError, match="max_pack"):
        plan_packs(grid, 0)


def test_unpackable_configs_run_as_single_trials(pack_root, tmp_path):
    configs = [cfg(pack_root, epochs=1), cfg(pack_root, epochs=1, batch_size=256)]
    assert not can_pack(configs)
    summaries = run_pack(configs, [str(tmp_path / "x"), str(tmp_path / "y")])
    assert [s["status"] for s in summaries] == ["finished", "finished"]
    assert all("pack_size" not in s for s in summaries)


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_pack_optimizer_matches_torch_per_trial(kind):
    torch.manual_seed(0)
    lrs, wds = [0.1, 0.01, 0.003], [0.0, 1e-4, 1e-2]
    weights = torch.randn(3, 50)
    mask = (torch.rand(3, 50) < 0.5).float()
    refs = [weights[i].clone().requires_grad_(True) for i in range(3)]
    make = torch.optim.Adam if kind == "adam" else torch.optim.SGD
    extra = {} if kind == "adam" else {"momentum": 0.9}
    opts = [
        make([r], lr=lr, weight_decay=wd, **extra) for r, lr, wd in zip(refs, lrs, wds, strict=True)
    ]
    pack = PackOptimizer.create(kind, weights, lrs, wds, momentum=0.9)
    for _ in range(4):
        grad = torch.randn(3, 50)
        pack.update(weights, grad, mask)
        for i, (r, o) in enumerate(zip(refs, opts, strict=True)):
            r.grad = grad[i].clone()
            o.step()
            with torch.no_grad():
                r.mul_(mask[i])
    for i, r in enumerate(refs):
        torch.testing.assert_close(weights[i], r.detach(), rtol=1e-5, atol=1e-6)
