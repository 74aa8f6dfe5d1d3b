"""Which trials exist: named grids (paper tables, figure 3, demo) and YAML user grids.

``resolve(name_or_path)`` is the one entry point the service and the CLI use: wherever a grid
is expected, a registered name or the path of a YAML file is accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from search_spaces.catalog import GRIDS
from search_spaces.grid import Block, Expansion, Grid, PendingRow, expand, parse_overrides


def resolve(name_or_path: str, *, check: bool = True) -> Grid:
    """A registered grid by name, or a grid file (``*.yaml``/``*.yml`` or any existing file);
    a file is expanded once to check its values unless ``check`` is False (the caller expands
    it with :func:`expand_grid`)."""
    if name_or_path in GRIDS:
        return GRIDS.get(name_or_path)
    path = Path(name_or_path)
    if _is_file(path):
        from search_spaces.spec import load_grid_file

        return load_grid_file(path, check=check)
    return GRIDS.get(name_or_path)  # raises, listing the registered names


def expand_grid(name_or_path: str, overrides: Mapping[str, Any] | None = None) -> Expansion:
    """The trials of a registered grid or a grid file under ``overrides`` (``--set``): what a
    launch plans, each trial validated once (a file is not expanded a second time to check it)."""
    if name_or_path not in GRIDS and _is_file(Path(name_or_path)):
        from search_spaces.spec import expand_file, load_grid_file

        return expand_file(name_or_path, load_grid_file(name_or_path, check=False), overrides)
    return expand(resolve(name_or_path), overrides)


def _is_file(path: Path) -> bool:
    return path.suffix in (".yaml", ".yml") or path.is_file()


__all__ = [
    "GRIDS",
    "Block",
    "Expansion",
    "Grid",
    "PendingRow",
    "expand",
    "expand_grid",
    "parse_overrides",
    "resolve",
]
