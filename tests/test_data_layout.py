"""Bundle layout: ratio names, label parsing, flat/nested valid, BFFHQ root splits, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.data import small_layout, write_bundle, write_png
from trainables.data.layout import (
    BUNDLE_URL,
    available_ratios,
    list_split,
    parse_name,
    ratio_folder,
    ratio_value,
    resolve_data_root,
)
from trainables.errors import DataError


@pytest.mark.parametrize(
    ("given", "folder"),
    [
        (0.5, "0.5pct"),
        (1, "1pct"),
        (2, "2pct"),
        (5, "5pct"),
        (1.0, "1pct"),
        ("0.5", "0.5pct"),
        ("0.5pct", "0.5pct"),
        ("1pct", "1pct"),
        ("5.0", "5pct"),
        (" 2pct ", "2pct"),
    ],
)
def test_ratio_folder_accepts_every_spelling(given, folder):
    assert ratio_folder(given) == folder
    assert ratio_value(given) == float(folder.removesuffix("pct"))


@pytest.mark.parametrize("bad", [0, -1, 100, "abc", "pct", "nan"])
def test_ratio_folder_rejects_with_one_line(bad):
    with pytest.raises(DataError, match="ratio") as info:
        ratio_folder(bad)
    assert "\n" not in str(info.value) and "0.5pct" in str(info.value)


def test_parse_name_uses_the_basename_only(tmp_path):
    assert parse_name(Path("a_9_9/dir_1_2/123_4_7.png")) == ("123", 4, 7)
    assert parse_name(Path("x/abc_def_0_1.JPG")) == ("abc_def", 0, 1)
    for bad in ("12_3.png", "1_2_x.png", "1_2_3.gif", "_1_2.png"):
        with pytest.raises(DataError, match="does not match"):
            parse_name(Path(bad))


def test_flat_valid_and_nested_valid_both_load(tmp_path):
    flat = write_bundle(tmp_path / "flat", "cmnist", small_layout("cmnist"))
    nested = write_bundle(
        tmp_path / "nested", "cifar10c", small_layout("cifar10c", nested_valid=True, size=32)
    )
    for root, dataset in ((flat, "cmnist"), (nested, "cifar10c")):
        valid = list_split(root, dataset, 1, "valid")
        assert sorted((f.label, f.bias) for f in valid) == [(0, 0), (0, 1), (1, 0), (1, 1)]
        assert all(f.folder is None for f in valid)
    nested_rel = list_split(nested, "cifar10c", "1pct", "valid")[0].relpath
    assert nested_rel.startswith("1pct/valid/0/")


def test_train_is_align_then_conflict_with_folder_tags(tmp_path):
    root = write_bundle(tmp_path, "cmnist", small_layout("cmnist"))
    train = list_split(root, "cmnist", 1.0, "train")
    assert [f.folder for f in train] == ["align"] * 4 + ["conflict"] * 2
    assert all((f.label == f.bias) == (f.folder == "align") for f in train)
    test = list_split(root, "cmnist", 1.0, "test")
    assert len(test) == 4 and all(f.relpath.startswith("test/") for f in test)


def test_bffhq_valid_and_test_at_dataset_root(tmp_path):
    root = write_bundle(tmp_path, "bffhq", small_layout("bffhq", size=128, pct="0.5pct"))
    assert available_ratios(root, "bffhq") == [0.5]
    valid = list_split(root, "bffhq", 0.5, "valid")
    test = list_split(root, "bffhq", "0.5pct", "test")
    assert all(f.relpath.startswith("valid/") for f in valid)
    assert all(f.relpath.startswith("test/") and f.relpath.count("/") == 1 for f in test)


def test_available_ratios_needs_an_align_folder(tmp_path):
    root = write_bundle(tmp_path, "cmnist", small_layout("cmnist", pct="5pct"))
    write_bundle(root, "cmnist", small_layout("cmnist", pct="0.5pct"))
    (root / "cmnist" / "2pct").mkdir()  # no align/ inside: not a ratio
    (root / "cmnist" / "notes").mkdir()
    assert available_ratios(root, "cmnist") == [0.5, 5.0]


def test_hidden_and_non_image_files_are_skipped(tmp_path):
    root = write_bundle(tmp_path, "cmnist", small_layout("cmnist"))
    write_png(root / "cmnist" / "1pct" / "align" / "0" / "._9_0_0.png")
    (root / "cmnist" / "1pct" / "align" / "README.txt").write_text("x")
    assert len(list_split(root, "cmnist", 1, "train")) == 6


def test_conlict_spelling_is_accepted(tmp_path):
    root = write_bundle(tmp_path, "cmnist", small_layout("cmnist"))
    pct = root / "cmnist" / "1pct"
    (pct / "conflict").rename(pct / "conlict")
    train = list_split(root, "cmnist", 1, "train")
    assert sum(f.folder == "conlict" for f in train) == 2


@pytest.mark.parametrize(
    ("remove", "split", "expected"),
    [
        (None, "train", "data root not found"),
        ("cmnist", "train", "dataset folder not found"),
        ("cmnist/1pct/conflict", "train", "train split not found"),
        ("cmnist/1pct/valid", "valid", "valid split not found"),
        ("cmnist/test", "test", "test split not found"),
    ],
)
def test_missing_pieces_raise_one_line_with_tree_and_url(tmp_path, remove, split, expected):
    import shutil

    root = write_bundle(tmp_path / "root", "cmnist", small_layout("cmnist"))
    if remove is None:
        root = tmp_path / "does-not-exist"
    else:
        shutil.rmtree(root / remove)
    with pytest.raises(DataError) as info:
        list_split(root, "cmnist", 1, split)
    message = str(info.value)
    assert message.startswith(expected) and "\n" not in message
    assert BUNDLE_URL in message and "<pct>/{align,conflict}" in message


def test_empty_split_and_unknown_names_are_errors(tmp_path):
    root = write_bundle(tmp_path, "cmnist", small_layout("cmnist"))
    for png in (root / "cmnist" / "test").rglob("*.png"):
        png.unlink()
    with pytest.raises(DataError, match="test split is empty"):
        list_split(root, "cmnist", 1, "test")
    with pytest.raises(DataError, match="allowed: cmnist, cifar10c, bffhq"):
        list_split(root, "svhn", 1, "test")
    with pytest.raises(DataError, match="allowed: train, valid, test"):
        list_split(root, "cmnist", 1, "val")


def test_data_root_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("REST_DATA_ROOT", raising=False)
    assert resolve_data_root("") == Path("dataset")
    monkeypatch.setenv("REST_DATA_ROOT", str(tmp_path))
    assert resolve_data_root(None) == tmp_path
    assert resolve_data_root("/x/y") == Path("/x/y")


def test_dataset_spec_is_the_registry_entry():
    from trainables.data.layout import dataset_spec, expected_tree
    from trainables.datasets import DATASETS

    for name in DATASETS:
        assert dataset_spec(name) is DATASETS.get(name)
    with pytest.raises(DataError, match="allowed: cmnist, cifar10c, bffhq"):
        dataset_spec("svhn")
    assert "<root>/bffhq/valid/*," in expected_tree("bffhq")  # valid_at_root
    assert "<root>/cifar10c/<pct>/valid/**," in expected_tree("cifar10c")
