"""Decoded splits cached as uint8 tensor files, keyed by a manifest of the bundle.

Decoding 60k PNGs costs tens of seconds; every trial of a sweep needs the same splits. The first
load of a split decodes it once and writes ``<cache>/<dataset>_<split>_<pct>_<hash>.pt``; later
loads read that file in about a second. The hash covers the split's relative file paths and
sizes, so a changed, added, removed or half-extracted file gives a new key (a fresh decode),
never stale tensors. Writes are atomic (temporary name + ``os.replace``) and a per-key file lock
lets concurrent trials on one host wait for a single decode instead of repeating it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from trainables.data.decode import decode_images
from trainables.data.layout import (
    PCT_RE,
    SPLITS,
    ImageFile,
    dataset_spec,
    list_split,
    resolve_data_root,
)
from trainables.errors import DataError

CACHE_FORMAT = 1
CACHE_ENV = "REST_SWEEP_CACHE"


@dataclass(frozen=True)
class SplitTensors:
    """One split on the CPU: images uint8 (N, 3, H, W), labels and bias int64 (N), file ids."""

    images: torch.Tensor
    labels: torch.Tensor
    bias: torch.Tensor
    ids: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def joined(self, other: SplitTensors) -> SplitTensors:
        """This split followed by ``other`` (train + valid for ``train_on_valid``): a fixed
        order, so the data order and the label-noise draw over the union are reproducible."""
        return SplitTensors(
            images=torch.cat([self.images, other.images]),
            labels=torch.cat([self.labels, other.labels]),
            bias=torch.cat([self.bias, other.bias]),
            ids=[*self.ids, *other.ids],
        )


def cache_dir_for(data_root: str | os.PathLike | None, cache_dir: str | None = None) -> Path:
    """Explicit dir, else ``$REST_SWEEP_CACHE``, else ``<root>/.rest-sweep-cache`` if the root
    is writable, else ``~/.cache/rest-sweep``."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    root = resolve_data_root(data_root)
    if os.access(root, os.W_OK):
        return root / ".rest-sweep-cache"
    return Path.home() / ".cache" / "rest-sweep"


def manifest_hash(files: list[ImageFile]) -> str:
    """sha256 over (relative path, size) of every file, in the split's fixed order."""
    digest = hashlib.sha256(f"rest-sweep-cache-v{CACHE_FORMAT}\n".encode())
    for f in files:
        size = f.size
        if size < 0:
            try:
                size = os.stat(f.path).st_size
            except OSError as error:
                raise DataError(f"image: cannot stat {f.path} ({error})") from None
        digest.update(f"{f.relpath}\t{size}\n".encode())
    return digest.hexdigest()


def cache_key(dataset: str, split: str, files: list[ImageFile]) -> str:
    """File stem of a split's cache entry: ``<dataset>_<split>_<scope>_<where>_<content>``.

    A split read from the dataset root (the shared test, BFFHQ's valid) has scope ``shared``,
    so every ratio reuses one decode of it. ``<where>`` hashes the bundle's folder, so two
    bundles sharing one cache dir never evict each other; ``<content>`` is the manifest hash.
    """
    top = files[0].relpath.split("/", 1)[0] if files else ""
    scope = top if PCT_RE.match(top) else "shared"
    folder = os.path.abspath(files[0].path)[: -len(files[0].relpath)] if files else ""
    where = hashlib.sha256(folder.encode()).hexdigest()[:8]
    return f"{dataset}_{split}_{scope}_{where}_{manifest_hash(files)[:20]}"


def _prefix(key: str) -> str:
    return key.rsplit("_", 1)[0] + "_"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (POSIX); where flock is missing the caller just decodes."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read(path: Path) -> SplitTensors | None:
    """The cached split, or None when the file is absent, unreadable or of another format."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a torn or foreign file is a cache miss, never an error
        return None
    if not isinstance(blob, dict) or blob.get("format") != CACHE_FORMAT:
        return None
    return SplitTensors(blob["images"], blob["labels"], blob["bias"], list(blob["ids"]))


def _write(path: Path, split: SplitTensors) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    blob = {
        "format": CACHE_FORMAT,
        "images": split.images,
        "labels": split.labels,
        "bias": split.bias,
        "ids": split.ids,
    }
    try:
        # Through a Python file: a full disk is then an OSError (ENOSPC) naming the entry, not
        # torch's RuntimeError from its own writer; the temporary goes either way.
        with open(tmp, "wb") as handle:
            torch.save(blob, handle)
        os.replace(tmp, path)
    except OSError as error:
        if error.filename is not None:
            raise
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error
    finally:
        tmp.unlink(missing_ok=True)


def _prune(directory: Path, key: str) -> None:
    """Drop older entries of the same split (other hashes): the bundle they describe is gone."""
    for old in directory.glob(_prefix(key) + "*.pt"):
        if old.stem != key:
            old.unlink(missing_ok=True)
    for lock in directory.glob(f".{_prefix(key)}*.lock"):
        if lock.name != f".{key}.lock":
            lock.unlink(missing_ok=True)


def decode_split(files: list[ImageFile]) -> SplitTensors:
    """Decode a parsed file list into tensors (no cache)."""
    images = decode_images([f.path for f in files])
    return SplitTensors(
        images=torch.from_numpy(images),
        labels=torch.tensor([f.label for f in files], dtype=torch.int64),
        bias=torch.tensor([f.bias for f in files], dtype=torch.int64),
        ids=[f.id for f in files],
    )


def _check_ranges(split: SplitTensors, dataset: str, where: str) -> None:
    k = dataset_spec(dataset).num_classes
    for name, values in (("label", split.labels), ("bias", split.bias)):
        if len(values) and (int(values.min()) < 0 or int(values.max()) >= k):
            bad = int(values.max()) if int(values.max()) >= k else int(values.min())
            raise DataError(f"{name}: {bad} in {where} is out of range; allowed: 0..{k - 1}")


def load_split(
    data_root: str | os.PathLike | None,
    dataset: str,
    ratio: float | str,
    split: str,
    cache_dir: str | None = None,
) -> SplitTensors:
    """One split (``train``/``valid``/``test``) as CPU tensors, decoded at most once per bundle."""
    files = list_split(data_root, dataset, ratio, split)
    key = cache_key(dataset, split, files)
    directory = cache_dir_for(data_root, cache_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{key}.pt"
    cached = _read(path)
    if cached is None:
        with _locked(directory / f".{key}.lock"):
            cached = _read(path)  # another process may have decoded it while we waited
            if cached is None:
                cached = decode_split(files)
                _check_ranges(cached, dataset, f"{dataset}/{split}")
                _write(path, cached)
                _prune(directory, key)
    return cached


def load_splits(
    data_root: str | os.PathLike | None,
    dataset: str,
    ratio: float | str,
    cache_dir: str | None = None,
) -> dict[str, SplitTensors]:
    """``{"train", "valid", "test"}`` -> :class:`SplitTensors` for one (dataset, ratio)."""
    return {split: load_split(data_root, dataset, ratio, split, cache_dir) for split in SPLITS}
