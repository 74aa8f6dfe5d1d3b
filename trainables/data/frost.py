"""Hendrycks' frost photographs, which LfF's Corrupted CIFAR-10 frost corruption blends in.

The frost corruption adds a crop of a frost-on-glass photograph to the image. Which texture it
adds is a named choice, a "frost layer" (:data:`FROST_LAYERS`):

* ``reference`` (the default): the photographs LfF uses, the same files as in LfF's and
  Hendrycks' repositories, as shipped in the ``imagecorruptions`` 1.1.2 wheel (Apache-2.0;
  ``rest-sweep data fetch frost`` writes them). Every file is checked against
  :data:`FROST_SHA256`, so a bundle made with them is made from exactly those bytes.
* ``procedural``: the seeded ice texture of ``corruption_ops.frost_texture``, a fallback for
  machines without the photographs. It is darker than the photographs and an easier shortcut
  for a classifier (docs/corruptions.md), so a bundle made with it is not comparable with the
  paper.

LfF reads a photograph with OpenCV and shrinks it with ``cv2.resize(fx=0.2, fy=0.2)`` (bilinear).
At exactly 1/5 that resize samples every fifth pixel starting at the third one, so this module
decodes with PIL and slices ``[2::5, 2::5]`` (:func:`downscale_fifth`) and needs no OpenCV.

numpy only at import time; PIL and scipy are imported when a layer is built. The checksums
live with the other pinned raw files (:data:`trainables.data.raw_sources.FROST_SHA256`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainables.data.raw_sources import FROST_SHA256, sha256_of
from trainables.errors import DataError, UserError
from trainables.registry import Registry

# LfF draws the file with randint(5) from the list of six, so frost6 is never used; it is still
# fetched and checked, so a folder is either the complete pinned set or refused.
FROST_USED: tuple[str, ...] = tuple(FROST_SHA256)[:5]
# cv2.resize(fx=0.2, fy=0.2) == [OFFSET::STEP, OFFSET::STEP] (see downscale_fifth)
STEP = 5
OFFSET = 2
DEFAULT_FROST = "reference"

# A frost layer maps ((H, W), rng) to the (H, W, 3) RGB texture in [0, 255] that the frost
# corruption blends in; it draws all its randomness from rng.
FrostLayer = Callable[[tuple[int, int], np.random.Generator], np.ndarray]
# A factory builds a layer from the folder of the photographs (None: the default folder).
FrostFactory = Callable[[Path | None], FrostLayer]


def default_frost_dir() -> Path:
    """Where ``rest-sweep data fetch frost`` writes without ``--out`` (and so where the reference
    layer looks): ``trainables.data.fetch.default_dir("frost")``."""
    from trainables.data.fetch import default_dir  # fetch imports this module

    return default_dir("frost")


def _fix(folder: Path) -> str:
    return f"run `rest-sweep data fetch frost --out {folder}` or pass --frost procedural"


def check_frost_dir(folder: Path) -> None:
    """Refuse ``folder`` unless it holds all six photographs with their pinned SHA-256.

    Each failure is one ``DataError`` line naming the file, the expected checksum and the fix.
    """
    folder = Path(folder).expanduser()
    if not any((folder / name).is_file() for name in FROST_SHA256):
        raise DataError(
            f"frost: no reference frost photographs in {folder} "
            f"({', '.join(FROST_SHA256)}); {_fix(folder)}"
        )
    for name, want in FROST_SHA256.items():
        path = folder / name
        if not path.is_file():
            raise DataError(f"frost: {path} not found (expected SHA-256 {want}); {_fix(folder)}")
        got = sha256_of(path)
        if got != want:
            raise DataError(
                f"frost: {path} has SHA-256 {got}, expected {want}; it is not the pinned "
                f"photograph, {_fix(folder)}"
            )


def decode_rgb(path: Path) -> np.ndarray:
    """A photograph as (H, W, 3) uint8 RGB; an alpha channel is dropped, as OpenCV's
    ``imread`` drops it (the PNGs are RGBA)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def downscale_fifth(image: np.ndarray) -> np.ndarray:
    """``image[2::5, 2::5]``: exactly what ``cv2.resize(image, (0, 0), fx=0.2, fy=0.2)`` gives.

    OpenCV's bilinear resize maps output pixel d to the input coordinate (d + 0.5) * 5 - 0.5 =
    5 d + 2, an integer, so each output pixel copies one input pixel with weight 1. Its output
    size is round(0.2 * n), and ``len(range(2, n, 5))`` is the same number for every n (checked
    against OpenCV on the six photographs and on random arrays of every size mod 5).
    """
    return np.ascontiguousarray(image[OFFSET::STEP, OFFSET::STEP])


def load_frost_photos(folder: Path) -> tuple[np.ndarray, ...]:
    """The five photographs LfF draws from, checked (:func:`check_frost_dir`), decoded to RGB
    and scaled by 1/5 as LfF scales them for 32 px images."""
    folder = Path(folder).expanduser()
    check_frost_dir(folder)
    return tuple(downscale_fifth(decode_rgb(folder / name)) for name in FROST_USED)


@dataclass(frozen=True, eq=False)
class FrostPhotos:
    """The reference frost layer: a random crop of one of the scaled photographs.

    The draws follow LfF's order: the photograph (one of five, uniform), then the crop's top
    row, then its left column, each offset uniform in ``[0, side - crop)`` as LfF's
    ``randint(0, side - 32)``. A plain picklable object, so worker processes get it as an
    argument.
    """

    photos: tuple[np.ndarray, ...]

    @classmethod
    def load(cls, folder: Path | None = None) -> FrostPhotos:
        """The checked photographs of ``folder`` (default :func:`default_frost_dir`)."""
        return cls(load_frost_photos(default_frost_dir() if folder is None else Path(folder)))

    @property
    def max_shape(self) -> tuple[int, int]:
        """The largest (H, W) every photograph can crop with LfF's offset range."""
        return (
            min(p.shape[0] for p in self.photos) - 1,
            min(p.shape[1] for p in self.photos) - 1,
        )

    def __call__(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        h, w = shape
        max_h, max_w = self.max_shape
        if h > max_h or w > max_w:
            raise UserError(
                f"frost: a {h}x{w} image is larger than the scaled reference photographs allow; "
                f"allowed: up to {max_h}x{max_w} (or frost procedural)"
            )
        photo = self.photos[rng.integers(len(self.photos))]
        top = rng.integers(0, photo.shape[0] - h)
        left = rng.integers(0, photo.shape[1] - w)
        return photo[top : top + h, left : left + w]


def _reference(folder: Path | None) -> FrostLayer:
    return FrostPhotos.load(folder)


def _procedural(folder: Path | None) -> FrostLayer:
    from trainables.data.corruption_ops import frost_texture

    return frost_texture


FROST_LAYERS: Registry[FrostFactory] = Registry("frost layer")
FROST_LAYERS.register("reference", _reference)
FROST_LAYERS.register("procedural", _procedural)


def frost_layer(name: str = DEFAULT_FROST, folder: Path | None = None) -> FrostLayer:
    """Build the frost layer ``name`` (``reference`` reads and checks the photographs in
    ``folder``, default :func:`default_frost_dir`; ``procedural`` ignores ``folder``)."""
    return FROST_LAYERS.get(name)(folder)
