"""Render a :class:`analysis.tables.Table` as Markdown, CSV, LaTeX or an HTML fragment.

The CSV is for machines: next to each cell's text it carries the numbers (mean, std, seeds
done / planned, density) as separate columns, empty when missing, so nobody parses "±".
"""

from __future__ import annotations

import csv
import html
import io

from analysis.tables import Cell, Table


def _text(value: str | Cell) -> str:
    return value.text() if isinstance(value, Cell) else str(value)


def markdown(table: Table) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [f"### {table.title}", "", line(table.header), line(["---"] * len(table.header))]
    out += [line([_text(v) for v in row]) for row in table.rows]
    if not table.rows:
        out.append(line(["(no trials)"] + [""] * (len(table.header) - 1)))
    out += ["", *(f"- {note}" for note in table.notes)]
    return "\n".join(out) + "\n"


def _num(value: float | int | None) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def csv_text(table: Table) -> str:
    cell_columns = {i for row in table.rows for i, v in enumerate(row) if isinstance(v, Cell)}
    header: list[str] = []
    for i, name in enumerate(table.header):
        header.append(name)
        if i in cell_columns:
            header += [
                f"{name}:{part}"
                for part in ("mean", "std", "done", "planned", "density", "chosen_by")
            ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in table.rows:
        out: list[str] = []
        for i, value in enumerate(row):
            out.append(_text(value))
            if i in cell_columns:
                c = value if isinstance(value, Cell) else None
                shown = c is not None and c.shown
                out += [
                    _num(c.mean) if shown else "",
                    _num(c.std) if shown else "",
                    _num(c.n_done) if c else "",
                    _num(c.n_planned) if c else "",
                    _num(c.density) if shown else "",
                    (c.chosen_by or "") if c else "",
                ]
        writer.writerow(out)
    return buffer.getvalue()


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "—": "---",
    "×": r"$\times$",
    "’": "'",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def latex(table: Table) -> str:
    """A booktabs ``table`` environment; notes go in the caption."""
    spec = "l" * len(table.header)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\caption{{{latex_escape(table.title)}. {latex_escape(' '.join(table.notes))}}}",
        rf"\label{{tab:{table.name}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in table.header) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(latex_escape(_text(v)) for v in row) + r" \\" for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def html_fragment(table: Table) -> str:
    """A ``<table>`` with missing cells marked (class ``missing``) for the report's CSS."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = []
    for row in table.rows:
        tds = []
        for value in row:
            missing = isinstance(value, Cell) and not value.shown
            css = ' class="missing"' if missing else ""
            tds.append(f"<td{css}>{html.escape(_text(value))}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in table.notes)
    return (
        f'<h3 id="{table.name}">{html.escape(table.title)}</h3>'
        f'<table class="results"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
        f'<ul class="notes">{notes}</ul>'
    )
