"""The HTML report: one self-contained page (plotly.js inlined once, no CDN, no timestamps).

Sections: the sweep's status (counts per state and method, what is missing, errors), the
recipes and the knobs each one sets, the tables (Tables 2, 3, 1 and the methods table: labels
used, networks, training cost), the comparison with the paper, the figures.
A partial sweep gives a partial page that lists what is missing rather than hiding it.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import pandas as pd
from plotly.offline import get_plotlyjs

from analysis import figures, levels, render
from analysis.cells import data_names, labels_text
from analysis.export import figure_div
from analysis.report_tables import REPORT_TABLES, SECTIONS
from analysis.schema import STATUSES
from analysis.tables import DATASET_NAMES, labelled, method_label

if TYPE_CHECKING:  # api imports this module lazily; the type only matters to checkers
    from analysis.api import Analysis

REPORT_FILE = "report.html"
MAX_LISTED = 60
# The knobs where the paper and its public code disagree (docs/presets.md): shown per recipe.
RECIPE_KNOBS = (
    "optimizer",
    "weight_decay",
    "lr_schedule",
    "augment",
    "reweight",
    "drop_fraction",
    "drop_schedule",
    "reset_momentum",
)

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1500px;
color:#222;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table.results{border-collapse:collapse;font-size:13px;margin:8px 0}
table.results th,table.results td{border:1px solid #ddd;padding:3px 8px;text-align:left;white-space:nowrap}
table.results th{background:#f4f4f4}td.missing{color:#a33;background:#fff4f4}
ul.notes{font-size:12px;color:#555}nav a{margin-right:14px}.meta{color:#555;font-size:13px}
.bar{display:flex;height:14px;width:600px;border:1px solid #ccc;margin:6px 0}
.bar span{display:block;height:100%}.warn{color:#a33}.figure{margin:12px 0}
"""
STATUS_COLORS = {
    "finished": "#2ca02c",
    "running": "#1f77b4",
    "errored": "#d62728",
    "stopped": "#ff7f0e",
    "pending": "#cccccc",
    "damaged": "#8c564b",
}


def _esc(value: object) -> str:
    return html.escape(str(value))


def _int(value: object) -> str:
    return "—" if value is None or pd.isna(value) else str(int(value))


def _simple_table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="results"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def status_section(analysis: Analysis) -> str:
    df = analysis.frame
    total = len(df)
    counts = df["status"].value_counts().to_dict()
    bar = "".join(
        f'<span title="{s}: {counts.get(s, 0)}" style="width:{100 * counts.get(s, 0) / max(1, total):.3f}%;'
        f'background:{STATUS_COLORS[s]}"></span>'
        for s in STATUSES
    )
    summary = ", ".join(f"{s} {counts.get(s, 0)}" for s in STATUSES)
    rows = []
    for method, group in sorted(df.groupby("method"), key=lambda kv: str(kv[0])):
        c = group["status"].value_counts().to_dict()
        labels = labels_text(group["labels_used"]) if "labels_used" in group else None
        name = labelled(str(method), "", labels)
        rows.append([name, *(c.get(s, 0) for s in STATUSES), len(group)])
    rows.append(["all", *(counts.get(s, 0) for s in STATUSES), total])
    parts = [
        '<h2 id="status">Status</h2>',
        f"<p>{total} planned trials: {_esc(summary)}.</p><div class='bar'>{bar}</div>",
        _simple_table(["method", *STATUSES, "planned"], rows),
    ]
    if counts.get("finished", 0) < total:
        parts.append(
            f'<p class="warn">Partial sweep: {total - counts.get("finished", 0)} of {total} '
            "trials have not finished; tables show those cells as missing.</p>"
        )
        parts.append(missing_cells(analysis.cells))
    errored = df[df["status"] == "errored"]
    if not errored.empty:
        err_rows = [
            [r["label"], r["trial_hash"], _int(r["attempts"]), r["error"]]
            for _, r in errored.head(MAX_LISTED).iterrows()
        ]
        parts += [
            "<h3>Errored trials</h3>",
            _simple_table(["trial", "hash", "attempts", "error"], err_rows),
        ]
    from analysis.api import damaged_trials  # api imports this module lazily

    damaged = damaged_trials(analysis)
    if damaged:
        damaged_rows = [[d.label, d.trial_hash, d.problem] for d in damaged[:MAX_LISTED]]
        parts += [
            "<h3>Damaged trials</h3>",
            f"<p class='warn'>{len(damaged)} finished trial(s) whose stored results fail their "
            "check are left out of the tables; repair them with "
            f"<code>{_esc(analysis.experiment.repair)}</code>.</p>",
            _simple_table(["trial", "hash", "problem"], damaged_rows),
        ]
    pending_rows = analysis.experiment.ledger.get("pending_rows") or {}
    if pending_rows:
        methods = sorted(
            {str(v.get("method")) for v in pending_rows.values() if isinstance(v, dict)}
        )
        parts.append(
            f"<p class='warn'>{len(pending_rows)} grid row(s) wait for methods that are not "
            f"implemented yet ({_esc(', '.join(methods))}); their columns stay missing.</p>"
        )
    if analysis.experiment.orphans:
        parts.append(
            f"<p class='meta'>{len(analysis.experiment.orphans)} trial folder(s) not in the ledger "
            "were ignored (left over from an older plan).</p>"
        )
    return "".join(parts)


