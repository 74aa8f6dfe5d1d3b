"""Decode a list of image files into one uint8 NCHW array (PIL, in parallel processes).

PIL spends most of the time for a small PNG in Python (plugin set-up, ``tobytes``), so threads
barely help: a 70k-image split takes ~30 s with a thread pool even on 16 cores. Large splits are
therefore decoded in chunks by forked worker processes, as torch's DataLoader does (the children
only run PIL and numpy, never CUDA). ``spawn``/``forkserver`` are not used: they re-import the
caller's ``__main__``, which re-runs an unguarded script. The result is identical whatever the
worker count; without ``fork`` (macOS, Windows) or where processes cannot be started (a daemonic
parent) it decodes in this process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from trainables.errors import DataError

PARALLEL_MIN = 4000  # below this, starting processes costs more than it saves
CHUNK = 1024
SAMPLE = 5  # images spread over a split whose most common size is the split's size


def read_rgb(path: str | Path) -> np.ndarray:
    """One image as HWC uint8 RGB; an unreadable file is a DataError naming it."""
    try:
        with Image.open(path) as image:
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            return np.asarray(rgb, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DataError(f"image: cannot decode {path} ({error})") from None


def decode_chunk(paths: list[str], shape: tuple[int, ...], reference: str) -> np.ndarray:
    """``(len(paths), 3, H, W)`` uint8; every image must have ``shape`` (H, W, 3)."""
    out = np.empty((len(paths), 3, *shape[:2]), dtype=np.uint8)
    for i, path in enumerate(paths):
        image = read_rgb(path)
        if image.shape != shape:
            raise DataError(
                f"image size: {path} is {image.shape[1]}x{image.shape[0]}, expected "
                f"{shape[1]}x{shape[0]} like the other images of its split (e.g. "
                f"{os.path.basename(reference)}); `rest-sweep data verify` lists every odd image"
            )
        out[i] = image.transpose(2, 0, 1)
    return out


def default_workers() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's core count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _decode_in_processes(
    paths: list[str], shape: tuple[int, ...], workers: int, reference: str
) -> list[np.ndarray] | None:
    """Chunks decoded by forked worker processes, or None where that is not possible."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return None
    context = multiprocessing.get_context("fork")
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(decode_chunk, chunk, shape, reference) for chunk in chunks]
            return [future.result() for future in futures]
    except (AssertionError, BrokenProcessPool, OSError):  # daemonic parent, no /dev/shm...
        return None


def split_shape(names: list[str]) -> tuple[tuple[int, ...], str]:
    """The (H, W, 3) shape every image of ``names`` must have, and an image that has it: the
    most common shape of :data:`SAMPLE` images spread over the list (first and last
    included), so one odd image, even the first, is the one an error names."""
    last = len(names) - 1
    picks = sorted({round(i * last / (SAMPLE - 1)) for i in range(SAMPLE)})
    shapes = [(read_rgb(names[i]).shape, names[i]) for i in picks]
    counts = Counter(shape for shape, _ in shapes)
    common = max(counts, key=lambda shape: counts[shape])  # a tie: the earliest
    return common, next(name for shape, name in shapes if shape == common)


def decode_images(paths: list[str] | list[Path], workers: int | None = None) -> np.ndarray:
    """All images as an ``(N, 3, H, W)`` uint8 array; every image must have the same size
    (:func:`split_shape`), else a one-line DataError names the odd one."""
    if not paths:
        raise DataError("decode: no image files given")
    names = [os.fspath(p) for p in paths]
    shape, reference = split_shape(names)
    workers = min(workers or default_workers(), 32)
    if workers > 1 and len(names) >= PARALLEL_MIN:
        parts = _decode_in_processes(names, shape, workers, reference)
        if parts is not None:
            return np.concatenate(parts)
    return decode_chunk(names, shape, reference)


# ---------------------------------------------------------------------- checking (data verify)
Problem = tuple[str, str, str]  # (path, "decode" | "size", error text or "WxH")


def probe_chunk(paths: list[str], sizes: tuple[int, ...]) -> list[Problem]:
    """Decode every image fully; report the ones that fail or are not square of ``sizes``."""
    problems: list[Problem] = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.load()  # the whole stream: a truncated or garbled file fails here
                width, height = image.size
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
            problems.append((path, "decode", str(error).splitlines()[0] if str(error) else ""))
            continue
        if width != height or width not in sizes:
            problems.append((path, "size", f"{width}x{height}"))
    return problems


def find_bad_images(
    paths: list[str], sizes: tuple[int, ...], workers: int | None = None
) -> list[Problem]:
    """Every image of ``paths`` decoded (in forked worker processes for large lists, as
    :func:`decode_images` does); returns the problems in ``paths`` order."""
    names = [os.fspath(p) for p in paths]
    workers = min(workers or default_workers(), 32)
    if (
        workers > 1
        and len(names) >= PARALLEL_MIN
        and "fork" in multiprocessing.get_all_start_methods()
    ):
        chunks = [names[i : i + CHUNK] for i in range(0, len(names), CHUNK)]
        try:
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = [pool.submit(probe_chunk, chunk, sizes) for chunk in chunks]
                return [problem for future in futures for problem in future.result()]
        except (AssertionError, BrokenProcessPool, OSError):  # daemonic parent, no /dev/shm...
            pass
    return probe_chunk(names, sizes)
