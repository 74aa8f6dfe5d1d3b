"""Decode a list of image files into one uint8 NCHW array (PIL, a thread pool).

PNG decoding in PIL releases the GIL, so a few threads cut the one-off decode of a split
roughly by the core count; the result is identical whatever the thread count.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from trainables.errors import DataError


def read_rgb(path: str | Path) -> np.ndarray:
    """One image as HWC uint8 RGB; an unreadable file is a DataError naming it."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DataError(f"image: cannot decode {path} ({error})") from None


def decode_images(paths: list[str] | list[Path], workers: int | None = None) -> np.ndarray:
    """All images as an ``(N, 3, H, W)`` uint8 array; every image must have the same size."""
    if not paths:
        raise DataError("decode: no image files given")
    workers = workers or min(8, os.cpu_count() or 1)
    first = read_rgb(paths[0])
    out = np.empty((len(paths), 3, *first.shape[:2]), dtype=np.uint8)

    def put(index: int) -> None:
        image = first if index == 0 else read_rgb(paths[index])
        if image.shape != first.shape:
            raise DataError(
                f"image size: {paths[index]} is {image.shape[1]}x{image.shape[0]}, "
                f"expected {first.shape[1]}x{first.shape[0]} like {os.path.basename(paths[0])}"
            )
        out[index] = image.transpose(2, 0, 1)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(put, range(len(paths))):
            pass
    return out
