"""The reference frost photographs: checksums, the 1/5 scaling, LfF's draw order, and their use
by ``make_cifar10c`` (default layer, provenance, workers, failing before any work).

Tests that need the photographs take the ``frost_dir`` fixture (they skip where the photographs
are missing, and fail under CI); the rest run on synthetic files and arrays.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainables.data.corruptions import FROST, LEVELS, TYPE0, corrupt
from trainables.data.frost import (
    FROST_LAYERS,
    FROST_SHA256,
    FROST_USED,
    FrostPhotos,
    check_frost_dir,
    decode_rgb,
    downscale_fifth,
    frost_layer,
    load_frost_photos,
)
from trainables.errors import DataError, UserError

FIX = "rest-sweep data fetch frost --out"


def _copy(frost_dir: Path, to: Path) -> Path:
    to.mkdir()
    for name in FROST_SHA256:
        shutil.copyfile(frost_dir / name, to / name)
    return to


def _one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- (a) checksums


def test_pins_name_six_files_and_use_the_first_five() -> None:
    assert list(FROST_SHA256) == [f"frost{i}.png" for i in (1, 2, 3)] + [
        f"frost{i}.jpg" for i in (4, 5, 6)
    ]
    assert all(len(sha) == 64 and int(sha, 16) >= 0 for sha in FROST_SHA256.values())
    used = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
    assert used == FROST_USED  # LfF: randint(5), frost6 never drawn
    assert FROST_LAYERS.names() == ["reference", "procedural"]


def test_missing_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        check_frost_dir(tmp_path / "nowhere")
    message = _one_line(error)
    assert str(tmp_path / "nowhere") in message
    assert "rest-sweep data fetch frost" in message and "--frost procedural" in message


def test_wrong_bytes_are_refused_without_photographs(tmp_path: Path) -> None:
    for name in FROST_SHA256:
        (tmp_path / name).write_bytes(b"not a photograph")
    with pytest.raises(DataError) as error:
        load_frost_photos(tmp_path)
    message = _one_line(error)
    assert str(tmp_path / "frost1.png") in message
    assert FROST_SHA256["frost1.png"] in message and FIX in message


def test_checksums_pass_and_a_changed_byte_is_refused(frost_dir: Path, tmp_path: Path) -> None:
    folder = _copy(frost_dir, tmp_path / "frost")
    check_frost_dir(folder)  # the pinned files pass
    data = bytearray((folder / "frost4.jpg").read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / "frost4.jpg").write_bytes(bytes(data))
    with pytest.raises(DataError) as error:
        load_frost_photos(folder)
    message = _one_line(error)
    assert str(folder / "frost4.jpg") in message
    assert f"expected {FROST_SHA256['frost4.jpg']}" in message and FIX in message


def test_a_missing_file_is_refused_even_the_unused_frost6(frost_dir: Path, tmp_path: Path) -> None:
    folder = _copy(frost_dir, tmp_path / "frost")
    (folder / "frost6.jpg").unlink()
    with pytest.raises(DataError) as error:
        FrostPhotos.load(folder)
    message = _one_line(error)
    assert f"{folder / 'frost6.jpg'} not found" in message
    assert FROST_SHA256["frost6.jpg"] in message and FIX in message


# ---------------------------------------------------------------- (b) the 1/5 scaling


def _opencv_size(n: int) -> int:
    """cv2.resize's output side for fx = 0.2: the input side times 0.2, rounded."""
    return round(n * 0.2)