def missing_cells(cells: pd.DataFrame) -> str:
    """Cells with fewer finished seeds than planned (first MAX_LISTED)."""
    todo = cells[cells["n_done"] < cells["n_planned"]]
    rows = [
        [
            r["data"] if "data" in r else DATASET_NAMES.get(r["dataset"], r["dataset"]),
            f"{r['ratio']:g}",
            r["recipe"],
            method_label(r["method"], r["variant"]),
            f"{r['density']:g}",
            f"{r['n_done']}/{r['n_planned']}",
        ]
        for _, r in todo.head(MAX_LISTED).iterrows()
    ]
    more = (
        f"<p class='meta'>… and {len(todo) - MAX_LISTED} more.</p>"
        if len(todo) > MAX_LISTED
        else ""
    )
    header = ["dataset", "ratio (%)", "recipe", "method", "density", "finished/planned"]
    return f"<h3>Missing cells ({len(todo)})</h3>" + _simple_table(header, rows) + more


def data_line(df: pd.DataFrame) -> str:
    """One line naming each dataset's data and whether it may be compared with the paper."""
    parts = []
    for dataset, name in data_names(df).items():
        part = f"<code>{_esc(dataset)}</code> = {_esc(name.name)}"
        if not name.comparable:  # the name already says "mixed" / "not recorded"
            why = "" if name.why in name.name else f": {name.why}"
            part += f" (not comparable with the paper{_esc(why)})"
        parts.append(part)
    return f"<p class='meta'>Data: {'; '.join(parts)}.</p>" if parts else ""


def recipe_section(df: pd.DataFrame) -> str:
    rows = []
    for recipe, group in sorted(df.groupby("recipe"), key=lambda kv: str(kv[0])):
        knobs = [", ".join(sorted({str(v) for v in group[k].dropna()})) for k in RECIPE_KNOBS]
        rows.append([recipe, len(group), int((group["status"] == "finished").sum()), *knobs])
    intro = (
        "<p>Every number in the tables carries its recipe: <b>paper</b> = the paper's text "
        "(Adam, loss reweighting, ...); <b>rest-code</b> = the public code (SGD, plateau "
        "schedule, resampling, ...). See docs/presets.md.</p>"
    )
    return (
        '<h2 id="recipes">Recipes</h2>'
        + intro
        + _simple_table(["recipe", "trials", "finished", *RECIPE_KNOBS], rows)
    )


