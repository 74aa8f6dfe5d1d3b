"""DeviceSplit batching: replay per (seed, epoch), weighted resampling, partial batches."""

from __future__ import annotations

import torch

from trainables.data import Batch, DeviceSplit, SplitTensors, epoch_generator, make_transform


def _split(n: int = 103, conflicting_every: int = 10) -> SplitTensors:
    labels = torch.arange(n) % 10
    bias = labels.clone()
    bias[::conflicting_every] = (labels[::conflicting_every] + 1) % 10
    images = torch.randint(
        0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    return SplitTensors(images, labels, bias, [str(i) for i in range(n)])


def _device_split(preset: str = "disent", train: bool = True) -> DeviceSplit:
    return DeviceSplit(_split(), "cpu", make_transform(preset, "cifar10c", train))


def _epoch(split: DeviceSplit, **kwargs) -> list[Batch]:
    kwargs.setdefault("shuffle", True)
    return list(split.batches(16, **kwargs))


def test_epoch_generator_is_a_pure_function_of_its_key():
    def draw(*key) -> list[float]:
        return torch.rand(4, generator=epoch_generator(*key)).tolist()

    assert draw(41, 3, "order", "cpu") == draw(41, 3, "order", "cpu")
    assert draw(41, 3, "order", "cpu") != draw(41, 4, "order", "cpu")
    assert draw(41, 3, "order", "cpu") != draw(41, 3, "augment", "cpu")
    assert draw(41, 3, "order", "cpu") != draw(42, 3, "order", "cpu")


def test_same_seed_and_epoch_replay_identical_batches():
    split = _device_split()
    first = _epoch(split, epoch=3, seed=41)
    _epoch(split, epoch=4, seed=41)  # an unrelated epoch in between changes nothing
    again = _epoch(_device_split(), epoch=3, seed=41)
    assert len(first) == len(again) == 7
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a.index, b.index) and torch.equal(a.x, b.x)
    other = _epoch(split, epoch=4, seed=41)
    assert not torch.equal(torch.cat([b.index for b in first]), torch.cat([b.index for b in other]))


def test_shuffle_is_a_permutation_and_labels_follow_the_index():
    split = _device_split()
    batches = _epoch(split, epoch=1, seed=0)
    index = torch.cat([b.index for b in batches])
    assert sorted(index.tolist()) == list(range(split.n))
    for b in batches:
        assert torch.equal(b.y, split.labels[b.index]) and torch.equal(b.b, split.bias[b.index])
    assert [len(b.y) for b in batches] == [16] * 6 + [7]  # last partial batch kept


def test_no_shuffle_is_in_order_and_drop_last():
    split = _device_split("disent", train=False)
    batches = list(split.batches(16, epoch=1, seed=0, shuffle=False, drop_last=True))
    assert len(batches) == 6
    assert torch.equal(torch.cat([b.index for b in batches]), torch.arange(96))
    assert torch.equal(batches[0].x, make_transform("disent", "cifar10c", False)(split.images[:16]))


def test_weighted_resampling_share():
    split = DeviceSplit(
        _split(n=2000, conflicting_every=50), "cpu", make_transform("none", "cifar10c", True)
    )
    assert int((~split.aligned).sum()) == 40
    weights = torch.where(split.aligned, 1.0, 80.0)
    index = torch.cat(
        [b.index for b in split.batches(256, epoch=2, seed=5, shuffle=True, weights=weights)]
    )
    assert len(index) == 2000  # n draws with replacement per epoch
    share = (~split.aligned[index]).float().mean().item()
    expected = 40 * 80 / (1960 + 40 * 80)  # 0.62
    assert abs(share - expected) < 0.05
    again = torch.cat(
        [b.index for b in split.batches(256, epoch=2, seed=5, shuffle=True, weights=weights)]
    )
    assert torch.equal(index, again)


def test_split_attributes():
    split = _device_split()
    assert split.n == len(split) == 103
    assert split.aligned.dtype == torch.bool and int((~split.aligned).sum()) == 11
    assert split.images.dtype == torch.uint8
