"""Write figures as standalone HTML (plotly.js inlined: works offline) and, on request, PNG.

PNGs come from kaleido (>= 1.3), plotly's own static exporter: it renders each figure with
plotly.js in a headless Chromium or Chrome that it *finds* on the machine (choreographer's
lookup: ``$BROWSER_PATH``, else Chrome / Chromium / ... names on ``PATH`` and their usual install
paths such as ``/usr/bin/chromium``; docs/analysis.md has the order). We never call
``kaleido.get_chrome``, so nothing is downloaded, and MathJax (which kaleido would fetch from a
CDN) is off: our figures have no LaTeX. A :class:`FigureWriter` writes each HTML file at once
and renders all its PNGs at :meth:`FigureWriter.close` in **one** browser start (kaleido's batch
API), since starting Chromium costs about as much as rendering a handful of figures.

Without kaleido or a browser the PNGs are skipped with a one-line note naming ``BROWSER_PATH``
and the Debian package; the HTML files are always written.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go

from trainables.results import Location

PLOTLY_CONFIG = {"displaylogo": False, "responsive": False}
# Size of a PNG whose figure sets none (plotly's own default is 700 x 500).
PNG_WIDTH, PNG_HEIGHT = 900, 450
# Seconds kaleido waits for one figure to render (its default is 90).
PNG_TIMEOUT_S = 120.0
INSTALL_HINT = "install Chromium or Chrome (Debian: apt-get install chromium)"


def figure_html(fig: go.Figure, div_id: str) -> str:
    """A full HTML page with plotly.js inlined; ``div_id`` fixed so re-runs are identical."""
    return fig.to_html(full_html=True, include_plotlyjs=True, div_id=div_id, config=PLOTLY_CONFIG)


def figure_div(fig: go.Figure, div_id: str) -> str:
    """The figure as a ``<div>`` + script for a page that loads plotly.js once itself."""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOTLY_CONFIG)


def browser_path() -> str | None:
    """The browser kaleido would start, by kaleido's own lookup (choreographer's), or None.

    Asked before rendering so a missing browser gives our one-line note instead of kaleido's
    advice to download Chrome. ``BROWSER_PATH`` wins over ``PATH`` but must name a file."""
    try:
        from choreographer.browsers import Chromium
    except ImportError:  # kaleido (which brings choreographer) not installed
        return None
    path = Chromium.find_browser(skip_local=False)
    return path if path and Path(path).is_file() else None


def missing_browser_note() -> str:
    """Why PNGs cannot be made here, as one line (what :func:`browser_path` found wrong)."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return "PNG skipped: kaleido is not installed (pip install 'kaleido>=1.3'); HTML written"
    explicit = os.environ.get("BROWSER_PATH")
    if explicit:
        return (
            f"PNG skipped: BROWSER_PATH={explicit!r} is not a file; point it at a Chromium/Chrome "
            f"binary, or unset it and {INSTALL_HINT}; HTML written"
        )
    return (
        f"PNG skipped: no browser for kaleido; {INSTALL_HINT} "
        "or set BROWSER_PATH to one; HTML written"
    )


def png_size(fig: go.Figure) -> tuple[int, int]:
    """The PNG's pixel size: the figure's own layout size, else :data:`PNG_WIDTH` x
    :data:`PNG_HEIGHT` (scale 1, so a PNG is as large as the figure is on the HTML page)."""
    return int(fig.layout.width or PNG_WIDTH), int(fig.layout.height or PNG_HEIGHT)


def _one_line(error: BaseException) -> str:
    """``Type: first line of the first argument`` (choreographer packs advice into its args)."""
    text = str(error.args[0]) if error.args else ""
    return (
        f"{type(error).__name__}: {text.splitlines()[0]}" if text.strip() else type(error).__name__
    )


def render_pngs(
    figures: dict[str, go.Figure], browser: str, *, timeout_s: float = PNG_TIMEOUT_S
) -> tuple[dict[str, bytes], list[str]]:
    """Render every figure to PNG in one start of ``browser``; returns (stem -> PNG bytes of
    the figures that rendered, one line per render error).

    Uses kaleido's batch call ``write_fig_from_object_sync`` (one browser, one tab reused for
    every figure; it runs its own event loop in a thread, so it also works under a running
    loop such as Jupyter's). kaleido writes local files only, while ``out`` may be an object
    store, so it writes into a temporary folder and the caller copies the bytes to ``out``.
    A browser that does not start raises (RuntimeError from choreographer)."""
    import kaleido

    with tempfile.TemporaryDirectory(prefix="rest-sweep-png-") as tmp:
        paths = {stem: Path(tmp) / f"{stem}.png" for stem in figures}
        specs = []
        for stem, fig in figures.items():
            width, height = png_size(fig)
            opts = {"format": "png", "width": width, "height": height, "scale": 1}
            specs.append({"fig": fig, "path": paths[stem], "opts": opts})
        errors = kaleido.write_fig_from_object_sync(
            specs, kopts={"path": browser, "mathjax": False, "timeout": timeout_s}
        )
        pngs = {stem: path.read_bytes() for stem, path in paths.items() if path.is_file()}
    return pngs, [_one_line(e) for e in errors or ()]


@dataclass
class FigureWriter:
    """Writes figures under ``out``: each HTML file at once, every PNG (with ``png``) at
    :meth:`close` in one browser start; use it as a context manager.

    After close, ``written`` lists the files (relative to ``out``), ``png_exporter`` says what
    made the PNGs and ``png_note`` why some or all of them are missing (one line, or None)."""

    out: Location
    png: bool = False
    written: list[str] = field(default_factory=list)
    png_exporter: str | None = None
    png_note: str | None = None
    png_timeout_s: float = PNG_TIMEOUT_S
    _pending: dict[str, go.Figure] = field(default_factory=dict, repr=False)

    def __enter__(self) -> FigureWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None:  # the figures failed: no PNGs of a half-written set
            self._pending.clear()
        self.close()

    def write(self, stem: str, fig: go.Figure) -> None:
        """Write ``<stem>.html`` now; with ``png``, queue ``<stem>.png`` for :meth:`close`."""
        self.out.write_bytes(f"{stem}.html", figure_html(fig, stem).encode())
        self.written.append(f"{stem}.html")
        if self.png:
            self._pending[stem] = fig

    def close(self) -> None:
        """Render the queued PNGs in one browser start and write them; a missing browser or a
        failed figure becomes ``png_note`` (the HTML files are already written)."""
        figures, self._pending = self._pending, {}
        if not figures:
            return
        browser = browser_path()
        if browser is None:
            self.png_note = missing_browser_note()
            return
        try:
            pngs, errors = render_pngs(figures, browser, timeout_s=self.png_timeout_s)
        except (RuntimeError, OSError) as e:  # the browser would not run: note, keep the rest
            self.png_note = f"PNG failed: {browser} did not run ({_one_line(e)}); HTML written"
            return
        for stem, data in pngs.items():
            self.out.write_bytes(f"{stem}.png", data)
            self.written.append(f"{stem}.png")
        if pngs:
            self.png_exporter = f"kaleido ({browser})"
        failed = [stem for stem in figures if stem not in pngs]
        if failed:
            why = "; ".join(sorted(set(errors))) or "no file written"
            self.png_note = f"PNG failed for {', '.join(failed)}: {why}; HTML written"