def figure_section(analysis: Analysis) -> str:
    df, parts = analysis.frame, ['<h2 id="figures">Figures</h2>']
    for dataset, recipe in figures.figure_names(df):
        fig = figures.density_curves(df, dataset, recipe, analysis.options.epoch)
        parts.append(f'<div class="figure">{figure_div(fig, f"density_{dataset}_{recipe}")}</div>')
    for dataset in sorted(df["dataset"].dropna().unique()):
        fig = figures.flops_scatter(df, dataset, analysis.options.choice)
        parts.append(f'<div class="figure">{figure_div(fig, f"flops_{dataset}")}</div>')
    parts.append(levels_section(analysis))
    return "".join(parts)


def levels_section(analysis: Analysis) -> str:
    """Pruning trials only: the double-descent figure per dataset and the best level per
    setting (nothing when no trial has levels)."""
    table = levels.levels_table(analysis.experiment)
    if table is None:
        return ""
    frame = table.to_pandas()
    parts = ['<h3 id="levels">Pruning levels: sparse double descent</h3>']
    for dataset in sorted(frame["cfg_dataset"].dropna().unique()):
        fig = levels.double_descent_figure(frame, dataset)
        parts.append(f'<div class="figure">{figure_div(fig, f"double_descent_{dataset}")}</div>')
    rows = []
    for _, best in levels.best_levels(frame).iterrows():
        rows.append(
            [
                best["cfg_dataset"],
                best["setting"],
                int(best["level"]),
                f"{best['density']:.4g}",
                f"{100 * best['test_acc']:.1f}",
                int(best["seeds"]),
            ]
        )
    headers = ["dataset", "setting", "best level", "density", "test accuracy (%)", "seeds"]
    return "".join(parts) + _simple_table(headers, rows)


def report_html(analysis: Analysis) -> str:
    """The whole page as a string (deterministic for unchanged inputs)."""
    exp, opts = analysis.experiment, analysis.options
    # The grids planned into the experiment; a `resume` launch records "(all planned)", which
    # names no grid (it runs what the grids above planned).
    launched = {
        g
        for launch in exp.ledger.get("launches") or []
        if isinstance(launch, dict)
        for g in ([launch.get("grid")] if launch.get("grid") else launch.get("grids") or [])
    }
    planned = {
        g.get("grid")
        for g in exp.ledger.get("grids") or []
        if isinstance(g, dict) and g.get("grid")
    }
    grids = sorted(str(g) for g in launched | planned if g and not str(g).startswith("("))
    meta = (
        f"<p class='meta'>Experiment <code>{_esc(exp.uri)}</code>; grids: {_esc(', '.join(grids) or '—')}; "
        f"metric: {_esc(opts.metric)} at the {_esc(opts.epoch)} epoch; a cell needs "
        f"{'all planned' if opts.min_seeds is None else _esc(opts.min_seeds)} finished seed(s). "
        "Data: trials.parquet / epochs.parquet from <code>rest-sweep analyze</code>.</p>"
    )
    # The registered tables (analysis.report_tables), in order: a nav link to each table's
    # heading (its Table.name) and the table in its section.
    shown = [(name, REPORT_TABLES.get(name)) for name in REPORT_TABLES if name in analysis.tables]
    links = [
        ("status", "Status"),
        ("recipes", "Recipes"),
        *((analysis.tables[name].name, spec.nav) for name, spec in shown),
        ("figures", "Figures"),
    ]
    nav = "<nav>" + "".join(f'<a href="#{a}">{t}</a>' for a, t in links) + "</nav>"
    sections = [
        f'<h2 id="{anchor}">{heading}</h2>'
        + "".join(
            render.html_fragment(analysis.tables[name])
            for name, spec in shown
            if spec.section == anchor
        )
        for anchor, heading in SECTIONS
    ]
    body = "".join(
        [
            f"<h1>rest-sweep report: {_esc(exp.name)}</h1>",
            meta,
            data_line(analysis.frame),
            nav,
            status_section(analysis),
            recipe_section(analysis.frame),
            *sections,
            figure_section(analysis),
        ]
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>rest-sweep report: {_esc(exp.name)}</title><style>{CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head>'
        f"<body>{body}</body></html>\n"
    )
