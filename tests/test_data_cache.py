"""The uint8 split cache: contents, hits, invalidation, cache-dir choice, load speed."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.fixtures.data import small_layout, write_bundle, write_png
from trainables.data import SplitTensors, load_split, load_splits
from trainables.data.cache import cache_dir_for
from trainables.errors import DataError


def _entries(cache: Path, split: str = "train") -> list[Path]:
    return sorted(cache.glob(f"cmnist_{split}_*.pt"))


def test_split_contents_match_the_files(tmp_path):
    root = write_bundle(tmp_path / "root", "cmnist", small_layout("cmnist"))
    split = load_split(root, "cmnist", 1, "train", cache_dir=str(tmp_path / "cache"))
    assert isinstance(split, SplitTensors)
    assert split.images.dtype == torch.uint8 and split.images.shape == (6, 3, 28, 28)
    assert split.labels.dtype == torch.int64 and split.bias.dtype == torch.int64
    for i, ident in enumerate(split.ids):
        path = next((root / "cmnist").rglob(f"{ident}_*.png"))
        _, label, bias = path.stem.split("_")
        assert (int(split.labels[i]), int(split.bias[i])) == (int(label), int(bias))
        pixels = np.array(Image.open(path).convert("RGB")).transpose(2, 0, 1).copy()
        assert torch.equal(split.images[i], torch.from_numpy(pixels))


def test_second_load_hits_the_cache(tmp_path, monkeypatch):
    root = write_bundle(tmp_path / "root", "cmnist", small_layout("cmnist"))
    cache = str(tmp_path / "cache")
    first = load_splits(root, "cmnist", "1pct", cache_dir=cache)
    import trainables.data.cache as cache_module

    def fail(_files):
        raise AssertionError("decoded again although the bundle did not change")

    monkeypatch.setattr(cache_module, "decode_split", fail)
    second = load_splits(root, "cmnist", 1.0, cache_dir=cache)
    for name in ("train", "valid", "test"):
        assert torch.equal(first[name].images, second[name].images)
        assert first[name].ids == second[name].ids


@pytest.mark.parametrize("change", ["changed", "added", "removed"])
def test_bundle_change_invalidates_the_cache(tmp_path, change):
    root = write_bundle(tmp_path / "root", "cmnist", small_layout("cmnist"))
    cache = tmp_path / "cache"
    before = load_split(root, "cmnist", 1, "train", cache_dir=str(cache))
    old_entry = _entries(cache)
    align = root / "cmnist" / "1pct" / "align" / "0"
    victim = sorted(align.glob("*.png"))[0]
    if change == "changed":  # different content and size: a re-extracted, different file
        Image.fromarray(
            np.random.default_rng(0).integers(0, 255, (28, 28, 3), dtype=np.uint8)
        ).save(victim)
    elif change == "added":
        write_png(align / "77_0_0.png", value=3)
    else:  # a partial bundle: a file is missing
        victim.unlink()
    after = load_split(root, "cmnist", 1, "train", cache_dir=str(cache))
    assert _entries(cache) != old_entry and len(_entries(cache)) == 1  # old entry pruned
    expected = {"changed": 6, "added": 7, "removed": 5}[change]
    assert len(after) == expected
    if change == "changed":
        i = after.ids.index(victim.stem.split("_")[0])
        assert not torch.equal(after.images[i], before.images[i])


def test_torn_cache_file_is_a_miss(tmp_path):
    root = write_bundle(tmp_path / "root", "cmnist", small_layout("cmnist"))
    cache = tmp_path / "cache"
    good = load_split(root, "cmnist", 1, "test", cache_dir=str(cache))
    entry = _entries(cache, "test")[0]
    entry.write_bytes(entry.read_bytes()[:100])
    again = load_split(root, "cmnist", 1, "test", cache_dir=str(cache))
    assert torch.equal(good.images, again.images)
    assert not list(cache.glob("*.tmp"))


def test_test_split_is_shared_between_ratios(tmp_path):
    root = write_bundle(tmp_path / "root", "cmnist", small_layout("cmnist", pct="1pct"))
    write_bundle(root, "cmnist", small_layout("cmnist", pct="5pct"))
    cache = tmp_path / "cache"
    load_split(root, "cmnist", 1, "test", cache_dir=str(cache))
    load_split(root, "cmnist", 5, "test", cache_dir=str(cache))
    assert len(_entries(cache, "test")) == 1 and "_shared_" in _entries(cache, "test")[0].name


def test_mixed_image_sizes_fail_with_the_file(tmp_path):
    root = write_bundle(tmp_path / "root", "cmnist", small_layout("cmnist"))
    write_png(root / "cmnist" / "test" / "0" / "80_0_0.png", size=30)
    with pytest.raises(DataError, match="80_0_0.png is 30x30"):
        load_split(root, "cmnist", 1, "test", cache_dir=str(tmp_path / "cache"))


def test_cache_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("REST_SWEEP_CACHE", raising=False)
    assert cache_dir_for(tmp_path, "/explicit") == Path("/explicit")
    assert cache_dir_for(tmp_path) == tmp_path / ".rest-sweep-cache"
    monkeypatch.setenv("REST_SWEEP_CACHE", str(tmp_path / "env"))
    assert cache_dir_for(tmp_path) == tmp_path / "env"
    monkeypatch.delenv("REST_SWEEP_CACHE")
    if os.geteuid() != 0:  # root can write anywhere
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o555)
        assert cache_dir_for(locked) == Path.home() / ".cache" / "rest-sweep"


def test_load_speed_from_cache(tiny_cmnist_root, tmp_path):
    """Measure (print) decode vs cached load on the tiny bundle; no timing assertion."""
    root = tmp_path / "copy"
    shutil.copytree(tiny_cmnist_root / "cmnist", root / "cmnist")
    cache = str(tmp_path / "cache")
    started = time.perf_counter()
    first = load_splits(root, "cmnist", 5, cache_dir=cache)
    decoded = time.perf_counter() - started
    started = time.perf_counter()
    second = load_splits(root, "cmnist", 5, cache_dir=cache)
    cached = time.perf_counter() - started
    n = sum(len(s) for s in first.values())
    print(f"\n{n} images: decode {decoded:.2f} s, from cache {cached:.3f} s")
    assert torch.equal(first["train"].images, second["train"].images)
    assert {k: len(v) for k, v in second.items()} == {"train": 2000, "valid": 300, "test": 1000}


def test_parallel_decode_matches_serial(tiny_cmnist_root, monkeypatch):
    import trainables.data.decode as decode
    from trainables.data.layout import list_split

    paths = [f.path for f in list_split(tiny_cmnist_root, "cmnist", 1, "test")][:600]
    serial = decode.decode_images(paths, workers=1)
    monkeypatch.setattr(decode, "PARALLEL_MIN", 100)
    monkeypatch.setattr(decode, "CHUNK", 128)
    parallel = decode.decode_images(paths, workers=2)
    assert parallel.shape == (600, 3, 28, 28) and np.array_equal(serial, parallel)
