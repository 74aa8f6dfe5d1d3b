"""Experiment names and storage: the checks every command makes before it reads or writes.

An experiment is the folder ``<storage>/<name>`` (``trainables.results.ExperimentStore``):
:func:`check_name` keeps ``--name`` one folder, :func:`check_storage` refuses an empty storage
and one that is a file (:func:`check_folder`: the same for any folder flag, ``--out``),
:func:`check_writable` proves a local storage writable before anything is planned there, and
:func:`storage_error` turns a failed read or write (read-only, full, missing) into one line.
:func:`open_store` is the checks together.
"""

from __future__ import annotations

import os

import pyarrow.fs as pafs

from trainables.errors import UserError
from trainables.results import ExperimentStore

NAME_MAX = 100  # characters of an experiment name (a folder, and part of Tune's paths)


def check_name(name: str) -> str:
    """``--name`` must be one folder name under the storage: no '/' or '\\', no control
    character (a newline), not '', '.' or '..', at most :data:`NAME_MAX` characters."""
    control = any(ord(c) < 32 or ord(c) == 127 for c in name)
    if (
        not name
        or name in (".", "..")
        or any(c in name for c in "/\\")
        or control
        or len(name) > NAME_MAX
    ):
        shown = (
            repr(name) if len(name) <= NAME_MAX else f"{name[:20]!r}... ({len(name)} characters)"
        )
        raise UserError(
            f"--name {shown}: not a single folder name; allowed: a non-empty name of at most "
            f"{NAME_MAX} characters without '/', '\\' or control characters (newline, tab), "
            "other than '.' and '..'"
        )
    return name


def check_folder(label: str, uri: str) -> str:
    """A local folder ``uri`` that exists or can be created: neither it nor a folder above it
    is a file. Creates nothing; a URI other than ``file://`` is left to its filesystem."""
    if "://" in uri and not uri.startswith("file://"):
        return uri
    from trainables.results import resolve

    _, path = resolve(uri)
    here = path
    while not os.path.lexists(here) and os.path.dirname(here) != here:
        here = os.path.dirname(here)
    if os.path.lexists(here) and not os.path.isdir(here):
        what = "is a file" if here == path else f"is under the file {here}"
        raise UserError(
            f"{label} {uri}: {what}, not a folder; allowed: a folder, or a path where one can "
            "be created"
        )
    return uri


def check_storage(storage: str) -> str:
    """``--storage``: not empty (that would be the current folder), and a folder, not a file
    (:func:`check_folder`)."""
    if not storage.strip():
        raise UserError(
            f"--storage {storage!r}: empty; allowed: a local folder or a URI (s3://...)"
        )
    return check_folder("--storage", storage)


def storage_error(where: str, action: str, error: OSError) -> UserError:
    """A one-line error for a failed read or write on storage (read-only, full, missing)."""
    reason = error.strerror or str(error) or type(error).__name__
    return UserError(f"{where}: cannot {action} ({reason})")


def check_writable(label: str, uri: str) -> None:
    """Create the local folder ``uri`` and write a probe file there (no-op for URIs)."""
    from trainables.results import resolve

    fs, path = resolve(uri)  # an unknown URI scheme is a one-line error here
    if not isinstance(fs, pafs.LocalFileSystem):
        return
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-probe-{os.getpid()}")
        os.close(os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644))
        os.unlink(probe)
    except OSError as error:
        raise storage_error(f"{label} {uri}", "write there", error) from None


def open_store(storage: str, name: str, *, write: bool = False) -> ExperimentStore:
    """The experiment ``name`` in ``storage`` after checking the name and the storage (and
    that it is writable)."""
    check_storage(storage)
    check_name(name)
    if write:
        check_writable("--storage", storage)
    return ExperimentStore(storage, name)
