"""Augmentation presets: output contract, which splits augment, torchvision parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainables.data import PRESETS, epoch_generator, make_transform
from trainables.data.transforms import crop_flip, draw_crop_flip
from trainables.datasets import AUGMENT_PRESETS, DATASETS
from trainables.errors import UserError

CIFAR_MEAN = DATASETS.get("cifar10c").mean
CIFAR_STD = DATASETS.get("cifar10c").std


def _batch(dataset: str, n: int = 6, seed: int = 0) -> torch.Tensor:
    size = DATASETS.get(dataset).native_size
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)


def _gen(seed: int = 0) -> torch.Generator:
    return epoch_generator(seed, 1, "augment", "cpu")


def _apply(transform, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Train transforms draw from a generator; augmenting eval ones per (seed, epoch, index)."""
    if transform.draws_per_index:
        return transform(x, index=torch.arange(len(x)), seed=seed, epoch=1)
    return transform(x, _gen(seed))


# (preset, dataset) -> (train output size, train augments, eval augments, normalised)
EXPECTED = {
    ("disent", "cmnist"): (28, False, False, False),
    ("disent", "cifar10c"): (32, True, False, True),
    ("disent", "bffhq"): (224, True, False, True),
    ("rest-code", "cmnist"): (28, False, False, False),
    ("rest-code", "cifar10c"): (32, True, True, True),
    ("rest-code", "bffhq"): (128, False, False, True),
    ("rest-intended", "cmnist"): (28, False, False, False),
    ("rest-intended", "cifar10c"): (32, True, False, True),
    ("rest-intended", "bffhq"): (128, False, False, True),
    ("none", "cmnist"): (28, False, False, False),
    ("none", "cifar10c"): (32, False, False, True),
    ("none", "bffhq"): (128, False, False, True),
}


@pytest.mark.parametrize(("preset", "dataset"), sorted(EXPECTED))
def test_preset_contract(preset, dataset):
    size, train_aug, eval_aug, normalised = EXPECTED[(preset, dataset)]
    x = _batch(dataset, n=4 if dataset == "bffhq" else 6)
    for train, augments in ((True, train_aug), (False, eval_aug)):
        transform = make_transform(preset, dataset, train)
        assert transform.augments is augments and transform.output_size == size
        out = _apply(transform, x)
        assert out.dtype == torch.float32 and out.shape == (len(x), 3, size, size)
        if normalised:
            low = (0 - max(CIFAR_MEAN)) / min(CIFAR_STD)
            high = (1 - min(CIFAR_MEAN)) / min(CIFAR_STD)
            assert low - 1e-5 <= out.min() and out.max() <= high + 1e-5
        else:
            assert out.min() >= 0.0 and out.max() <= 1.0
            assert torch.equal(out, x.float() / 255)  # ToTensor only
        again = _apply(transform, x, seed=99)
        assert torch.equal(out, again) is (not augments)  # only augmenting ones use the seed


def test_eval_is_deterministic_except_rest_code_cifar():
    x = _batch("cifar10c", n=32)
    for preset in PRESETS:
        transform = make_transform(preset, "cifar10c", train=False)
        same = torch.equal(_apply(transform, x, 1), _apply(transform, x, 2))
        assert same is (preset != "rest-code"), preset


def test_same_generator_state_same_augmentation():
    transform = make_transform("disent", "cifar10c", train=True)
    x = _batch("cifar10c", n=16)
    assert torch.equal(transform(x, _gen(5)), transform(x, _gen(5)))


def test_padding_is_black_before_normalising():
    """A white image cropped at the extreme offset shows a band of normalised *black*."""
    x = torch.full((1, 3, 32, 32), 255, dtype=torch.uint8)
    out = crop_flip(x, torch.tensor([0]), torch.tensor([0]), torch.tensor([False]), 4)
    assert (out[0, :, :4, :] == 0).all() and (out[0, :, 4:, 4:] == 255).all()


def test_offsets_and_flips_are_per_image():
    top, left, flip = draw_crop_flip(4096, 4, True, _gen(3), torch.device("cpu"))
    assert set(top.tolist()) == set(range(9)) and set(left.tolist()) == set(range(9))
    assert 0.45 < flip.float().mean() < 0.55


def test_crop_flip_matches_torchvision_for_fixed_offsets():
    tvf = pytest.importorskip("torchvision.transforms.functional")
    from PIL import Image

    x = _batch("cifar10c", n=3, seed=7)
    top, left = torch.tensor([0, 8, 3]), torch.tensor([5, 0, 8])
    flip = torch.tensor([False, True, True])
    ours = crop_flip(x, top, left, flip, 4)
    for i in range(3):
        image = Image.fromarray(x[i].permute(1, 2, 0).numpy())
        ref = tvf.crop(tvf.pad(image, 4), int(top[i]), int(left[i]), 32, 32)
        if flip[i]:
            ref = tvf.hflip(ref)
        expected = torch.from_numpy(np.array(ref)).permute(2, 0, 1)
        assert torch.equal(ours[i], expected)


