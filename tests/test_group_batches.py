"""A fused group's batches made with one gather (``trainables.data.loader.group_batches``):
every member's slice equals the batch it would draw alone, bit for bit, with its own order,
sampling weights, augmentation draws and (noisy) labels; and a fused group trained on them
equals the same group drawing its members' batches one by one, exactly."""

from __future__ import annotations

import pytest
import torch

from trainables.data import DeviceSplit, SplitTensors
from trainables.data.loader import group_batches, same_images
from trainables.data.transforms import Transform

N, BATCH = 50, 16  # three full batches and a last one of 2


def split_tensors(size: int = 12) -> SplitTensors:
    gen = torch.Generator().manual_seed(7)
    images = torch.randint(0, 256, (N, 3, size, size), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (N,), generator=gen)
    bias = torch.randint(0, 10, (N,), generator=gen)
    return SplitTensors(images, labels, bias, [f"i{i}" for i in range(N)])


def transform(**changes: object) -> Transform:
    values = dict(
        preset="test",
        dataset="cifar10c",
        train=True,
        output_size=12,
        resize=None,
        crop_padding=2,
        flip=True,
        mean=(0.4, 0.5, 0.6),
        std=(0.2, 0.25, 0.3),
    )
    values.update(changes)
    return Transform(**values)  # type: ignore[arg-type]


def member_splits(tf: Transform) -> list[DeviceSplit]:
    """Three trials' copies of one split: one with noisy labels of its own."""
    splits = [DeviceSplit(split_tensors(), "cpu", tf) for _ in range(3)]
    noisy = splits[1].clean_labels.clone()
    noisy[::3] = (noisy[::3] + 1) % 10
    splits[1].set_noisy_labels(noisy)
    return splits


@pytest.mark.parametrize(
    "tf",
    [transform(), transform(crop_padding=0, flip=False), transform(resize=16, output_size=16)],
    ids=["crop-flip", "no-augmentation", "resize"],
)
def test_each_members_slice_is_its_own_batch_bit_for_bit(tf: Transform) -> None:
    splits = member_splits(tf)
    seeds = [3, 4, 5]
    weights = [None, None, torch.linspace(0.1, 2.0, N)]  # the third samples with weights
    assert same_images(splits)
    for epoch in (1, 2):
        stacked = list(group_batches(splits, BATCH, epoch=epoch, seeds=seeds, weights=weights))
        own = [
            list(s.batches(BATCH, epoch=epoch, seed=seed, shuffle=True, weights=w))
            for s, seed, w in zip(splits, seeds, weights, strict=True)
        ]
        assert [b.x.shape[:2] for b in stacked] == [(3, 16)] * 3 + [(3, 2)]
        for position, batch in enumerate(stacked):
            for k in range(3):
                alone = own[k][position]
                for name in ("x", "y", "b", "index"):
                    assert torch.equal(getattr(batch, name)[k], getattr(alone, name)), (
                        epoch,
                        position,
                        k,
                        name,
                    )
    # the noisy member trains on its own labels, the others on the clean ones
    first = next(group_batches(splits, BATCH, epoch=1, seeds=seeds, weights=weights))
    assert not torch.equal(first.y[1], splits[0].labels.index_select(0, first.index[1]))


def test_splits_with_other_images_or_transforms_are_not_shared() -> None:
    splits = member_splits(transform())
    assert same_images(splits)
    changed = split_tensors()
    changed.images[5, 0, 0, 0] ^= 1
    assert not same_images([splits[0], DeviceSplit(changed, "cpu", transform())])
    assert not same_images([splits[0], DeviceSplit(split_tensors(), "cpu", transform(flip=False))])


def test_many_checks_its_chunks() -> None:
    images = split_tensors().images[:10]
    with pytest.raises(ValueError, match="10 images in 3 equal chunks"):
        transform().many(images, [None] * 3)
    with pytest.raises(ValueError, match="augments and needs a generator"):
        transform().many(images, [None, None])
    with pytest.raises(ValueError, match="evaluation draws are per index"):
        transform(preset="rest-code", train=False).many(images, [None])


def test_a_group_trains_the_same_on_shared_and_on_its_members_own_batches(tiny_cmnist_root):
    """The one-gather path changes how the batches are made, not which: two epochs of a fused
    group (RigL, REST, ERM + RW; mask updates every 3 steps) end with the same weights, masks
    and metric rows, exactly, as the group stacking its members' own batches. The shared path
    also keeps one copy of the images."""
    from tests.fixtures.data import cpu_config
    from tests.test_fused import configs
    from trainables.train.fused import FusedTrainer
    from trainables.train.trial import Trial

    # and a member that samples by weights (the others' sampling_weights are None)
    trials = [
        *configs(tiny_cmnist_root),
        cpu_config(tiny_cmnist_root, method="erm_rw", seed=4, reweight="resample", epochs=2),
    ]

    def train(share: bool) -> tuple[FusedTrainer, list[dict]]:
        trainer = FusedTrainer([Trial(cfg) for cfg in trials], share)
        assert trainer.members[-1].method.sampling_weights() is not None
        rows = [trainer.train_epoch(epoch) for epoch in (1, 2)]
        return trainer, rows

    shared, rows_shared = train(True)
    own, rows_own = train(False)
    assert shared.shared_data and not own.shared_data
    first = shared.members[0].train.images
    assert all(m.train.images is first for m in shared.members)
    assert len({m.train.images.data_ptr() for m in own.members}) == 5
    for a, b in zip(rows_shared, rows_own, strict=True):
        assert list(a.values()) == list(b.values())
    for a, b in zip(shared.members, own.members, strict=True):
        assert a.step == b.step > 0
        for (name, x), (_, y) in zip(
            a.method.model.state_dict().items(), b.method.model.state_dict().items(), strict=True
        ):
            assert torch.equal(x, y), name
        if a.method.engine is not None:
            assert a.method.engine.updates == b.method.engine.updates > 0
            theirs = b.method.engine.masks()
            for name, mask in a.method.engine.masks().items():
                assert torch.equal(mask, theirs[name]), name
