"""Augmentation presets applied to whole uint8 batches on the device.

Each preset reproduces a torchvision pipeline (``Resize``, ``RandomCrop(padding=4)``,
``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``) with the same semantics: the zero padding
is black in pixel space (before normalising), crop offsets and flips are drawn per image, and
resizing rounds to uint8 levels like PIL. Presets (see docs/data.md):

* ``disent``: DisEnt's transforms (the paper recipe).
* ``rest-code``: the public REST code, bugs included: every split gets the training branch, so
  CIFAR-10-C valid/test are randomly augmented and BFFHQ is never flipped.
* ``rest-intended``: rest-code's training transform with deterministic evaluation.
* ``none``: ToTensor plus the dataset's normalisation, native size, no augmentation.

The normalisation is the config's ``normalisation`` option on top of any preset: ``dataset``
(the registry entry's, the default) or ``sdd`` (the SDD code's statistics; docs/data.md).

Every per-dataset fact (sizes per preset, normalisation, which presets crop and flip) is read
from the registry ``trainables.datasets.DATASETS``; this module holds only the mechanics.

Training batches draw crops and flips from the loader's ``augment`` generator. An *evaluation*
transform that augments (``rest-code`` on CIFAR-10-C) draws them instead as a pure function of
(seed, epoch, image index in the split), :func:`index_crop_flip`, so an image's augmentation
does not depend on the evaluation batch size, its position in a batch, or the device.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainables.data.layout import dataset_spec
from trainables.datasets import AUGMENT_PRESETS
from trainables.errors import UserError

PRESETS = AUGMENT_PRESETS
CROP_PADDING = 4  # RandomCrop(size, padding=4) wherever a preset crops (DisEnt and REST)
# Presets whose evaluation splits get the training branch (REST tests `if not train` on the
# split *string*, which is never falsy).
EVAL_AUGMENT_PRESETS = ("rest-code",)

# The per-index hash: arithmetic modulo the Mersenne prime 2**31 - 1 with multipliers below it,
# so every int64 intermediate stays below 2**62 (no overflow on any device).
_HASH_PRIME = (1 << 31) - 1
_HASH_MULTIPLIERS = (0x5BD1E995, 0x27D4EB2F, 0x165667B1, 0x61C88647)
_HASH_STREAMS = 3  # top, left, flip


@dataclass(frozen=True)
class Transform:
    """A batched, device-side transform: uint8 NCHW in, float32 NCHW out.

    ``augments`` says whether the output depends on the generator (random crop/flip); a
    transform with ``augments=False`` ignores it and is deterministic. An augmenting
    evaluation transform (``train=False``, see :attr:`draws_per_index`) takes no generator but
    the images' split ``index`` with ``seed`` and ``epoch`` instead.
    """

    preset: str
    dataset: str
    train: bool
    output_size: int
    resize: int | None  # resize every image to this square size (bilinear, PIL-like rounding)
    crop_padding: int  # RandomCrop(output_size, padding=crop_padding); 0 = no crop
    flip: bool  # RandomHorizontalFlip(p=0.5)
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    @property
    def augments(self) -> bool:
        return self.crop_padding > 0 or self.flip

    @property
    def draws_per_index(self) -> bool:
        """True for an augmenting evaluation transform: draws depend on (seed, epoch, index)."""
        return self.augments and not self.train

    def __call__(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        *,
        index: torch.Tensor | None = None,
        seed: int | None = None,
        epoch: int | None = None,
    ) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(
                f"transform input: expected uint8 (N, 3, H, W), got {x.dtype} {tuple(x.shape)}"
            )
        out = self._resized(x)
        if self.draws_per_index:
            if index is None or seed is None or epoch is None:
                raise ValueError(
                    f"transform {self.preset!r} augments evaluation per image and needs the "
                    "split index, seed and epoch"
                )
            if index.shape != (out.shape[0],):
                raise ValueError(f"index: shape {tuple(index.shape)}, expected ({out.shape[0]},)")
            top, left, flip = index_crop_flip(
                index.to(out.device), self.crop_padding, self.flip, seed=seed, epoch=epoch
            )
            out = crop_flip(out, top, left, flip, self.crop_padding)
        elif self.augments:
            if generator is None:
                raise ValueError(f"transform {self.preset!r} augments and needs a generator")
            top, left, flip = draw_crop_flip(
                out.shape[0], self.crop_padding, self.flip, generator, out.device
            )
            out = crop_flip(out, top, left, flip, self.crop_padding)
        return self._normalised(out)

    def many(self, x: torch.Tensor, generators: Sequence[torch.Generator | None]) -> torch.Tensor:
        """The training transform of several trials' batches at once: ``x`` holds
        ``len(generators)`` equal chunks along dim 0, chunk k drawn with ``generators[k]``.
        Equal to calling the transform on each chunk with its generator (the same draws, the
        same per-image arithmetic), in one pass: a fused group's batch (``group_batches``)."""
        if self.draws_per_index:
            raise ValueError(f"transform {self.preset!r}: evaluation draws are per index")
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(
                f"transform input: expected uint8 (N, 3, H, W), got {x.dtype} {tuple(x.shape)}"
            )
        if not generators or x.shape[0] % len(generators):
            raise ValueError(f"transform: {x.shape[0]} images in {len(generators)} equal chunks")
        out = self._resized(x)
        if self.augments:
            if any(g is None for g in generators):
                raise ValueError(f"transform {self.preset!r} augments and needs a generator")
            n = out.shape[0] // len(generators)
            draws = [
                draw_crop_flip(n, self.crop_padding, self.flip, g, out.device)
                for g in generators
                if g is not None
            ]
            top, left, flip = (torch.cat(parts) for parts in zip(*draws, strict=True))
            out = crop_flip(out, top, left, flip, self.crop_padding)
        return self._normalised(out)

    def _resized(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize is not None and tuple(x.shape[-2:]) != (self.resize, self.resize):
            return resize_uint8_levels(x, self.resize)
        return x

    def _normalised(self, out: torch.Tensor) -> torch.Tensor:
        out = out.float().div_(255.0)
        if self.mean is not None and self.std is not None:
            # non_blocking: a blocking host-to-device copy would synchronise the stream per batch
            mean = torch.tensor(self.mean).view(1, 3, 1, 1).to(out.device, non_blocking=True)
            std = torch.tensor(self.std).view(1, 3, 1, 1).to(out.device, non_blocking=True)
            out = out.sub_(mean).div_(std)
        return out


def resize_uint8_levels(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (antialiased) resize to ``size``x``size``, rounded to 0..255 like PIL's output."""
    out = F.interpolate(
        x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return out.round_().clamp_(0, 255)


def draw_crop_flip(
    n: int, padding: int, flip: bool, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image crop offsets in ``[0, 2*padding]`` and flip decisions (p = 0.5)."""
    gdev = generator.device
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=gdev)
    flips = torch.rand(n, generator=generator, device=gdev) < 0.5 if flip else None
    if flips is None:
        flips = torch.zeros(n, dtype=torch.bool, device=gdev)
    return offsets[0].to(device), offsets[1].to(device), flips.to(device)


def index_hash_keys(seed: int, epoch: int) -> tuple[int, ...]:
    """The round keys of :func:`index_crop_flip` for (seed, epoch): integers below 2**31."""
    text = f"rest-sweep/{int(seed)}/{int(epoch)}/augment-index".encode()
    digest = hashlib.sha256(text).digest()
    return tuple(
        int.from_bytes(digest[4 * i : 4 * i + 4], "little") % _HASH_PRIME
        for i in range(len(_HASH_MULTIPLIERS) + 1)
    )


def index_hash(counter: torch.Tensor, keys: tuple[int, ...]) -> torch.Tensor:
    """A counter-based hash of int64 ``counter`` (>= 0) to integers in ``[0, 2**31)``.

    Rounds of ``x = (x * m + k) mod (2**31 - 1)`` then ``x ^= x >> 15``: the modular product
    of two values below 2**31 stays below 2**62, so int64 never overflows, on any device, and
    CPU and CUDA give the same numbers. The xor-shift breaks the rounds' linearity.
    """
    x = torch.remainder(counter, _HASH_PRIME).add_(keys[0]).remainder_(_HASH_PRIME)
    for multiplier, key in zip(_HASH_MULTIPLIERS, keys[1:], strict=True):
        x = x.mul_(multiplier).add_(key).remainder_(_HASH_PRIME)
        x = x.bitwise_xor_(x >> 15)
    return x


def index_crop_flip(
    index: torch.Tensor, padding: int, flip: bool, *, seed: int, epoch: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image crop offsets in ``[0, 2*padding]`` and flips (p = 0.5) as a pure function of
    (seed, epoch, image index in the split), computed on ``index``'s device without a sync.

    The evaluation counterpart of :func:`draw_crop_flip`: an image gets the same draw whatever
    the batch size, its position in the batch, or the device.
    """
    index = index.to(torch.int64)
    counter = index.view(1, -1) * _HASH_STREAMS + torch.arange(
        _HASH_STREAMS, device=index.device, dtype=torch.int64
    ).view(-1, 1)
    h = index_hash(counter, index_hash_keys(seed, epoch))
    top = torch.remainder(h[0], 2 * padding + 1)
    left = torch.remainder(h[1], 2 * padding + 1)
    flips = ((h[2] >> 7) & 1) == 1 if flip else torch.zeros_like(index, dtype=torch.bool)
    return top, left, flips


def crop_flip(
    x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor, padding: int
) -> torch.Tensor:
    """Zero-pad by ``padding``, crop back to the input size at (top, left), mirror where
    ``flip``: torchvision's RandomCrop then RandomHorizontalFlip, one gather for the batch."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x
    rows = top.view(n, 1) + torch.arange(h, device=x.device).view(1, h)
    cols = torch.arange(w, device=x.device).view(1, w)
    cols = torch.where(flip.view(n, 1), w - 1 - cols, cols) + left.view(n, 1)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    chan = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[batch, chan, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]


def make_transform(
    preset: str, dataset: str, train: bool, normalisation: str = "dataset"
) -> Transform:
    """The transform of ``preset`` for a dataset's train (``train=True``) or eval splits.

    Sizes, normalisation and which presets crop and flip come from the dataset registry; the
    output size is always ``DATASETS.get(dataset).trained_size(preset)``. ``normalisation`` is
    the config's option (``DatasetInfo.normalisation_for``: ``dataset``, the entry's own, or
    ``sdd``, the SDD code's statistics), the same for train and eval.
    """
    if preset not in PRESETS:
        raise UserError(f"augment: {preset!r} is not allowed; allowed: {', '.join(PRESETS)}")
    info = dataset_spec(dataset)
    size = info.trained_size(preset)
    mean, std = info.normalisation_for(normalisation) or (None, None)
    augment = preset in info.crop_flip_presets and (train or preset in EVAL_AUGMENT_PRESETS)
    padding = CROP_PADDING if augment else 0
    return Transform(preset, dataset, train, size, size, padding, augment, mean, std)
