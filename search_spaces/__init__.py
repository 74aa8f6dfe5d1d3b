"""Which trials exist: named grids (paper tables, figure 3, demo) and YAML user grids.

``resolve(name_or_path)`` is the one entry point the service and the CLI use: wherever a grid
is expected, a registered name or the path of a YAML file is accepted.
"""

from __future__ import annotations

from pathlib import Path

from search_spaces.catalog import GRIDS
from search_spaces.grid import Block, Expansion, Grid, PendingRow, expand, parse_overrides


def resolve(name_or_path: str) -> Grid:
    """A registered grid by name, or a grid file (``*.yaml``/``*.yml`` or any existing file)."""
    if name_or_path in GRIDS:
        return GRIDS.get(name_or_path)
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        from search_spaces.spec import load_grid_file

        return load_grid_file(path)
    return GRIDS.get(name_or_path)  # raises, listing the registered names


__all__ = [
    "GRIDS",
    "Block",
    "Expansion",
    "Grid",
    "PendingRow",
    "expand",
    "parse_overrides",
    "resolve",
]
