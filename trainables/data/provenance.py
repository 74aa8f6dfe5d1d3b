"""Which data a trial's numbers come from: a bundle's ``source.json``, normalised.

A generated bundle says what it is in ``<data_root>/<dataset>/source.json`` (``title`` such as
"Colored Fashion-MNIST", ``images``, ``stand_in``, ``comparable`` and the generator settings);
the authors' download has no such file and is the paper's own data. A trial reads it once at
set-up and records :func:`data_source`'s dict as ``summary.json``'s ``data_source``; the
analysis reads that record back with :func:`trial_data_source` (docs/analysis.md, "Which data").
Torch-free: the analysis imports it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainables.data.layout import resolve_data_root
from trainables.data.verify import read_source_record
from trainables.datasets import DATASETS

# What a bundle without source.json is taken to be (docs/data.md: the DisEnt download).
AUTHORS_IMAGES = "the authors' bundle (no source.json)"
# Where the analysis found a trial's data source (the ``data_record`` column).
FROM_SUMMARY = "summary"
FROM_DATA_ROOT = "data root"
NOT_RECORDED = "none"


def registry_title(dataset: str) -> str:
    """The registry's long name of ``dataset`` ("Colored MNIST"), else the name itself."""
    return DATASETS.get(dataset).title if dataset in DATASETS else dataset


def data_source(dataset: str, record: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``data_source`` of a trial on a bundle whose ``source.json`` is ``record``.

    Every key of ``record`` is kept (generator settings, seed, sizes) and ``title``,
    ``images``, ``stand_in`` and ``comparable`` are always set; a record that does not say it
    is comparable is not. ``None`` (no source.json) is the authors' bundle: the registry's
    title, comparable with the paper."""
    if record is None:
        return {
            "title": registry_title(dataset),
            "images": AUTHORS_IMAGES,
            "stand_in": False,
            "comparable": True,
        }
    out = dict(record)
    out["title"] = str(record.get("title") or registry_title(dataset))
    out["images"] = str(record.get("images") or "not recorded")
    out["comparable"] = record.get("comparable") is True
    out["stand_in"] = bool(record.get("stand_in", not out["comparable"]))
    return out


def bundle_source(data_root: str | os.PathLike | None, dataset: str) -> dict[str, Any]:
    """What a trial training on ``<data_root>/<dataset>`` records (read once, at set-up)."""
    folder = resolve_data_root(data_root) / dataset
    return data_source(dataset, read_source_record(folder))


def trial_data_source(
    dataset: str,
    summary: Mapping[str, Any] | None,
    data_root: str | None,
    cache: dict[tuple[str, str], dict[str, Any] | None] | None = None,
) -> tuple[dict[str, Any] | None, str]:
    """``(data_source, where it was found)`` of a trial, for the analysis.

    The trial's own record (``summary.json``'s ``data_source``: "summary") wins. A trial
    without one (not finished yet, or older than the record) falls back to
    ``<data_root>/<dataset>/source.json`` as it is now ("data root"). Otherwise the source is
    unknown: ``(None, "none")``; a missing source.json is *not* taken to be the authors'
    bundle here, since bundles generated before source.json existed have none either.
    ``cache`` (keyed by root and dataset) saves re-reading the file for every trial."""
    recorded = (summary or {}).get("data_source")
    if isinstance(recorded, Mapping):
        return data_source(dataset, recorded), FROM_SUMMARY
    if not data_root:
        return None, NOT_RECORDED
    key = (str(data_root), dataset)
    if cache is None or key not in cache:
        record = read_source_record(Path(data_root) / dataset)
        found = None if record is None else data_source(dataset, record)
        if cache is not None:
            cache[key] = found
    else:
        found = cache[key]
    return (found, FROM_DATA_ROOT) if found is not None else (None, NOT_RECORDED)
