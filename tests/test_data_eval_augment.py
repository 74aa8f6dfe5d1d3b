"""Evaluation augmentation (rest-code on CIFAR-10-C) is a pure function of (seed, epoch, index);
training augmentation still draws from the epoch's generator, exactly as before."""

from __future__ import annotations

import pytest
import torch

from trainables.data import DeviceSplit, SplitTensors, epoch_generator, make_transform
from trainables.data import transforms as T
from trainables.data.transforms import crop_flip, draw_crop_flip, index_crop_flip


def _split(n: int = 300, size: int = 32) -> SplitTensors:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)
    labels = torch.arange(n) % 10
    return SplitTensors(images, labels, (labels + 1) % 10, [str(i) for i in range(n)])


def _eval_split(n: int = 300) -> DeviceSplit:
    transform = make_transform("rest-code", "cifar10c", train=False)
    assert transform.augments and transform.draws_per_index
    return DeviceSplit(_split(n), "cpu", transform)


def _by_index(split: DeviceSplit, batch_size: int, **kwargs) -> torch.Tensor:
    """Every image's transformed pixels, placed at its split index."""
    kwargs.setdefault("shuffle", False)
    out = torch.empty(split.n, 3, 32, 32)
    seen = torch.zeros(split.n, dtype=torch.bool)
    for batch in split.batches(batch_size, **kwargs):
        out[batch.index] = batch.x
        seen[batch.index] = True
    assert seen.all()
    return out


def test_eval_draw_does_not_depend_on_batch_size():
    split = _eval_split()
    whole = _by_index(split, split.n, epoch=3, seed=41)
    for batch_size in (7, 64):
        assert torch.equal(_by_index(split, batch_size, epoch=3, seed=41), whole)
    plain = make_transform("rest-intended", "cifar10c", train=False)(split.images)
    assert not torch.equal(whole, plain)  # it does augment


def test_eval_draw_does_not_depend_on_position():
    split = _eval_split()
    whole = _by_index(split, split.n, epoch=2, seed=7)
    shuffled = _by_index(split, 64, epoch=2, seed=7, shuffle=True)  # other positions
    assert torch.equal(shuffled, whole)
    perm = torch.randperm(split.n, generator=torch.Generator().manual_seed(1))[:50]
    direct = split.transform(split.images[perm], index=perm, seed=7, epoch=2)
    assert torch.equal(direct, whole[perm])


def test_eval_draws_differ_across_epochs_and_seeds():
    index = torch.arange(2000)

    def draws(seed: int, epoch: int) -> torch.Tensor:
        return torch.stack(index_crop_flip(index, 4, True, seed=seed, epoch=epoch)).long()

    base = draws(41, 1)
    assert torch.equal(base, draws(41, 1))
    for other in (draws(41, 2), draws(42, 1), draws(43, 7)):
        assert (other != base).any(dim=0).float().mean() > 0.8
    split = _eval_split(100)
    assert not torch.equal(
        _by_index(split, 64, epoch=1, seed=0), _by_index(split, 64, epoch=2, seed=0)
    )


def test_eval_offsets_are_roughly_uniform_and_independent():
    index = torch.arange(90_000)
    top, left, flip = index_crop_flip(index, 4, True, seed=41, epoch=5)
    for offsets in (top, left):
        assert offsets.min() == 0 and offsets.max() == 8
        counts = torch.bincount(offsets, minlength=9).float()
        assert ((counts / 10_000 - 1).abs() < 0.05).all(), counts
    assert flip.dtype == torch.bool and 0.49 < flip.float().mean() < 0.51
    # no visible structure between streams or between neighbouring indices
    assert abs((top == left).float().mean().item() - 1 / 9) < 0.01
    assert abs((top[1:] == top[:-1]).float().mean().item() - 1 / 9) < 0.01
    assert abs((flip[1:] == flip[:-1]).float().mean().item() - 0.5) < 0.01
    none = index_crop_flip(index[:10], 0, False, seed=41, epoch=5)
    assert all(not t.any() for t in none)  # no padding: offset 0; no flip


def _hash_reference(counter: int, keys: tuple[int, ...]) -> int:
    """The same hash in Python integers (unbounded): equality proves int64 never overflowed."""
    prime = (1 << 31) - 1
    x = (counter % prime + keys[0]) % prime
    for multiplier, key in zip(T._HASH_MULTIPLIERS, keys[1:], strict=True):
        x = (x * multiplier + key) % prime
        assert x * max(T._HASH_MULTIPLIERS) + key < 1 << 62
        x ^= x >> 15
    return x


def test_hash_matches_unbounded_integer_arithmetic():
    keys = T.index_hash_keys(41, 3)
    assert all(0 <= k < (1 << 31) - 1 for k in keys)
    counters = [0, 1, 2, 3, 12345, (1 << 31) - 2, (1 << 31) - 1, 1 << 31, 3 * 10**9, 1 << 40]
    ours = T.index_hash(torch.tensor(counters, dtype=torch.int64), keys).tolist()
    assert ours == [_hash_reference(c, keys) for c in counters]
    assert all(0 <= h < 1 << 31 for h in ours)


def _old_batches(split: DeviceSplit, batch_size: int, *, epoch: int, seed: int, **kwargs):
    """The training path as it was before per-index eval draws (generator draws in order)."""
    t = split.transform
    order = split.order(epoch=epoch, seed=seed, **kwargs)
    generator = epoch_generator(seed, epoch, "augment", split.device)
    for start in range(0, split.n, batch_size):
        index = order[start : start + batch_size]
        out = split.images.index_select(0, index)
        if t.resize is not None and tuple(out.shape[-2:]) != (t.resize, t.resize):
            out = T.resize_uint8_levels(out, t.resize)
        top, left, flip = draw_crop_flip(out.shape[0], t.crop_padding, t.flip, generator, "cpu")
        out = crop_flip(out, top, left, flip, t.crop_padding).float().div_(255.0)
        if t.mean is not None:
            mean = torch.tensor(t.mean).view(1, 3, 1, 1)
            out = out.sub_(mean).div_(torch.tensor(t.std).view(1, 3, 1, 1))
        yield index, out


@pytest.mark.parametrize(
    ("preset", "dataset", "size", "weighted"),
    [
        ("rest-code", "cifar10c", 32, False),
        ("rest-code", "cifar10c", 32, True),
        ("disent", "cifar10c", 32, False),
        ("disent", "bffhq", 128, False),
    ],
)
def test_training_batches_are_bit_identical_to_the_generator_path(preset, dataset, size, weighted):
    transform = make_transform(preset, dataset, train=True)
    assert transform.augments and not transform.draws_per_index
    split = DeviceSplit(_split(n=40 if dataset == "bffhq" else 300, size=size), "cpu", transform)
    weights = torch.linspace(1, 3, split.n) if weighted else None
    new = list(split.batches(16, epoch=4, seed=41, shuffle=True, weights=weights))
    old = list(_old_batches(split, 16, epoch=4, seed=41, shuffle=True, weights=weights))
    assert len(new) == len(old)
    for batch, (index, x) in zip(new, old, strict=True):
        assert torch.equal(batch.index, index) and torch.equal(batch.x, x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_eval_draws_are_the_same_on_cuda():
    index = torch.arange(5000)
    cpu = index_crop_flip(index, 4, True, seed=41, epoch=9)
    cuda = index_crop_flip(index.cuda(), 4, True, seed=41, epoch=9)
    for a, b in zip(cpu, cuda, strict=True):
        assert torch.equal(a, b.cpu())
