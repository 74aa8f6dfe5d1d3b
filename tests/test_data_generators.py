"""Generators on real data (Colored MNIST from real MNIST; Corrupted CIFAR from Fashion-MNIST
padded to 32 px): exact quotas, unbiased test, ids, determinism, provenance, CLI."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainables.data.bias import assign_bias, assign_unbiased
from trainables.data.layout import list_split
from trainables.data.make_cmnist import DISENT_PALETTE, make_cmnist
from trainables.data.verify import verify_bundle
from trainables.errors import UserError


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.png"))
    }


def _small_cmnist(mnist_subset_dir: Path, out: Path, seed: int, **kwargs) -> Path:
    options = dict(ratios=(5.0,), limit=300, valid_size=50, test_size=100, seed=seed)
    options.update(kwargs)
    return make_cmnist(mnist_subset_dir, out, **options)


@pytest.mark.parametrize("pct", [0.5, 1.0, 2.0, 5.0])
def test_assign_bias_exact_quota(pct):
    labels = np.repeat(np.arange(10), [601, 600, 599, 37, 1000, 200, 333, 10, 1, 250])
    bias = assign_bias(labels, pct, 10, np.random.default_rng(0))
    for c in range(10):
        members = bias[labels == c]
        n = len(members)
        assert (members == c).sum() == int(np.floor(n * (1 - pct / 100) + 0.5))
        spread = Counter(members[members != c].tolist())
        counts = [spread.get(j, 0) for j in range(10) if j != c]
        assert max(counts) - min(counts) <= 1


def test_assign_unbiased_is_independent_of_the_label():
    labels = np.repeat(np.arange(10), 1000)
    bias = assign_unbiased(labels, 10, np.random.default_rng(1))
    table = np.zeros((10, 10), dtype=int)
    np.add.at(table, (labels, bias), 1)
    assert (table == 100).all()


def test_idx_round_trip(fmnist_dir, fmnist_subset_dir):
    from trainables.data.sources import read_mnist_format

    full, full_labels = read_mnist_format(fmnist_dir, "test")
    sub, sub_labels = read_mnist_format(fmnist_subset_dir, "test")
    assert sub.shape == (1000, 28, 28) and np.array_equal(sub, full[:1000])
    assert np.array_equal(sub_labels, full_labels[:1000])


def test_tiny_cmnist_has_exact_quotas_and_unique_ids(tiny_cmnist_root):
    root = tiny_cmnist_root
    test = list_split(root, "cmnist", 1, "test")
    for pct in (1.0, 5.0):
        train = list_split(root, "cmnist", pct, "train")
        valid = list_split(root, "cmnist", pct, "valid")
        assert len(train) == 2000 and len(valid) == 300 and len(test) == 1000
        for split in (train, valid):
            labels = np.array([f.label for f in split])
            bias = np.array([f.bias for f in split])
            for c in range(10):
                n = (labels == c).sum()
                assert ((labels == c) & (bias == c)).sum() == np.floor(n * (1 - pct / 100) + 0.5)
        ids = [f.id for f in train + valid + test]
        assert len(ids) == len(set(ids))
        assert all("/valid/" in f.relpath and f.relpath.count("/") == 2 for f in valid)  # flat
    per_class = Counter((f.label, f.bias) for f in test)
    for c in range(10):
        counts = [per_class[(c, b)] for b in range(10)]
        assert max(counts) - min(counts) <= 1  # bias uniform within every class


def test_same_seed_same_bytes_other_seed_differs(mnist_subset_dir, tmp_path):
    a = _small_cmnist(mnist_subset_dir, tmp_path / "a", seed=3)
    b = _small_cmnist(mnist_subset_dir, tmp_path / "b", seed=3)
    c = _small_cmnist(mnist_subset_dir, tmp_path / "c", seed=4)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)
    manifests = [verify_bundle(p.parent, "cmnist").manifest for p in (a, b)]
    assert manifests[0] == manifests[1]
    assert (a / "manifest.json").read_bytes() == (b / "manifest.json").read_bytes()


def test_adding_a_ratio_keeps_the_other_ratios_identical(mnist_subset_dir, tmp_path):
    one = _small_cmnist(mnist_subset_dir, tmp_path / "one", seed=0, ratios=(5.0,), limit=1000)
    two = _small_cmnist(mnist_subset_dir, tmp_path / "two", seed=0, ratios=(1.0, 5.0), limit=1000)
    only_5 = {k: v for k, v in _digest(two).items() if not k.startswith("1pct/")}
    assert _digest(one) == only_5


def test_foreground_colouring_on_black(mnist_subset_dir, tmp_path):
    folder = _small_cmnist(mnist_subset_dir, tmp_path, seed=0, color_noise=0.0)
    for f in list_split(tmp_path, "cmnist", 5, "train")[:200]:
        image = np.asarray(Image.open(f.path)).astype(int)
        colour = DISENT_PALETTE[f.bias]
        for channel in range(3):
            if colour[channel] == 0:
                assert image[..., channel].max() == 0  # off channels stay black
        brightest = image.reshape(-1, 3)[image.sum(-1).argmax()]
        assert np.allclose(brightest / max(brightest.max(), 1), colour / colour.max(), atol=0.02)
    assert folder == tmp_path / "cmnist"


def test_existing_output_needs_overwrite(mnist_subset_dir, tmp_path):
    _small_cmnist(mnist_subset_dir, tmp_path, seed=0)
    with pytest.raises(UserError, match="already exists; pass --overwrite"):
        _small_cmnist(mnist_subset_dir, tmp_path, seed=0)
    _small_cmnist(mnist_subset_dir, tmp_path, seed=1, overwrite=True, ratios=(2.0,))
    assert sorted(p.name for p in (tmp_path / "cmnist").iterdir()) == [
        "2pct",
        "source.json",
        "test",
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_bad_arguments_are_one_line_errors(mnist_subset_dir, tmp_path):
    with pytest.raises(UserError, match="no conflicting image at 0.5%"):
        _small_cmnist(mnist_subset_dir, tmp_path, seed=0, ratios=(0.5,))
    with pytest.raises(UserError, match="palette: 'rainbow'"):
        make_cmnist(mnist_subset_dir, tmp_path, palette="rainbow")
    with pytest.raises(UserError, match="valid_size: 3000"):
        make_cmnist(mnist_subset_dir, tmp_path, valid_size=3000)
    with pytest.raises(Exception, match="train-images-idx3-ubyte"):
        make_cmnist(tmp_path, tmp_path / "out")


def test_cli_make_cmnist_lff_palette(mnist_subset_dir, tmp_path, monkeypatch, capsys):
    import rest_sweep.cli as cli

    monkeypatch.setattr(cli, "COMMANDS", ("data",))
    argv = [
        "data",
        "make",
        "cmnist",
        "--source",
        str(mnist_subset_dir),
        "--out",
        str(tmp_path),
        "--ratios",
        "0.5pct,2",
        "--limit",
        "2000",
        "--valid-size",
        "60",
        "--test-size",
        "100",
        "--palette",
        "lff",
        "--seed",
        "7",
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "train/0.5pct" in out and "train/2pct" in out and "ok: wrote" in out
    assert (tmp_path / "cmnist" / "manifest.json").exists()
    assert cli.main(argv) == 2  # exists now
    assert "already exists" in capsys.readouterr().err


def test_tiny_cifar10c_verifies_with_nested_valid(tiny_cifar10c_root):
    report = verify_bundle(tiny_cifar10c_root, "cifar10c", write_manifest=False)
    assert report.ok, report.errors
    counts = {row.name: row.total for row in report.rows}
    assert counts == {"train/5pct": 300, "valid/5pct": 100, "test": 200}
    valid = list_split(tiny_cifar10c_root, "cifar10c", 5, "valid")
    assert all(f.relpath.startswith(f"5pct/valid/{f.label}/") for f in valid)


def test_cifar10c_corrupts_by_bias_and_is_deterministic(fmnist_subset_dir, tmp_path):
    from trainables.data.make_cifar10c import make_cifar10c
    from trainables.data.sources import mnist_as_cifar, read_cifar_batches

    source = mnist_as_cifar(fmnist_subset_dir, tmp_path / "src", n_train=200, n_test=100)
    images, _ = read_cifar_batches(source, "train")
    assert images.shape == (200, 32, 32, 3) and (images[:, :2] == 0).all()  # padded 28 -> 32
    options = dict(
        ratios=(5.0,), limit=100, valid_size=20, test_size=50, seed=1, frost="procedural"
    )
    a = make_cifar10c(source, tmp_path / "a", **options)
    b = make_cifar10c(source, tmp_path / "b", **options)
    assert _digest(a) == _digest(b)
    # a corrupted image never equals its clean source: brightness (bias 3) lifts the black border
    for f in list_split(tmp_path / "a", "cifar10c", 5, "train"):
        if f.bias == 3:
            assert np.asarray(Image.open(f.path))[0].min() > 0


def test_cli_make_cifar10c(fmnist_subset_dir, tmp_path, monkeypatch, capsys):
    import rest_sweep.cli as cli
    from trainables.data.sources import mnist_as_cifar

    monkeypatch.setattr(cli, "COMMANDS", ("data",))
    source = mnist_as_cifar(fmnist_subset_dir, tmp_path / "src", n_train=150, n_test=60)
    argv = [
        "data",
        "make",
        "cifar10c",
        "--source",
        str(source),
        "--out",
        str(tmp_path / "out"),
        "--ratios",
        "5",
        "--limit",
        "100",
        "--valid-size",
        "20",
        "--severity",
        "2",
        "--frost",
        "procedural",
    ]
    assert cli.main(argv) == 0
    assert "train/5pct" in capsys.readouterr().out
    missing = [*argv[:4], str(tmp_path / "nowhere"), "--out", str(tmp_path / "out2"), *argv[-2:]]
    assert cli.main(missing) == 2
    assert "data_batch_1 not found" in capsys.readouterr().err


def test_a_bundle_says_which_images_it_was_made_from(tiny_cmnist_root, fmnist_dir, tmp_path):
    """Real MNIST gives the paper's Colored MNIST; Fashion-MNIST a named stand-in; a subset of
    files is unidentified. `data verify` copies the record into manifest.json."""
    import json

    real = json.loads((tiny_cmnist_root / "cmnist" / "source.json").read_text())
    assert real["images"] == "MNIST" and real["title"] == "Colored MNIST"
    assert real["comparable"] is True and real["palette"] == "disent"
    assert real["sizes"] == {"train": 2000, "valid": 300, "test": 1000}

    make_cmnist(fmnist_dir, tmp_path, ratios=(5.0,), limit=300, valid_size=50, test_size=100)
    stand_in = json.loads((tmp_path / "cmnist" / "source.json").read_text())
    assert stand_in["title"] == "Colored Fashion-MNIST" and stand_in["comparable"] is False
    assert stand_in["source_dir"] == str(fmnist_dir.resolve())
    report = verify_bundle(tmp_path, "cmnist")
    assert report.manifest["source"] == stand_in


def test_a_subset_of_files_is_unidentified(mnist_subset_dir, tmp_path):
    import json

    folder = _small_cmnist(mnist_subset_dir, tmp_path, seed=0)
    record = json.loads((folder / "source.json").read_text())
    assert record["known"] is False and record["comparable"] is False
    assert record["title"] == "Colored MNIST-format images (unidentified source)"


def _lff_conflicting(counts: np.ndarray, aligned_ratio: float) -> int:
    """LfF's make_attr_labels quota (alinlab/LfF make_dataset.py): class c's share of each bias
    value is rounded on the cumulative sum of its row of ratios, so its aligned count is the
    difference of two rounded milestones."""
    k = len(counts)
    ratios = aligned_ratio * np.eye(k) + (1 - aligned_ratio) / (k - 1) * (1 - np.eye(k))
    milestones = (counts[:, None] * np.cumsum(ratios, axis=1)).round()
    per_bias = np.diff(np.concatenate([np.zeros((k, 1)), milestones], axis=1), axis=1)
    return int(counts.sum() - np.trace(per_bias))


@pytest.mark.parametrize(("pct", "lff"), [(0.5, 300), (1.0, 598), (2.0, 1199), (5.0, 3000)])
def test_quotas_on_real_mnist_are_within_one_image_of_lffs(mnist_dir, pct, lff):
    """On MNIST's 60k training labels LfF's generator makes 300/598/1199/3000 conflicting
    images; our exact per-class quotas round each class once, so they differ by at most one."""
    from trainables.data.sources import read_mnist_format

    _, labels = read_mnist_format(mnist_dir, "train")
    assert _lff_conflicting(np.bincount(labels), 1 - pct / 100) == lff
    bias = assign_bias(labels, pct, 10, np.random.default_rng(0))
    assert abs(int((bias != labels).sum()) - lff) <= 1
