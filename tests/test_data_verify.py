"""``data verify``: every hard failure, the soft warnings, the manifest and the CLI."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.fixtures.data import small_layout, write_bundle, write_png
from trainables.data.layout import list_split
from trainables.data.verify import MANIFEST, verify_bundle


def _run_cli(argv: list[str], monkeypatch) -> int:
    import rest_sweep.cli as cli

    monkeypatch.setattr(cli, "COMMANDS", ("data",))  # only this suite's command
    return cli.main(argv)


@pytest.fixture
def cmnist_copy(tiny_cmnist_root: Path, tmp_path: Path) -> Path:
    """A private copy of the shared tiny bundle, safe to break."""
    shutil.copytree(tiny_cmnist_root / "cmnist", tmp_path / "cmnist")
    (tmp_path / "cmnist" / MANIFEST).unlink(missing_ok=True)
    return tmp_path


def _errors(root: Path, dataset: str = "cmnist") -> list[str]:
    return verify_bundle(root, dataset, write_manifest=False).errors


def test_generated_bundle_passes_and_writes_manifest(cmnist_copy):
    report = verify_bundle(cmnist_copy, "cmnist")
    assert report.ok, report.errors
    assert report.warnings == []
    names = [row.name for row in report.rows]
    assert names == ["train/1pct", "train/5pct", "valid/1pct", "valid/5pct", "test"]
    manifest = json.loads((cmnist_copy / "cmnist" / MANIFEST).read_text())
    assert manifest["splits"]["train/5pct"]["total"] == 2000
    labels = Counter(f.label for f in list_split(cmnist_copy, "cmnist", 5, "train"))
    exact = sum(n - math.floor(n * 0.95 + 0.5) for n in labels.values())  # per-class quotas
    assert manifest["splits"]["train/5pct"]["conflicting"] == exact
    assert len(manifest["sha256"]) == 64
    print("\n" + report.table())


def test_manifest_change_is_a_warning(cmnist_copy):
    assert verify_bundle(cmnist_copy, "cmnist").ok
    extra = next((cmnist_copy / "cmnist" / "test").rglob("*.png"))
    shutil.copy(extra, extra.with_name("99999_0_3.png"))
    report = verify_bundle(cmnist_copy, "cmnist")
    assert report.ok and any("changed since the last verify" in w for w in report.warnings)


def _small(tmp_path: Path) -> Path:
    return write_bundle(tmp_path, "cmnist", small_layout("cmnist"))


def test_missing_split_fails(tmp_path):
    root = _small(tmp_path)
    shutil.rmtree(root / "cmnist" / "1pct" / "valid")
    assert any(e.startswith("valid split not found") for e in _errors(root))


def test_no_ratio_folder_fails(tmp_path):
    root = _small(tmp_path)
    shutil.rmtree(root / "cmnist" / "1pct")
    assert any("no <pct>/align folder" in e for e in _errors(root))


def test_empty_glob_fails(tmp_path):
    root = _small(tmp_path)
    for png in (root / "cmnist" / "1pct" / "conflict").rglob("*.png"):
        png.unlink()
    assert any(e.startswith("train split is empty") for e in _errors(root))


def test_unparsable_name_fails(tmp_path):
    root = _small(tmp_path)
    write_png(root / "cmnist" / "test" / "0" / "image.png")
    assert any(e.startswith("file name:") and "image.png" in e for e in _errors(root))


@pytest.mark.parametrize(("name", "field"), [("90_12_3.png", "label"), ("91_3_10.png", "bias")])
def test_label_or_bias_out_of_range_fails(tmp_path, name, field):
    root = _small(tmp_path)
    write_png(root / "cmnist" / "test" / "0" / name)
    assert any(e.startswith(f"{field}: ") and "allowed: 0..9" in e for e in _errors(root))


def test_bffhq_range_is_binary(tmp_path):
    root = write_bundle(tmp_path, "bffhq", small_layout("bffhq", size=128, pct="0.5pct"))
    assert verify_bundle(root, "bffhq", write_manifest=False).ok
    write_png(root / "bffhq" / "test" / "77_2_0.png", size=128)
    assert any("allowed: 0..1" in e for e in _errors(root, "bffhq"))


def test_align_file_with_conflicting_labels_fails(tmp_path):
    root = _small(tmp_path)
    write_png(root / "cmnist" / "1pct" / "align" / "0" / "50_0_4.png")
    assert any(e.startswith("align: ") for e in _errors(root))


def test_conflict_file_with_aligned_labels_fails(tmp_path):
    root = _small(tmp_path)
    write_png(root / "cmnist" / "1pct" / "conflict" / "0" / "51_0_0.png")
    assert any(e.startswith("conflict: ") for e in _errors(root))


def test_duplicate_id_across_splits_fails(tmp_path):
    root = _small(tmp_path)
    train_id = next((root / "cmnist" / "1pct" / "align").rglob("*.png")).name.split("_")[0]
    write_png(root / "cmnist" / "test" / "1" / f"{train_id}_1_1.png")
    assert any(e.startswith(f"duplicate id: '{train_id}'") for e in _errors(root))


def test_unreadable_image_fails(tmp_path):
    root = _small(tmp_path)
    for png in (root / "cmnist" / "test").rglob("*.png"):
        png.write_bytes(b"not a png")
    assert any(e.startswith("image: cannot decode") for e in _errors(root))


def test_wrong_image_size_fails(tmp_path):
    root = write_bundle(tmp_path, "cmnist", small_layout("cmnist", size=32))
    assert any(
        e.startswith("image size:") and "allowed for cmnist: 28x28" in e for e in _errors(root)
    )


def test_failed_verify_writes_no_manifest(tmp_path):
    root = _small(tmp_path)
    shutil.rmtree(root / "cmnist" / "test")
    assert not verify_bundle(root, "cmnist").ok
    assert not (root / "cmnist" / MANIFEST).exists()


def test_soft_warnings(tmp_path):
    files = small_layout("cmnist")  # 2 classes only, 33% conflicting in a "1pct" folder
    files.update({f"test/0/{100 + i}_0_0.png": 28 for i in range(20)})  # test 22/24 aligned
    root = write_bundle(tmp_path, "cmnist", files)
    pct = root / "cmnist" / "1pct"
    (pct / "conflict").rename(pct / "conlict")
    report = verify_bundle(root, "cmnist", write_manifest=False)
    assert report.ok, report.errors
    text = "\n".join(report.warnings)
    assert "spelling:" in text and "conlict" in text
    assert "train/1pct: conflicting fraction 33.33% is far from the nominal 1%" in text
    assert "test: aligned fraction 91.7% is far from 1/K = 10.0%" in text
    assert "no images of class(es)" in text


def test_valid_ratio_mismatch_warns(cmnist_copy):
    valid = cmnist_copy / "cmnist" / "5pct" / "valid"
    conflicting = [p for p in valid.glob("*.png") if p.stem.split("_")[1] != p.stem.split("_")[2]]
    for png in conflicting:
        png.unlink()
    report = verify_bundle(cmnist_copy, "cmnist", write_manifest=False)
    assert report.ok
    assert any(
        w.startswith("valid/5pct: conflicting fraction 0.00% differs") for w in report.warnings
    )


def test_cli_verify_both_forms_and_exit_codes(cmnist_copy, monkeypatch, capsys):
    assert (
        _run_cli(["data", "verify", str(cmnist_copy / "cmnist"), "--no-manifest"], monkeypatch) == 0
    )
    out = capsys.readouterr().out
    assert "train/1pct" in out and "conflict %" in out and out.rstrip().endswith("ok")
    assert (
        _run_cli(
            ["data", "verify", "--data-root", str(cmnist_copy), "--dataset", "cmnist"], monkeypatch
        )
        == 0
    )
    assert (cmnist_copy / "cmnist" / MANIFEST).exists()
    shutil.rmtree(cmnist_copy / "cmnist" / "test")
    assert _run_cli(["data", "verify", str(cmnist_copy / "cmnist")], monkeypatch) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "test split not found" in err[0]
    assert _run_cli(["data", "verify", str(cmnist_copy / "nothing" / "cmnist")], monkeypatch) == 2
    assert "data root not found" in capsys.readouterr().err
