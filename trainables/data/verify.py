"""``data verify``: check a bundle's invariants, count it, and pin it with a manifest.

The DisEnt and REST loaders glob silently: a wrong root or a half-extracted download shows up
much later as ``num_samples=0`` or as quietly wrong numbers. This check fails hard on anything
that makes the labels untrustworthy (missing or empty split, unparsable name, label or bias out
of range, an ``align`` file that is conflicting or the reverse, an id in two splits, an image that
does not decode completely or has a wrong size: every image is decoded, in worker processes)
and warns on what is only unusual (ratios off nominal, valid not matching train, test not
unbiased, the README's ``conlict`` spelling). On success it writes ``<dataset>/manifest.json``:
counts plus a sha256 of the sorted relative path list, and every image's size and content hash
(``files``), so the exact bundle behind a result can be named and a later change is noticed.
:func:`ensure_manifest_current` (called before a sweep starts) refuses a bundle whose images
differ from the manifest's: by content, never by modification time, so neither a clock nor a
copy that does not keep times can fool it. To stay fast on big bundles it hashes only the files
whose ``stat`` changed since they were last seen to match (``.manifest-stat.json``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from trainables.data.layout import (
    IMAGE_SUFFIXES,
    PCT_RE,
    ImageFile,
    available_ratios,
    dataset_dir,
    dataset_spec,
    parse_name,
    ratio_folder,
    scan_images,
    split_dirs,
)
from trainables.datasets import DatasetInfo
from trainables.errors import DataError

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 2  # 2: "files" holds every image's size and content hash
# Which files' stat (size, mtime, ctime, inode) was last seen with the manifest's content: a
# cache that spares hashing them again (any write changes the ctime, which nobody can set).
STAT_FILE = ".manifest-stat.json"
RATIO_TOLERANCE = 0.002  # 0.2 percentage points, widened by 3 binomial standard deviations


@dataclass
class SplitRow:
    """Counts of one split as read from disk (train per ratio, valid per ratio or shared, test)."""

    name: str  # "train/1pct", "valid/1pct", "valid", "test"
    files: list[ImageFile]

    @property
    def total(self) -> int:
        return len(self.files)

    @property
    def aligned(self) -> int:
        return sum(f.label == f.bias for f in self.files)

    @property
    def conflicting(self) -> int:
        return self.total - self.aligned

    @property
    def conflicting_fraction(self) -> float:
        return self.conflicting / self.total if self.total else math.nan


@dataclass
class VerifyReport:
    """What ``verify`` found; ``ok`` is False when any hard failure was recorded."""

    dataset: str
    folder: Path
    rows: list[SplitRow] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    manifest: dict | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def table(self) -> str:
        """A fixed-width counts table, one line per split."""
        lines = [f"{'split':<14}{'total':>9}{'aligned':>10}{'conflicting':>13}{'conflict %':>12}"]
        for row in self.rows:
            share = f"{100 * row.conflicting_fraction:.2f}%" if row.total else "-"
            lines.append(
                f"{row.name:<14}{row.total:>9}{row.aligned:>10}{row.conflicting:>13}{share:>12}"
            )
        return "\n".join(lines)


def _allowance(p: float, n: int) -> float:
    """How far an observed fraction may sit from ``p`` before it is worth a warning."""
    return max(RATIO_TOLERANCE, 3 * math.sqrt(max(p * (1 - p), 1e-12) / max(n, 1)))


class _Checker:
    """Collects hard failures and warnings while reading one bundle."""

    def __init__(self, data_root: str | os.PathLike, dataset: str):
        self.data_root = data_root
        self.spec: DatasetInfo = dataset_spec(dataset)
        self.report = VerifyReport(dataset, dataset_dir(data_root, dataset))

    def read(self, ratio: float | str, split: str) -> list[ImageFile] | None:
        """Parse a split; records failures and returns None when it cannot be read at all."""
        try:
            directories = split_dirs(self.data_root, self.report.dataset, ratio, split)
        except DataError as error:
            self.report.errors.append(str(error))
            return None
        files, bad_names = [], []
        for directory, sub in directories:
            scanned = scan_images(directory)
            if not scanned:
                self.report.errors.append(f"{split} split is empty: no images under {directory}")
            prefix = len(os.fspath(self.report.folder)) + 1
            for path, size in scanned:
                try:
                    ident, label, bias = parse_name(path)
                except DataError:
                    bad_names.append(path)
                    continue
                rel = path[prefix:].replace(os.sep, "/")
                files.append(ImageFile(path, rel, ident, label, bias, sub, size))
            if sub == "conlict":
                self.report.warnings.append(
                    f"spelling: {directory} is spelled 'conlict' (DisEnt README typo); "
                    "the loader accepts it, DisEnt/REST code expect 'conflict'"
                )
        if bad_names:
            self.report.errors.append(
                f"file name: {bad_names[0]} (and {len(bad_names) - 1} more) does not match "
                "<id>_<label>_<bias>.png"
            )
        files.sort(key=lambda f: f.relpath)
        self._check_labels(files)
        return files

    def _check_labels(self, files: list[ImageFile]) -> None:
        k = self.spec.num_classes
        for attr in ("label", "bias"):
            bad = [f for f in files if not 0 <= getattr(f, attr) < k]
            if bad:
                self.report.errors.append(
                    f"{attr}: {getattr(bad[0], attr)} in {bad[0].relpath} (and {len(bad) - 1} "
                    f"more) is out of range; allowed: 0..{k - 1}"
                )
        wrong_align = [f for f in files if f.folder == "align" and f.label != f.bias]
        wrong_conflict = [
            f for f in files if f.folder in ("conflict", "conlict") and f.label == f.bias
        ]
        if wrong_align:
            self.report.errors.append(
                f"align: {wrong_align[0].relpath} (and {len(wrong_align) - 1} more) has label != "
                "bias; every file under align/ must have label == bias"
            )
        if wrong_conflict:
            self.report.errors.append(
                f"conflict: {wrong_conflict[0].relpath} (and {len(wrong_conflict) - 1} more) has "
                "label == bias; every file under conflict/ must have label != bias"
            )

    def check_images(self, rows: list[SplitRow], workers: int | None = None) -> None:
        """Decode every image of ``rows`` (worker processes): each must decode completely to
        a square allowed size. Names the first failing file and counts the rest."""
        from trainables.data.decode import find_bad_images

        paths = sorted({f.path for row in rows for f in row.files})
        if not paths:
            return
        problems = find_bad_images(paths, tuple(self.spec.stored_sizes), workers)
        undecodable = [(p, detail) for p, kind, detail in problems if kind == "decode"]
        wrong_size = [(p, detail) for p, kind, detail in problems if kind == "size"]
        if undecodable:
            path, detail = undecodable[0]
            more = f" (and {len(undecodable) - 1} more)" if len(undecodable) > 1 else ""
            self.report.errors.append(f"image: cannot decode {path} ({detail}){more}")
        if wrong_size:
            path, size = wrong_size[0]
            more = f" (and {len(wrong_size) - 1} more)" if len(wrong_size) > 1 else ""
            allowed = " or ".join(f"{s}x{s}" for s in self.spec.stored_sizes)
            rel = os.path.relpath(path, self.report.folder).replace(os.sep, "/")
            self.report.errors.append(
                f"image size: {rel} is {size}{more}; allowed for {self.report.dataset}: {allowed}"
            )

    def check_duplicates(self, name: str, rows: list[SplitRow]) -> None:
        seen: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            for f in row.files:
                seen[f.id].append(f.relpath)
        dups = {ident: paths for ident, paths in seen.items() if len(paths) > 1}
        if dups:
            ident, paths = next(iter(sorted(dups.items())))
            self.report.errors.append(
                f"duplicate id: {ident!r} in {paths[0]} and {paths[1]} ({len(dups)} ids repeated "
                f"across {name}); ids must be unique across train, valid and test"
            )


def _soft_checks(report: VerifyReport, ratio: float, train: SplitRow, valid: SplitRow) -> None:
    nominal = ratio / 100
    got = train.conflicting_fraction
    if train.total and abs(got - nominal) > _allowance(nominal, train.total):
        report.warnings.append(
            f"{train.name}: conflicting fraction {100 * got:.2f}% is far from the nominal "
            f"{ratio:g}%"
        )
    far = valid.total and abs(valid.conflicting_fraction - got) > _allowance(got, valid.total)
    if train.total and far:
        report.warnings.append(
            f"{valid.name}: conflicting fraction {100 * valid.conflicting_fraction:.2f}% "
            f"differs from train's {100 * got:.2f}% (DisEnt's valid has train's bias ratio)"
        )


def _test_checks(report: VerifyReport, test: SplitRow, num_classes: int) -> None:
    if not test.total:
        return
    expected = 1 / num_classes
    aligned = test.aligned / test.total
    if abs(aligned - expected) > max(0.02, _allowance(expected, test.total)):
        report.warnings.append(
            f"test: aligned fraction {100 * aligned:.1f}% is far from 1/K = {100 * expected:.1f}%;"
            " the test split should be unbiased"
        )


def _class_checks(report: VerifyReport, row: SplitRow, num_classes: int) -> None:
    missing = sorted(set(range(num_classes)) - {f.label for f in row.files})
    if row.files and missing:
        report.warnings.append(f"{row.name}: no images of class(es) {missing}")


def _sha_of_paths(rows: list[SplitRow]) -> str:
    paths = sorted({f.relpath for row in rows for f in row.files})
    return hashlib.sha256("\n".join(paths).encode()).hexdigest()


def file_hash(path: str) -> str:
    """The content hash of one file: blake2b, 128 bits, hex."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _hash_many(paths: list[str]) -> list[str | None]:
    out: list[str | None] = []
    for path in paths:
        try:
            out.append(file_hash(path))
        except OSError:  # removed or unreadable meanwhile: it does not match
            out.append(None)
    return out


