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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainables.data.layout import dataset_spec
from trainables.errors import UserError

PRESETS = ("disent", "rest-code", "rest-intended", "none")
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
NATIVE_SIZE = {"cmnist": 28, "cifar10c": 32, "bffhq": 128}


@dataclass(frozen=True)
class Transform:
    """A batched, device-side transform: uint8 NCHW in, float32 NCHW out.

    ``augments`` says whether the output depends on the generator (random crop/flip); a
    transform with ``augments=False`` ignores it and is deterministic.
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

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"transform input: expected uint8 (N, 3, H, W), got {x.dtype} "
                             f"{tuple(x.shape)}")  # fmt: skip
        out = x
        if self.resize is not None and tuple(x.shape[-2:]) != (self.resize, self.resize):
            out = resize_uint8_levels(x, self.resize)
        if self.augments:
            if generator is None:
                raise ValueError(f"transform {self.preset!r} augments and needs a generator")
            top, left, flip = draw_crop_flip(
                out.shape[0], self.crop_padding, self.flip, generator, out.device
            )
            out = crop_flip(out, top, left, flip, self.crop_padding)
        out = out.float().div_(255.0)
        if self.mean is not None and self.std is not None:
            # non_blocking: a blocking host-to-device copy would synchronise the stream per batch
            mean = torch.tensor(self.mean).view(1, 3, 1, 1).to(out.device, non_blocking=True)
            std = torch.tensor(self.std).view(1, 3, 1, 1).to(out.device, non_blocking=True)
            out = out.sub_(mean).div_(std)
        return out


def resize_uint8_levels(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (antialiased) resize to ``size``x``size``, rounded to 0..255 like PIL's output."""
    out = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True,
                        align_corners=False)  # fmt: skip
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


def make_transform(preset: str, dataset: str, train: bool) -> Transform:
    """The transform of ``preset`` for a dataset's train (``train=True``) or eval splits."""
    if preset not in PRESETS:
        raise UserError(f"augment: {preset!r} is not allowed; allowed: {', '.join(PRESETS)}")
    dataset_spec(dataset)
    normalise = dataset != "cmnist"
    mean, std = (CIFAR_MEAN, CIFAR_STD) if normalise else (None, None)
    native = NATIVE_SIZE[dataset]

    def build(size: int, resize: int | None, padding: int, flip: bool) -> Transform:
        return Transform(preset, dataset, train, size, resize, padding, flip, mean, std)

    if preset == "none" or dataset == "cmnist":  # DisEnt and REST: cmnist is ToTensor only
        return build(native, native, 0, False)
    augment_eval = preset == "rest-code"  # REST tests `if not train` on the split string
    augment = train or augment_eval
    if dataset == "cifar10c":
        return build(32, 32, 4 if augment else 0, augment)
    # bffhq
    if preset == "disent":
        return build(224, 224, 4 if train else 0, train)
    return build(128, 128, 0, False)  # REST: Resize(128) + Normalize, the flip branch is dead
