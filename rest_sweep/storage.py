"""Experiment names and storage: the checks every command makes before it reads or writes.

An experiment is the folder ``<storage>/<name>`` (``trainables.results.ExperimentStore``):
:func:`check_name` keeps ``--name`` one folder, :func:`check_writable` proves a local storage
writable before anything is planned there, and :func:`storage_error` turns a failed read or
write (read-only, full, missing) into one line. :func:`open_store` is the three together.
"""

from __future__ import annotations

import os

import pyarrow.fs as pafs

from trainables.errors import UserError
from trainables.results import ExperimentStore


def check_name(name: str) -> str:
    """``--name`` must be one folder name under the storage: no '/', not '', '.' or '..'."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise UserError(
            f"--name {name!r}: not a single folder name; allowed: a non-empty name without "
            "'/' or '\\', other than '.' and '..'"
        )
    return name


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
    """The experiment ``name`` in ``storage`` after checking the name (and that it is writable)."""
    check_name(name)
    if write:
        check_writable("--storage", storage)
    return ExperimentStore(storage, name)