def test_normalisation_matches_torchvision():
    tv = pytest.importorskip("torchvision.transforms")
    from PIL import Image

    x = _batch("cifar10c", n=2, seed=11)
    ours = make_transform("disent", "cifar10c", train=False)(x)
    pipeline = tv.Compose([tv.ToTensor(), tv.Normalize(CIFAR_MEAN, CIFAR_STD)])
    for i in range(2):
        ref = pipeline(Image.fromarray(x[i].permute(1, 2, 0).numpy()))
        assert torch.allclose(ours[i], ref, atol=1e-6)


def test_bffhq_resize_is_close_to_pil_bilinear():
    from PIL import Image

    x = _batch("bffhq", n=1, seed=2)
    ours = make_transform("disent", "bffhq", train=False)(x)
    image = Image.fromarray(x[0].permute(1, 2, 0).numpy()).resize((224, 224), Image.BILINEAR)
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    mean, std = torch.tensor(CIFAR_MEAN).view(3, 1, 1), torch.tensor(CIFAR_STD).view(3, 1, 1)
    ref = (pixels - mean) / std
    # PIL resamples in fixed point; allow a couple of uint8 levels in normalised units
    assert (ours[0] - ref).abs().max() < 3 / 255 / min(CIFAR_STD)


def test_unknown_preset_and_bad_input():
    with pytest.raises(UserError, match="augment: 'random'"):
        make_transform("random", "cifar10c", True)
    with pytest.raises(ValueError, match="expected uint8"):
        make_transform("none", "cmnist", True)(torch.zeros(1, 3, 28, 28))
    with pytest.raises(ValueError, match="needs a generator"):
        make_transform("disent", "cifar10c", True)(_batch("cifar10c"))
    with pytest.raises(ValueError, match="needs the split index, seed and epoch"):
        make_transform("rest-code", "cifar10c", False)(_batch("cifar10c"), _gen())


@pytest.mark.parametrize("dataset", DATASETS.names())
@pytest.mark.parametrize("preset", AUGMENT_PRESETS)
def test_output_size_is_the_registry_trained_size(preset, dataset):
    info = DATASETS.get(dataset)
    for train in (True, False):
        transform = make_transform(preset, dataset, train)
        assert transform.output_size == info.trained_size(preset)
        assert (transform.mean, transform.std) == (info.normalisation or (None, None))
        x = _batch(dataset, n=2)
        assert _apply(transform, x).shape[-1] == info.trained_size(preset)


def test_presets_are_the_registry_presets():
    assert tuple(PRESETS) == AUGMENT_PRESETS


# normalisation=sdd: the SDD code's Normalize, written from its sources (he-zh/sparse-double-
# descent at f9bbdcc), not read back from the registry.
SDD_STATS = {
    # datasets/cifar10.py:54, datasets/cifar100.py:55: ImageNet's mean/std
    "cifar10": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar100": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # datasets/mnist.py:41: Normalize(mean=[0.1307], std=[0.3081]), one gray channel (ours: three)
    "mnist": ((0.1307,) * 3, (0.3081,) * 3),
}


@pytest.mark.parametrize("dataset", sorted(SDD_STATS))
def test_sdd_normalisation_is_the_sdd_codes_normalize(dataset):
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in SDD_STATS[dataset])
    x = _batch(dataset, n=4, seed=5)
    for preset in ("none", "disent"):
        eval_out = make_transform(preset, dataset, False, "sdd")(x)
        assert torch.allclose(eval_out, (x.float() / 255 - mean) / std, atol=1e-6)
        # training too: the same crops and flips as the default, only the Normalize differs
        sdd = make_transform(preset, dataset, True, "sdd")(x, _gen(3))
        ours = make_transform(preset, dataset, True)(x, _gen(3))
        info = DATASETS.get(dataset)
        pixels = ours
        if info.normalise:
            ours_mean, ours_std = (torch.tensor(v).view(1, 3, 1, 1) for v in (info.mean, info.std))
            pixels = ours * ours_std + ours_mean
        assert torch.allclose(sdd, (pixels - mean) / std, atol=1e-5)


def test_the_default_normalisation_is_the_registrys_and_sdd_is_refused_elsewhere():
    for dataset in DATASETS.names():
        default = make_transform("none", dataset, False)
        named = make_transform("none", dataset, False, "dataset")
        assert (default.mean, default.std) == (named.mean, named.std)
        if dataset not in SDD_STATS:
            with pytest.raises(
                UserError, match=f"normalisation: 'sdd' is not allowed for {dataset}"
            ):
                make_transform("none", dataset, False, "sdd")
    with pytest.raises(UserError, match="allowed: dataset, sdd"):
        make_transform("none", "cifar10", False, "imagenet")
