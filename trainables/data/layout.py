"""Where the files of a DisEnt-format bundle live, and what their names say.

The bundle that REST trains on (DisEnt's Google-Drive folder) is a tree of PNGs whose basename
carries the target and the bias label: ``<id>_<label>_<bias>.<ext>``::

    <root>/<dataset>/<pct>/align/**       train, label == bias
    <root>/<dataset>/<pct>/conflict/**    train, label != bias
    <root>/<dataset>/<pct>/valid/**       flat (cmnist) or nested (cifar10c)
    <root>/<dataset>/valid/**             BFFHQ: valid at the dataset root
    <root>/<dataset>/test/**              shared by every pct

Every lookup here globs recursively and parses the basename with ``pathlib``, so the depth of
``valid`` and the OS path separator do not matter. Nothing is ever downloaded: a missing piece
raises :class:`DataError` naming the expected tree and where the real bundle comes from.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from trainables.datasets import DATASETS, DatasetInfo
from trainables.errors import DataError

BUNDLE_URL = "https://drive.google.com/drive/folders/1JEOqxrhU_IhkdcRohdbuEtFETUxfNmNT"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "valid", "test")
_NAME_RE = re.compile(r"^(?P<id>.+?)_(?P<label>\d+)_(?P<bias>\d+)\.(?:png|jpe?g)$", re.IGNORECASE)
PCT_RE = re.compile(r"^(\d+(?:\.\d+)?)pct$")


@dataclass(frozen=True)
class ImageFile:
    """One file of a split: where it is, its identity and labels, and its train sub-folder."""

    path: str  # a string, not a Path: building 55k Path objects costs about a second
    relpath: str  # relative to the dataset folder, POSIX separators
    id: str
    label: int
    bias: int
    folder: str | None  # "align" / "conflict" (or the "conlict" typo) for train, else None
    size: int = -1  # bytes on disk when listed (the cache manifest hashes it)


def dataset_spec(dataset: str) -> DatasetInfo:
    """The registry entry of ``dataset`` (``trainables.datasets``); unknown names are a
    :class:`DataError` listing the registered ones."""
    if dataset not in DATASETS:
        raise DataError(f"dataset: {dataset!r} is not allowed; allowed: {', '.join(DATASETS)}")
    return DATASETS.get(dataset)


def resolve_data_root(data_root: str | os.PathLike | None) -> Path:
    """An explicit root wins, then ``$REST_DATA_ROOT``, then ``./dataset`` (REST's default)."""
    text = os.fspath(data_root) if data_root else ""
    return Path(text or os.environ.get("REST_DATA_ROOT") or "dataset").expanduser()


def expected_tree(dataset: str) -> str:
    """The one-line description of the expected layout that every missing-data error carries."""
    at_root = dataset in DATASETS and DATASETS.get(dataset).valid_at_root
    valid = f"{dataset}/valid/*" if at_root else f"{dataset}/<pct>/valid/**"
    return (
        f"expected <root>/{dataset}/<pct>/{{align,conflict}}/**, <root>/{valid}, "
        f"<root>/{dataset}/test/** with files <id>_<label>_<bias>.png; get the DisEnt bundle "
        f"(REST README) from {BUNDLE_URL} or make a stand-in with `rest-sweep data make`"
    )


def ratio_folder(ratio: float | int | str) -> str:
    """``0.5``/``"0.5pct"`` -> ``"0.5pct"``, ``1``/``1.0``/``"1pct"`` -> ``"1pct"``.

    These are REST's folder names."""
    text = str(ratio).strip().lower().removesuffix("pct")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value < 100):
        raise DataError(
            f"ratio: {ratio!r} is not allowed; allowed: a conflicting percentage in (0, 100) "
            "such as 0.5, 1, 2, 5 or 0.5pct, 1pct, 2pct, 5pct"
        )
    return f"{value:g}pct"


def ratio_value(ratio: float | int | str) -> float:
    """The conflicting percentage as a float (``"0.5pct"`` -> 0.5)."""
    return float(ratio_folder(ratio).removesuffix("pct"))


