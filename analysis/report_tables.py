"""The tables of ``analyze`` and ``report``: one registry entry per table.

:func:`analysis.api.build` computes every registered table, in registration order (the files
``tables/<name>.{md,csv,tex}``); :mod:`analysis.report` links each from its navigation bar and
shows it in its section, in the same order. Adding a table is one ``REPORT_TABLES.register``
call below: its function, its navigation text and its section.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from analysis.cells import MetricChoice
from analysis.paper import comparison
from analysis.tables import Table, methods_table, table1, table2, table3
from trainables.registry import Registry

# The report's sections that show tables: (html id, heading), in page order.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("tables", "Tables"),
    ("paper-comparison", "Comparison with the paper"),
)

# (trials frame, seed cells, metric choice, min_seeds) -> the table.
TableBuilder = Callable[[pd.DataFrame, pd.DataFrame, MetricChoice, int | None], Table]


@dataclass(frozen=True)
class ReportTable:
    """One table: how it is computed, what the report's navigation bar calls it (the link goes
    to the table's own ``Table.name``, its heading's id) and which of :data:`SECTIONS` shows it.
    """

    build: TableBuilder
    nav: str
    section: str

    def __post_init__(self) -> None:
        if self.section not in dict(SECTIONS):
            allowed = ", ".join(dict(SECTIONS))
            raise ValueError(f"section {self.section!r} is not allowed; allowed: {allowed}")


REPORT_TABLES: Registry[ReportTable] = Registry("report table")
REPORT_TABLES.register(
    "table2",
    ReportTable(lambda frame, cells, choice, n: table2(cells, choice, n), "Table 2", "tables"),
)
REPORT_TABLES.register(
    "table3",
    ReportTable(lambda frame, cells, choice, n: table3(cells, choice, n), "Table 3", "tables"),
)
REPORT_TABLES.register(
    "table1",
    ReportTable(lambda frame, cells, choice, n: table1(cells, choice, n), "Table 1", "tables"),
)
REPORT_TABLES.register(
    "methods",
    ReportTable(
        lambda frame, cells, choice, n: methods_table(frame, cells, choice, n), "Methods", "tables"
    ),
)
REPORT_TABLES.register(
    "paper_comparison",
    ReportTable(
        lambda frame, cells, choice, n: comparison(frame, choice.epoch, n),
        "Paper",
        "paper-comparison",
    ),
)


def build_tables(
    frame: pd.DataFrame, cells: pd.DataFrame, choice: MetricChoice, min_seeds: int | None
) -> dict[str, Table]:
    """Every registered table, by registry name, in registration order."""
    return {
        name: REPORT_TABLES.get(name).build(frame, cells, choice, min_seeds)
        for name in REPORT_TABLES
    }


__all__ = ["REPORT_TABLES", "SECTIONS", "ReportTable", "build_tables"]
