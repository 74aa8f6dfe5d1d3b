"""Write a generated stand-in in the DisEnt layout, shared by the cmnist and cifar10c makers.

A maker supplies the source images (train and test) and a ``render`` function that turns gray
or clean images plus bias labels into biased RGB images; this module decides the splits, the
bias labels (exact quotas), the ids (unique across splits) and the file tree, and publishes
the dataset folder atomically: it is built under a hidden temporary name and renamed into place,
so a crash never leaves something that looks like a bundle.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from trainables.data.bias import assign_bias, assign_unbiased, stream_rng, stream_seed
from trainables.data.layout import ratio_folder
from trainables.errors import UserError

# The provenance file a generator writes into the dataset folder; `data verify` copies it into
# manifest.json as "source" (docs/data.md, "Where a bundle's images come from").
SOURCE_FILE = "source.json"
SEED_MAX = 2**64 - 1  # bias.stream_seed takes a seed's low 64 bits: a larger one would alias
# render(images, labels, bias, seed_sequence) -> (N, H, W, 3) uint8
Render = Callable[[np.ndarray, np.ndarray, np.ndarray, np.random.SeedSequence], np.ndarray]


@dataclass(frozen=True)
class BundlePlan:
    """What to generate: split sizes, ratios and the seed (the CLI flags of ``data make``)."""

    dataset: str
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0)
    valid_size: int = 5000
    limit: int | None = None  # cap on train images
    test_size: int | None = None  # cap on test images
    seed: int = 0
    nested_valid: bool = False
    num_classes: int = 10
    unbiased: bool = False  # a plain classification dataset: bias = label (docs/data.md)

    def check(self, n_train_source: int, n_test_source: int | None = None) -> None:
        """One-line errors for sizes the source cannot give (a cap beyond the source is
        refused, not quietly ignored) and a seed beyond what the streams take."""
        if not 0 <= self.seed <= SEED_MAX:
            raise UserError(
                f"seed: {self.seed} is not allowed; allowed: an integer from 0 to {SEED_MAX} "
                "(the 64 bits the generator's random streams take)"
            )
        if not self.ratios:
            raise UserError("ratios: empty; allowed: a comma list such as 0.5,1,2,5")
        for ratio in self.ratios:
            ratio_folder(ratio)
        if self.valid_size < 1 or self.valid_size >= n_train_source:
            raise UserError(
                f"valid_size: {self.valid_size} is not allowed; allowed: "
                f"1..{n_train_source - 1} (the source has {n_train_source} train "
                "images)"
            )
        left = n_train_source - self.valid_size
        caps = (
            ("limit", left, f"{n_train_source} train images, {self.valid_size} held out for valid"),
            ("test_size", n_test_source, f"{n_test_source} test images"),
        )
        for name, most, has in caps:
            value = getattr(self, name)
            if value is None:
                continue
            if value <= 0:
                raise UserError(f"{name}: {value} is not allowed; allowed: a positive integer")
            if most is not None and value > most:
                raise UserError(
                    f"{name}: {value} is not allowed; allowed: 1..{most} (the source has {has})"
                )


def png_bytes(image: np.ndarray) -> bytes:
    """Lossless PNG of an HWC uint8 image, with no metadata (same pixels -> same bytes)."""
    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _write_all(root: Path, files: list[tuple[str, np.ndarray]]) -> None:
    for parent in sorted({str(Path(rel).parent) for rel, _ in files}):
        (root / parent).mkdir(parents=True, exist_ok=True)

    def write(item: tuple[str, np.ndarray]) -> None:
        (root / item[0]).write_bytes(png_bytes(item[1]))

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for _ in pool.map(write, files):
            pass


def _name(ident: int, label: int, bias: int) -> str:
    return f"{ident}_{label}_{bias}.png"


def _publish(staging: Path, target: Path) -> None:
    """Swap the finished staging folder into place; an old bundle is removed only after."""
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def write_bundle(
    plan: BundlePlan,
    out: Path,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    render: Render,
    *,
    provenance: dict[str, object],
    overwrite: bool = False,
) -> Path:
    """Generate ``<out>/<dataset>/`` from source (images, labels) pairs; returns that folder.

    ``provenance`` (which images, which generator settings; see
    :mod:`trainables.data.raw_sources`) is written as ``<dataset>/source.json`` with the
    split sizes and the seed added, inside the folder published atomically."""
    target = Path(out) / plan.dataset
    if target.exists() and not overwrite:
        raise UserError(f"out: {target} already exists; pass --overwrite or choose another --out")
    plan.check(len(train[0]), len(test[0]))
    order = stream_rng(plan.seed, "split").permutation(len(train[0]))
    valid_idx = order[: plan.valid_size]
    train_idx = order[plan.valid_size :][: plan.limit]
    test_idx = stream_rng(plan.seed, "test-subset").permutation(len(test[0]))[: plan.test_size]
    ids = {
        "train": np.arange(len(train_idx)),
        "valid": len(train_idx) + np.arange(len(valid_idx)),
        "test": len(train_idx) + len(valid_idx) + np.arange(len(test_idx)),
    }
    staging = Path(out) / f".{plan.dataset}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        for ratio in plan.ratios:
            pct = ratio_folder(ratio)
            for split, idx in (("train", train_idx), ("valid", valid_idx)):
                files = _render_split(plan, pct, split, train, idx, ids[split], ratio, render)
                _write_all(staging, files)
        files = _render_split(plan, "", "test", test, test_idx, ids["test"], None, render)
        _write_all(staging, files)
        record = {
            **provenance,
            "dataset": plan.dataset,
            "seed": plan.seed,
            "ratios": [float(r) for r in plan.ratios],
            "sizes": {"train": len(train_idx), "valid": len(valid_idx), "test": len(test_idx)},
        }
        text = json.dumps(record, indent=2, sort_keys=True) + "\n"
        (staging / SOURCE_FILE).write_text(text)
        _publish(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _render_split(
    plan: BundlePlan,
    pct: str,
    split: str,
    source: tuple[np.ndarray, np.ndarray],
    idx: np.ndarray,
    ids: np.ndarray,
    ratio: float | None,
    render: Render,
) -> list[tuple[str, np.ndarray]]:
    """Bias labels and rendered images of one split, with their relative file paths."""
    labels = source[1][idx]
    rng = stream_rng(plan.seed, "bias", pct or "shared", split)
    if plan.unbiased:
        bias = labels.copy()
    elif ratio is None:
        bias = assign_unbiased(labels, plan.num_classes, rng)
    else:
        bias = assign_bias(labels, float(ratio), plan.num_classes, rng)
        if split == "train" and (bias == labels).all():
            raise UserError(
                f"limit: {len(labels)} train images give no conflicting image at {ratio:g}% "
                f"(each class rounds to 0); allowed: at least ~{int(50 / ratio) * plan.num_classes}"
                " train images for this ratio"
            )
    images = render(source[0][idx], labels, bias, stream_seed(plan.seed, "render", pct, split))
    files = []
    for ident, y, b, image in zip(
        ids.tolist(), labels.tolist(), bias.tolist(), images, strict=True
    ):
        name = _name(ident, y, b)
        if split == "train":
            rel = f"{pct}/{'align' if y == b else 'conflict'}/{y}/{name}"
        elif split == "valid":
            rel = f"{pct}/valid/{y}/{name}" if plan.nested_valid else f"{pct}/valid/{name}"
        else:
            rel = f"test/{y}/{name}"
        files.append((rel, image))
    return files
