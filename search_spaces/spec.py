"""User grids from YAML, in the vocabulary of the built-in ones (see docs/sweeps.md).

Every mistake is one :class:`UserError` line naming the file, the key and what is allowed, and
the file is fully expanded here (each trial validated by ``TrialConfig``) before Ray starts.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from search_spaces.grid import RESERVED_KEYS, Block, Expansion, Grid, expand
from trainables.config import RECIPES, coerce, field_names
from trainables.errors import UserError
from trainables.methods import METHODS, PAPER_BASELINES_PENDING

TOP_KEYS = ("name", "description", "recipe", "fixed", "axes", "methods")
METHOD_KEYS = ("axes", "fixed")


class GridFileError(UserError):
    """A grid YAML file that cannot be used; the message starts with the file name."""


def load_grid_file(path: str | Path, *, check: bool = True) -> Grid:
    """Parse and validate a grid file; with ``check`` the grid is expanded once so bad values
    fail here (:func:`expand_file` expands and checks in one pass instead)."""
    path = Path(path)
    if not path.is_file():
        raise GridFileError(f"{path}: grid file not found")
    grid = _grid_from_mapping(path, _read_yaml(path))
    if check:
        expand_file(path, grid)
    return grid


def _read_yaml(path: Path) -> Any:
    """The YAML document in ``path``. A file that is not UTF-8 text, not YAML, or that gives a
    key twice in one mapping (YAML would silently keep the last) is one line naming it."""
    import yaml

    try:
        raw = path.read_bytes()
    except OSError as error:
        raise GridFileError(f"{path}: cannot read ({error.strerror or error})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise GridFileError(
            f"{path}: not a text file (byte 0x{raw[error.start]:02x} at offset {error.start} is "
            "not UTF-8); allowed: a YAML grid file (docs/sweeps.md)"
        ) from None
    try:
        return yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = " ".join(str(getattr(error, "problem", None) or "").split())
        if isinstance(error, yaml.reader.ReaderError):  # a control character, a NUL
            code = error.character if isinstance(error.character, int) else ord(error.character)
            problem = f"character #x{code:04x} at offset {error.position} is not allowed in YAML"
        raise GridFileError(
            f"{path}: not valid YAML{where}" + (f": {problem}" if problem else "")
        ) from None


@functools.cache
def _unique_key_loader() -> type:
    """``yaml.SafeLoader`` refusing a key given twice in one mapping (the error names the key
    and both lines); a merge key's (``<<: *anchor``) values may still be overridden."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
            lines: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if isinstance(key, list | dict):  # unhashable: SafeLoader's error names it
                    break
                if key in lines:
                    raise yaml.constructor.ConstructorError(
                        problem=f"key {key!r} given twice in one mapping (first on line "
                        f"{lines[key]}); allowed: each key once",
                        problem_mark=key_node.start_mark,
                    )
                lines[key] = line
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def expand_file(
    path: str | Path, grid: Grid, overrides: Mapping[str, Any] | None = None
) -> Expansion:
    """``expand(grid, overrides)`` of a file's grid, its errors naming the file: every trial
    validated once, here."""
    try:
        return expand(grid, overrides)
    except UserError as error:
        raise GridFileError(f"{path}: {error}") from None


def _fail(path: Path, key: str, message: str) -> GridFileError:
    return GridFileError(f"{path}: {key}: {message}")


def _grid_from_mapping(path: Path, data: Any) -> Grid:
    if not isinstance(data, dict):
        raise GridFileError(f"{path}: expected a mapping with keys {', '.join(TOP_KEYS)}")
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise _fail(path, unknown[0], f"unknown key; allowed: {', '.join(TOP_KEYS)}")
    recipe = data.get("recipe", "paper")
    if recipe not in RECIPES:
        raise _fail(path, "recipe", f"{recipe!r} is not allowed; allowed: {', '.join(RECIPES)}")
    axes = _axes(path, "axes", data.get("axes", {}))
    fixed = _fixed(path, "fixed", data.get("fixed", {}))
    methods = data.get("methods")
    if not methods:
        raise _fail(path, "methods", "required: a list of method names or a mapping")
    if isinstance(methods, list):
        methods = dict.fromkeys(methods, None)
    if not isinstance(methods, dict):
        raise _fail(path, "methods", "expected a list of method names or a mapping")
    blocks = []
    for method, extra in methods.items():
        _check_method(path, method)
        extra = extra or {}
        if not isinstance(extra, dict):
            raise _fail(path, f"methods.{method}", "expected a mapping with keys axes, fixed")
        bad = sorted(set(extra) - set(METHOD_KEYS))
        if bad:
            raise _fail(
                path,
                f"methods.{method}.{bad[0]}",
                f"unknown key; allowed: {', '.join(METHOD_KEYS)}",
            )
        method_axes = {**axes, **_axes(path, f"methods.{method}.axes", extra.get("axes", {}))}
        method_fixed = {**fixed, **_fixed(path, f"methods.{method}.fixed", extra.get("fixed", {}))}
        for key in set(method_axes) & set(method_fixed):
            method_fixed.pop(key)  # a per-method axis wins over a file-wide fixed value
        blocks.append(Block.of([method], method_axes, method_fixed))
    name = str(data.get("name") or path.stem)
    description = str(data.get("description") or f"user grid from {path}")
    return Grid(
        name=name, description=description, blocks=tuple(blocks), recipe=recipe, source=str(path)
    )


def _check_key(path: Path, where: str, key: Any) -> None:
    allowed = [k for k in field_names() if k not in RESERVED_KEYS]
    if key in RESERVED_KEYS:
        hint = "list methods under 'methods'" if key == "method" else "set 'recipe' at the top"
        raise _fail(path, f"{where}.{key}", f"not allowed here; {hint}")
    if key not in allowed:
        raise _fail(path, f"{where}.{key}", f"unknown field; allowed: {', '.join(allowed)}")


def _axes(path: Path, where: str, raw: Any) -> dict[str, tuple]:
    if not isinstance(raw, dict):
        raise _fail(path, where, "expected a mapping of field -> list of values")
    out = {}
    for key, values in raw.items():
        _check_key(path, where, key)
        if not isinstance(values, list) or not values:
            raise _fail(path, f"{where}.{key}", "expected a non-empty list of values")
        out[key] = tuple(_value(path, f"{where}.{key}", key, v) for v in values)
    return out


def _fixed(path: Path, where: str, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _fail(path, where, "expected a mapping of field -> value")
    out = {}
    for key, value in raw.items():
        _check_key(path, where, key)
        if isinstance(value, list | dict):
            raise _fail(path, f"{where}.{key}", "expected one value (sweep lists under 'axes')")
        out[key] = _value(path, f"{where}.{key}", key, value)
    return out


def _value(path: Path, where: str, key: str, value: Any) -> Any:
    try:
        return coerce(key, value if not isinstance(value, bool | int | float) else value)
    except UserError as error:
        raise _fail(path, where, str(error)) from None


def _check_method(path: Path, method: Any) -> None:
    if method not in METHODS and method not in PAPER_BASELINES_PENDING:
        allowed = ", ".join([*METHODS.names(), *PAPER_BASELINES_PENDING])
        raise _fail(path, "methods", f"{method!r} is not allowed; allowed: {allowed}")