def file_hashes(paths: list[str], workers: int | None = None) -> list[str | None]:
    """:func:`file_hash` of every path (None where it cannot be read), threads in chunks."""
    chunks = [paths[i : i + 512] for i in range(0, len(paths), 512)]
    if len(chunks) <= 1:
        return _hash_many(paths)
    threads = max(1, min(8, workers or os.cpu_count() or 1, len(chunks)))
    with ThreadPoolExecutor(threads) as pool:
        return [digest for part in pool.map(_hash_many, chunks) for digest in part]


def _files(rows: list[SplitRow]) -> dict[str, str]:
    """relative path -> absolute path of every file of ``rows``."""
    return {f.relpath: f.path for row in rows for f in row.files}


def build_manifest(report: VerifyReport, hashes: dict[str, tuple[int, str]] | None = None) -> dict:
    """Counts per split plus the sha256 of the sorted relative path list (whole and per split),
    and ``files``: relative path -> ``"<size> <blake2b-128 hex>"`` (``hashes``: relative path
    -> (size, hash), computed here when not given)."""
    if hashes is None:
        paths = _files(report.rows)
        digests = file_hashes(list(paths.values()))
        hashes = {
            rel: (os.path.getsize(path), digest or "")
            for (rel, path), digest in zip(paths.items(), digests, strict=True)
        }
    splits = {
        row.name: {
            "total": row.total,
            "aligned": row.aligned,
            "conflicting": row.conflicting,
            "conflicting_fraction": round(row.conflicting_fraction, 6),
            "sha256": _sha_of_paths([row]),
        }
        for row in report.rows
    }
    return {
        "format": MANIFEST_FORMAT,
        "dataset": report.dataset,
        "splits": splits,
        "sha256": _sha_of_paths(report.rows),
        "files": {rel: f"{size} {digest}" for rel, (size, digest) in sorted(hashes.items())},
    }