def _bilinear_fifth(image: np.ndarray) -> np.ndarray:
    """Bilinear resampling to OpenCV's 1/5 size with half-pixel centres, written out in numpy:
    output pixel d reads input coordinate (d + 0.5) * 5 - 0.5, between its two neighbours."""
    h, w = image.shape[:2]

    def axis(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (np.arange(_opencv_size(n)) + 0.5) * 5.0 - 0.5
        low = np.clip(np.floor(src).astype(np.int64), 0, n - 1)
        high = np.clip(low + 1, 0, n - 1)
        return low, high, src - np.floor(src)

    y0, y1, fy = axis(h)
    x0, x1, fx = axis(w)
    x = image.astype(np.float64)
    fy, fx = fy[:, None, None], fx[None, :, None]
    top = x[y0][:, x0] * (1 - fx) + x[y0][:, x1] * fx
    bottom = x[y1][:, x0] * (1 - fx) + x[y1][:, x1] * fx
    return np.rint(top * (1 - fy) + bottom * fy).astype(np.uint8)


@pytest.mark.parametrize("shape", [(63, 112), (64, 113), (65, 114), (66, 115), (67, 116), (5, 9)])
def test_slice_is_bilinear_at_one_fifth_on_every_size_mod_5(shape: tuple[int, int]) -> None:
    image = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    scaled = downscale_fifth(image)
    assert scaled.shape[:2] == (_opencv_size(shape[0]), _opencv_size(shape[1]))
    assert np.array_equal(scaled, _bilinear_fifth(image))
    for wrong in (image[::5, ::5], image[1::5, 1::5], image[3::5, 3::5]):
        h, w = min(wrong.shape[0], scaled.shape[0]), min(wrong.shape[1], scaled.shape[1])
        assert not np.array_equal(wrong[:h, :w], scaled[:h, :w])  # the check has teeth


@pytest.mark.parametrize("name", list(FROST_SHA256))
def test_photographs_scale_like_opencv(name: str, frost_dir: Path) -> None:
    path = frost_dir / name
    with Image.open(path) as image:
        full = np.asarray(image.convert("RGB"))
    scaled = downscale_fifth(decode_rgb(path))
    assert scaled.shape == (_opencv_size(full.shape[0]), _opencv_size(full.shape[1]), 3)
    assert np.array_equal(scaled, full[2::5, 2::5])
    assert np.array_equal(scaled, _bilinear_fifth(full))
    assert not np.array_equal(full[::5, ::5][: scaled.shape[0], : scaled.shape[1]], scaled)


def test_loader_returns_the_five_used_photographs_scaled(frost_dir: Path) -> None:
    photos = load_frost_photos(frost_dir)
    assert len(photos) == 5
    for name, photo in zip(FROST_USED, photos, strict=True):
        with Image.open(frost_dir / name) as image:
            assert np.array_equal(photo, np.asarray(image.convert("RGB"))[2::5, 2::5])
        assert photo.dtype == np.uint8 and photo.flags.c_contiguous
    assert [p.shape[:2] for p in photos] == [(120, 180), (63, 112), (63, 112), (70, 105), (99, 132)]
    assert FrostPhotos(photos).max_shape == (62, 104)


# ---------------------------------------------------------------- the frost corruption


def _synthetic_layer() -> FrostPhotos:
    rng = np.random.default_rng(0)
    shapes = [(40, 50), (45, 41), (60, 60), (38, 70), (50, 39)]
    return FrostPhotos(tuple(rng.integers(0, 256, (*s, 3), dtype=np.uint8) for s in shapes))


@pytest.mark.parametrize("level", LEVELS)
def test_reference_frost_draws_photograph_then_row_then_column(level: int) -> None:
    """LfF's recipe and draw order: photo = randint(5), top, left; clip(w_img x + w_frost crop)."""
    layer = _synthetic_layer()
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = corrupt(image, "frost", level, np.random.default_rng(level), frost=layer)
    rng = np.random.default_rng(level)
    photo = layer.photos[rng.integers(5)]
    top = rng.integers(0, photo.shape[0] - 32)
    left = rng.integers(0, photo.shape[1] - 32)
    w_img, w_frost = FROST[level - 1]
    crop = photo[top : top + 32, left : left + 32].astype(np.float64)
    want = np.clip(w_img * image + w_frost * crop, 0, 255).astype(np.uint8)
    assert np.array_equal(out, want)


def test_reference_frost_is_deterministic_and_fits_sizes(frost_dir: Path) -> None:
    layer = frost_layer("reference", frost_dir)
    image = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    a, b, c = (corrupt(image, "frost", 5, np.random.default_rng(s), frost=layer) for s in (7, 7, 8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    for shape in ((16, 16, 3), (20, 28, 3), (48, 40, 3), (62, 104, 3)):
        out = corrupt(np.zeros(shape, np.uint8), "frost", 3, np.random.default_rng(0), frost=layer)
        assert out.shape == shape and out.dtype == np.uint8
    with pytest.raises(UserError, match=r"a 63x32 image .* allowed: up to 62x104"):
        corrupt(np.zeros((63, 32, 3), np.uint8), "frost", 3, np.random.default_rng(0), frost=layer)


def test_named_layers_and_unknown_name(frost_dir: Path) -> None:
    image = np.full((32, 32, 3), 90, np.uint8)
    built = frost_layer("reference", frost_dir)
    by_layer = corrupt(image, "frost", 4, np.random.default_rng(3), frost=built)
    procedural = corrupt(image, "frost", 4, np.random.default_rng(3), frost="procedural")
    assert not np.array_equal(by_layer, procedural)
    with pytest.raises(UserError, match="unknown frost layer 'photo'; allowed: reference, proc"):
        corrupt(image, "frost", 4, np.random.default_rng(3), frost="photo")
    # the other nine ignore the frost option entirely
    assert np.array_equal(
        corrupt(image, "snow", 4, np.random.default_rng(3), frost="photo"),
        corrupt(image, "snow", 4, np.random.default_rng(3)),
    )


def test_print_reference_frost_timing(frost_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Per-call time of the reference frost on 32x32 images (printed, never asserted)."""
    layer = frost_layer("reference", frost_dir)
    image = np.zeros((32, 32, 3), np.uint8)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for level in LEVELS * 200:
        corrupt(image, "frost", level, rng, frost=layer)
    with capsys.disabled():
        print(f"\nreference frost: {1e3 * (time.perf_counter() - start) / 1000:.3f} ms/call")


# ---------------------------------------------------------------- (c), (d) make_cifar10c


@pytest.fixture(scope="module")
def cifar_source(fmnist_subset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Unidentified CIFAR-format batches (Fashion-MNIST padded to 32 px): 600 train, 100 test."""
    from trainables.data.sources import mnist_as_cifar

    return mnist_as_cifar(fmnist_subset_dir, tmp_path_factory.mktemp("src"), 600, 100)


def _make(source: Path, out: Path, **kwargs) -> Path:
    from trainables.data.make_cifar10c import make_cifar10c

    options = dict(ratios=(5.0,), limit=300, valid_size=50, test_size=100, seed=2)
    return make_cifar10c(source, out, **{**options, **kwargs})


def _pixels(folder: Path) -> dict[str, np.ndarray]:
    return {
        p.relative_to(folder).as_posix(): np.asarray(Image.open(p))
        for p in sorted(folder.rglob("*.png"))
    }


def test_reference_frost_bundle_records_it_and_differs_from_procedural(
    cifar_source: Path, frost_dir: Path, tmp_path: Path
) -> None:
    ref = _make(cifar_source, tmp_path / "ref", frost_dir=frost_dir)
    proc = _make(cifar_source, tmp_path / "proc", frost="procedural")
    record = json.loads((ref / "source.json").read_text())
    assert record["frost"] == "reference" and record["generator"] == "cifar10c"
    assert record["images"] == "unidentified CIFAR-format batches"
    assert (record["known"], record["stand_in"], record["comparable"]) == (False, True, False)
    assert record["title"] == "Corrupted CIFAR-format images (unidentified)"
    assert (record["severity"], record["corruptions"]) == (4, "type0")
    assert json.loads((proc / "source.json").read_text())["frost"] == "procedural"
    a, b = _pixels(ref), _pixels(proc)
    assert a.keys() == b.keys()
    frost_bias = TYPE0.index("frost")
    frosted = [k for k in a if int(Path(k).stem.split("_")[2]) == frost_bias]
    assert len(frosted) >= 20
    assert all(not np.array_equal(a[k], b[k]) for k in frosted)  # every frost image changed
    assert all(np.array_equal(a[k], b[k]) for k in a if k not in frosted)  # nothing else


def test_workers_get_the_photographs(cifar_source: Path, frost_dir: Path, tmp_path: Path) -> None:
    one = _make(cifar_source, tmp_path / "one", frost_dir=frost_dir, workers=1)
    two = _make(cifar_source, tmp_path / "two", frost_dir=frost_dir, workers=2)  # 300 >= 256
    a, b = _pixels(one), _pixels(two)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_known_cifar10_is_comparable_only_with_reference_frost(
    cifar_source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainables.data import make_cifar10c as module
    from trainables.data import raw_sources

    assert not raw_sources.is_cifar10(cifar_source)
    pins = {
        name: raw_sources.file_digest(cifar_source / name, "md5")
        for name in raw_sources.CIFAR10_MD5
    }
    monkeypatch.setattr(raw_sources, "CIFAR10_MD5", pins)  # pretend these batches are CIFAR-10
    assert raw_sources.is_cifar10(cifar_source)
    ref = module.cifar10c_provenance(cifar_source, "reference", 4)
    assert (ref["images"], ref["title"]) == ("CIFAR-10", "Corrupted CIFAR-10")
    assert (ref["known"], ref["stand_in"], ref["comparable"]) == (True, False, True)
    assert module.cifar10c_provenance(cifar_source, "procedural", 4)["comparable"] is False


def test_missing_photographs_fail_before_any_work(tmp_path: Path) -> None:
    """The frost check comes first: even a missing source is not read, nothing is written."""
    with pytest.raises(DataError) as error:
        _make(tmp_path / "no-source", tmp_path / "out", frost_dir=tmp_path / "no-frost")
    message = _one_line(error)
    assert str(tmp_path / "no-frost") in message
    assert "rest-sweep data fetch frost" in message and "--frost procedural" in message
    assert not (tmp_path / "out").exists()


def test_cli_frost_options(
    cifar_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import rest_sweep.cli as cli

    monkeypatch.setattr(cli, "COMMANDS", ("data",))
    base = ["data", "make", "cifar10c", "--source", str(cifar_source), "--ratios", "5"]
    base += ["--limit", "100", "--valid-size", "20", "--test-size", "40", "--no-verify"]
    nowhere = tmp_path / "no-frost"
    assert cli.main([*base, "--out", str(tmp_path / "a"), "--frost-dir", str(nowhere)]) == 2
    err = capsys.readouterr().err
    assert str(nowhere) in err and "--frost procedural" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "a").exists()
    assert cli.main([*base, "--out", str(tmp_path / "b"), "--frost", "procedural"]) == 0
    record = json.loads((tmp_path / "b" / "cifar10c" / "source.json").read_text())
    assert record["frost"] == "procedural"
    with pytest.raises(SystemExit):
        cli.main([*base, "--out", str(tmp_path / "c"), "--frost", "photo"])
    assert "invalid choice: 'photo'" in capsys.readouterr().err
