"""Write figures as standalone HTML (plotly.js inlined: works offline) and, on request, PNG.

PNG exporters, tried in order: kaleido (only if installed *and* it finds a browser; its own
``get_chrome`` downloads one, which we never call), then headless Chromium over the DevTools
pipe (:mod:`analysis.browser`, works offline with the Debian ``chromium`` package). With
neither, PNGs are skipped with a one-line note; HTML is always written.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from trainables.results import Location

PLOTLY_CONFIG = {"displaylogo": False, "responsive": False}


def figure_html(fig: go.Figure, div_id: str, *, static: bool = False) -> str:
    """A full HTML page with plotly.js inlined; ``div_id`` fixed so re-runs are identical.
    ``static`` hides the mode bar (for PNG export)."""
    config = {**PLOTLY_CONFIG, "displayModeBar": False} if static else PLOTLY_CONFIG
    return fig.to_html(full_html=True, include_plotlyjs=True, div_id=div_id, config=config)


def figure_div(fig: go.Figure, div_id: str) -> str:
    """The figure as a ``<div>`` + script for a page that loads plotly.js once itself."""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOTLY_CONFIG)


def _kaleido_png(fig: go.Figure) -> bytes | None:
    try:
        import kaleido  # noqa: F401  (optional; not a dependency)
    except ImportError:
        return None
    try:
        return fig.to_image(format="png")
    except Exception:  # kaleido without a usable browser: fall back to Chromium
        return None


@dataclass
class FigureWriter:
    """Writes figures under ``out``; remembers which PNG exporter worked (or why none).
    One Chromium process serves every PNG of a run; call :meth:`close` (or use ``with``)."""

    out: Location
    png: bool = False
    written: list[str] = field(default_factory=list)
    png_exporter: str | None = None
    png_note: str | None = None
    _browser: Any = None
    _tmp: Any = None

    def __enter__(self) -> FigureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._browser is not None:
            self._browser.__exit__(None, None, None)
            self._tmp.cleanup()
            self._browser = self._tmp = None

    def _chromium_png(self, fig: go.Figure, stem: str) -> bytes | None:
        from analysis.browser import Chromium, find_chromium

        if self._browser is None:
            if find_chromium() is None:
                return None
            self._tmp = tempfile.TemporaryDirectory(prefix="rest-sweep-fig-")
            self._browser = Chromium().__enter__()
        page = Path(self._tmp.name) / f"{stem}.html"
        page.write_text(figure_html(fig, stem, static=True), encoding="utf-8")
        width = int(fig.layout.width or 900) + 20
        return self._browser.open(
            page, width=width, height=int(fig.layout.height or 450) + 20, wait_for=".main-svg"
        ).png

    def write(self, stem: str, fig: go.Figure) -> None:
        self.out.write_bytes(f"{stem}.html", figure_html(fig, stem).encode())
        self.written.append(f"{stem}.html")
        if not self.png or self.png_note:
            return
        exporters = (
            ("kaleido", lambda: _kaleido_png(fig)),
            ("chromium", lambda: self._chromium_png(fig, stem)),
        )
        for name, export in exporters:
            data = export()
            if data:
                self.out.write_bytes(f"{stem}.png", data)
                self.written.append(f"{stem}.png")
                self.png_exporter = name
                return
        self.png_note = (
            "PNG skipped: no static exporter (install kaleido with a browser, or chromium)"
        )
