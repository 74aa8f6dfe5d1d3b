"""Results of an experiment folder as Parquet, the paper's tables, plotly figures and an HTML
report, read with no Ray running and without importing torch or the training code.

Modules: ``load`` (ledger + trial folders), ``schema`` / ``parquet`` (the two Parquet files),
``cells`` (seed aggregation), ``tables`` / ``render`` (Tables 1-3, Markdown / CSV / LaTeX /
HTML), ``paper`` (the paper's numbers), ``figures`` / ``export`` (plotly; PNG via
kaleido and a local Chromium), ``report`` (the HTML page), ``api`` (what the CLI calls), ``synthetic``
(made-up experiment folders for tests and benchmarks). See docs/analysis.md.
"""