def read_source_record(folder: Path) -> dict | None:
    """A generated bundle's ``source.json`` (which images, which generator settings), or None
    for a bundle without one (the DisEnt download) or with an unreadable one."""
    from trainables.data.bundle import SOURCE_FILE

    try:
        record = json.loads((Path(folder) / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _compare_manifest(report: VerifyReport, manifest: dict) -> None:
    path = report.folder / MANIFEST
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if isinstance(previous, dict) and previous.get("sha256") not in (None, manifest["sha256"]):
        report.warnings.append(
            f"manifest: the file list changed since the last verify ({path}: "
            f"{str(previous['sha256'])[:12]} -> {manifest['sha256'][:12]}); rewriting it"
        )
    old = previous.get("files") if isinstance(previous, dict) else None
    if isinstance(old, dict):
        changed = sorted(k for k, v in manifest["files"].items() if old.get(k) not in (None, v))
        if changed:
            more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
            report.warnings.append(
                f"manifest: the content of {changed[0]}{more} changed since the last verify; "
                "rewriting it"
            )


def verify_bundle(
    data_root: str | os.PathLike,
    dataset: str,
    *,
    ratios: list[float | str] | None = None,
    workers: int | None = None,
    write_manifest: bool = True,
) -> VerifyReport:
    """Check every ratio of a bundle (or ``ratios``), decoding every image (``workers``
    processes, default: the CPUs this process may use); on success write ``manifest.json``."""
    checker = _Checker(data_root, dataset)
    report = checker.report
    found = available_ratios(data_root, dataset)
    wanted = [float(ratio_folder(r).removesuffix("pct")) for r in ratios] if ratios else found
    if not wanted:
        report.errors.append(
            f"train split not found: no <pct>/align folder under {report.folder}; expected "
            "folders 0.5pct, 1pct, 2pct, 5pct"
        )
    test_files = checker.read(wanted[0] if wanted else 1, "test")
    test = SplitRow("test", test_files or [])
    valid_rows: dict[str, SplitRow] = {}
    for ratio in wanted:
        pct = ratio_folder(ratio)
        train = SplitRow(f"train/{pct}", checker.read(ratio, "train") or [])
        valid_files = checker.read(ratio, "valid") or []
        shared = not any(f.relpath.startswith(f"{pct}/") for f in valid_files)
        valid_name = "valid" if shared else f"valid/{pct}"
        valid = valid_rows.setdefault(valid_name, SplitRow(valid_name, valid_files))
        report.rows.append(train)
        checker.check_duplicates(pct, [train, valid, test])
        if checker.spec.biased:  # an unbiased dataset has no conflicting ratio to check
            _soft_checks(report, ratio, train, valid)
        _class_checks(report, train, checker.spec.num_classes)
    report.rows.extend(valid_rows.values())
    report.rows.append(test)
    if checker.spec.biased:
        _test_checks(report, test, checker.spec.num_classes)
    _class_checks(report, test, checker.spec.num_classes)
    checker.check_images(report.rows, workers)
    if report.ok:
        paths = _files(report.rows)
        stats = _stats(paths)  # before hashing: a file written meanwhile is hashed next time
        digests = file_hashes(list(paths.values()), workers)
        hashes = {}
        for (rel, path), digest in zip(paths.items(), digests, strict=True):
            if digest is None or rel not in stats:
                report.errors.append(f"image: cannot read {path} (removed while verifying?)")
                return report
            hashes[rel] = (stats[rel].st_size, digest)
        report.manifest = build_manifest(report, hashes)
        source = read_source_record(report.folder)
        if source is not None:
            report.manifest["source"] = source
        if write_manifest:
            _compare_manifest(report, report.manifest)
            body = _manifest_bytes(report.manifest)
            _write_bytes_atomic(report.folder / MANIFEST, body)
            _write_seen(report.folder, body, {rel: stats[rel] for rel in hashes}, {})
    return report


def _manifest_bytes(payload: dict) -> bytes:
    return (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode()


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _stats(paths: dict[str, str]) -> dict[str, os.stat_result]:
    out = {}
    for rel, path in paths.items():
        try:
            out[rel] = os.stat(path)
        except OSError:
            continue
    return out


# ---------------------------------------------------------------------- the check before a sweep

SEEN_MIN_AGE_S = 2.0  # a file whose ctime is this recent is not vouched for by its stat alone


def _evidence(info: os.stat_result) -> list[int]:
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]


def _manifest_id(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:32]


def _read_seen(folder: Path, body: bytes) -> dict[str, list]:
    """The stat evidence of files last seen matching this manifest (empty when none)."""
    try:
        record = json.loads((folder / STAT_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict) or record.get("manifest") != _manifest_id(body):
        return {}
    files = record.get("files")
    return files if isinstance(files, dict) else {}


def _write_seen(
    folder: Path, body: bytes, matched: dict[str, os.stat_result], known: dict[str, list]
) -> None:
    """Remember the stat of files just seen to match the manifest (best effort: a read-only
    bundle is hashed on every check). Files changed in the last seconds are left out (a
    filesystem with coarse timestamps could give a later write the same stat)."""
    recent = (time.time() - SEEN_MIN_AGE_S) * 1e9
    files = dict(known)
    files.update({rel: _evidence(i) for rel, i in matched.items() if i.st_ctime_ns < recent})
    if files == known:
        return
    payload = {"manifest": _manifest_id(body), "files": files}
    with contextlib.suppress(OSError):
        _write_bytes_atomic(folder / STAT_FILE, json.dumps(payload).encode())


def ensure_manifest_current(
    data_root: str | os.PathLike, dataset: str, ratios: list[float | str] | None = None
) -> Path | None:
    """Refuse (``DataError``) a bundle whose images differ from its ``manifest.json``.

    A verified bundle that changed afterwards (an image replaced, added or removed) would train
    on data ``data verify`` never checked. Compares the images of the ratio folders of
    ``ratios`` (default all) and the shared ones (``test``, ``valid``) with the manifest's
    ``files``: the same names, sizes and content hashes. Modification times play no part (a
    clock ahead or behind, or a copy that does not keep them, changes nothing); a file whose
    ``stat`` is the one last seen matching (``.manifest-stat.json``) is not hashed again.
    Returns the manifest's path, or None when the bundle has none (never verified: nothing to
    compare). A manifest from before these checks (no ``files``) asks for ``data verify``.
    """
    folder = dataset_dir(data_root, dataset)
    manifest = folder / MANIFEST
    again = (
        f"run `rest-sweep data verify {folder}` again (it checks every image) before training on it"
    )
    try:
        body = manifest.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise DataError(f"data: cannot read {manifest} ({error.strerror}); {again}") from None
    expected = _manifest_files(body, manifest, again)
    wanted = {ratio_folder(r) for r in ratios} if ratios else None
    if wanted is not None:
        expected = {rel: v for rel, v in expected.items() if _in_scope(rel, wanted)}
        verified = {rel.split("/", 1)[0] for rel in expected}
        missing = sorted(wanted - verified)
        if missing:
            raise DataError(
                f"data: {folder / missing[0]} is not in {manifest} (`data verify` checked other "
                f"ratios); {again}"
            )
    current = _scan(folder, wanted)
    added = sorted(set(current) - set(expected))
    if added:
        raise DataError(
            f"data: {current[added[0]][0]}{_more(added)} was added after {manifest} was "
            f"written; {again}"
        )
    removed = sorted(set(expected) - set(current))
    if removed:
        raise DataError(
            f"data: {folder / removed[0]}{_more(removed)} was removed after {manifest} was "
            f"written; {again}"
        )
    seen = _read_seen(folder, body)
    changed = [rel for rel in sorted(expected) if current[rel][1].st_size != expected[rel][0]]
    unsure = [
        rel
        for rel in sorted(expected)
        if rel not in changed and seen.get(rel) != _evidence(current[rel][1])
    ]
    digests = file_hashes([current[rel][0] for rel in unsure])
    changed += [rel for rel, d in zip(unsure, digests, strict=True) if d != expected[rel][1]]
    if changed:
        changed.sort()
        raise DataError(
            f"data: {current[changed[0]][0]}{_more(changed)} changed after {manifest} was "
            f"written; {again}"
        )
    _write_seen(folder, body, {rel: current[rel][1] for rel in unsure}, seen)
    return manifest


def _manifest_files(body: bytes, manifest: Path, again: str) -> dict[str, tuple[int, str]]:
    """relative path -> (size, hash) from a manifest's ``files``; a one-line ``DataError``
    for a manifest without them (written before content checks) or a damaged one."""
    try:
        files = json.loads(body)["files"]
        out = {}
        for rel, entry in files.items():
            size, digest = str(entry).split()
            out[str(rel)] = (int(size), digest)
        return out
    except (ValueError, KeyError, TypeError, AttributeError):
        raise DataError(
            f"data: {manifest} holds no image sizes and content hashes (written by an older "
            f"release, or damaged); {again}"
        ) from None


def _in_scope(relpath: str, wanted: set[str] | None) -> bool:
    """Whether a file belongs to a wanted ratio folder or to a shared split."""
    top = relpath.split("/", 1)[0]
    return wanted is None or not PCT_RE.match(top) or top in wanted


def _scan(folder: Path, wanted: set[str] | None) -> dict[str, tuple[str, os.stat_result]]:
    """relative path -> (path, stat) of every image under ``folder`` that is in scope (hidden
    entries skipped, as the loaders skip them)."""
    found: dict[str, tuple[str, os.stat_result]] = {}
    prefix = len(os.fspath(folder)) + 1
    stack = [os.fspath(folder)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                rel = entry.path[prefix:].replace(os.sep, "/")
                if entry.is_dir():
                    if _in_scope(rel, wanted):
                        stack.append(entry.path)
                elif entry.name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file():
                    try:
                        found[rel] = (entry.path, entry.stat())
                    except FileNotFoundError:  # removed while scanning: it is missing
                        continue
    return found


def _more(items: list) -> str:
    return f" (and {len(items) - 1} more)" if len(items) > 1 else ""