def dataset_dir(data_root: str | os.PathLike | None, dataset: str) -> Path:
    """``<root>/<dataset>``, checked to exist; the error names the expected tree."""
    dataset_spec(dataset)
    root = resolve_data_root(data_root)
    if not root.is_dir():
        raise DataError(f"data root not found: {root}; {expected_tree(dataset)}")
    folder = root / dataset
    if not folder.is_dir():
        raise DataError(f"dataset folder not found: {folder}; {expected_tree(dataset)}")
    return folder


def available_ratios(data_root: str | os.PathLike | None, dataset: str) -> list[float]:
    """The conflicting percentages that have a train split (``<pct>/align``), sorted."""
    folder = dataset_dir(data_root, dataset)
    found = []
    for child in folder.iterdir():
        match = PCT_RE.match(child.name)
        if match and child.is_dir() and (child / "align").is_dir():
            found.append(float(match.group(1)))
    return sorted(found)


def conflict_dir(pct_dir: Path) -> Path | None:
    """``conflict/``, or the ``conlict/`` spelling of the DisEnt README if only that exists."""
    for name in ("conflict", "conlict"):
        if (pct_dir / name).is_dir():
            return pct_dir / name
    return None


def split_dirs(
    data_root: str | os.PathLike | None, dataset: str, ratio: float | int | str, split: str
) -> list[tuple[Path, str | None]]:
    """The folders a split is read from, each with its train sub-folder name (or None)."""
    if split not in SPLITS:
        raise DataError(f"split: {split!r} is not allowed; allowed: {', '.join(SPLITS)}")
    folder = dataset_dir(data_root, dataset)
    pct = folder / ratio_folder(ratio)
    if split == "train":
        align, conflict = pct / "align", conflict_dir(pct)
        if conflict is None and align.is_dir() and not dataset_spec(dataset).biased:
            return [(align, "align")]  # an unbiased dataset: every sample is aligned
        if not align.is_dir() or conflict is None:
            missing = align if not align.is_dir() else pct / "conflict"
            raise DataError(f"train split not found: {missing}; {expected_tree(dataset)}")
        return [(align, "align"), (conflict, conflict.name)]
    candidates = (
        [pct / split, folder / split] if split == "valid" else [folder / split, pct / split]
    )
    for candidate in candidates:
        if candidate.is_dir():
            return [(candidate, None)]
    raise DataError(f"{split} split not found: {candidates[0]}; {expected_tree(dataset)}")


def scan_images(directory: Path) -> list[tuple[str, int]]:
    """``(path, size)`` of the image files under ``directory`` at any depth, sorted by path.

    Hidden entries (``._x.png`` from macOS archives, ``.cache/``) are skipped. ``os.scandir``
    with one stat per file: listing 55k files this way is several times faster than rglob.
    """
    found, stack = [], [os.fspath(directory)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    stack.append(entry.path)
                elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES and entry.is_file():
                    found.append((entry.path, entry.stat().st_size))
    found.sort()
    return found


def parse_name(path: str | os.PathLike) -> tuple[str, int, int]:
    """``(id, label, bias)`` from a basename ``<id>_<label>_<bias>.<ext>``."""
    match = _NAME_RE.match(os.path.basename(path))
    if match is None:
        raise DataError(
            f"file name: {path} does not match <id>_<label>_<bias>.png (also .jpg/.jpeg)"
        )
    return match.group("id"), int(match.group("label")), int(match.group("bias"))


def list_split(
    data_root: str | os.PathLike | None, dataset: str, ratio: float | int | str, split: str
) -> list[ImageFile]:
    """Every file of a split, parsed, in a fixed order (sorted relative path)."""
    prefix = len(os.fspath(dataset_dir(data_root, dataset))) + 1
    files = []
    for directory, sub in split_dirs(data_root, dataset, ratio, split):
        scanned = scan_images(directory)
        if not scanned:
            raise DataError(f"{split} split is empty: no images under {directory}")
        for path, size in scanned:
            ident, label, bias = parse_name(path)
            rel = path[prefix:].replace(os.sep, "/")
            files.append(ImageFile(path, rel, ident, label, bias, sub, size))
    files.sort(key=lambda f: f.relpath)
    return files
