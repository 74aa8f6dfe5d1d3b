"""The HTML report and the PNG figures in a real headless Chromium.

The report test opens ``report.html`` with choreographer (the DevTools client kaleido is built
on, so no extra dependency) and checks that every plotly figure drew its SVG and that no
exception, ``console.error`` or error log entry occurred. The PNG tests run the
``--png`` path (kaleido, one browser start per writer). Browser tests skip only when no
browser is found and CI is unset; under CI a missing browser fails. The no-browser tests
need no browser.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import pytest

from analysis import export, figures, synthetic
from analysis.api import analyze, build, report
from analysis.export import FigureWriter
from trainables.results import Location

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def chromium() -> str:
    """The browser kaleido would use (its own lookup: BROWSER_PATH, PATH, usual paths)."""
    path = export.browser_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(
                f"CI must install the Debian package `chromium`: {export.missing_browser_note()}"
            )
        pytest.skip(export.missing_browser_note())
    return path


@pytest.fixture(scope="module")
def partial_storage(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A partial sweep: two datasets, one pending and one errored trial."""
    storage = tmp_path_factory.mktemp("report")
    configs = synthetic.grid_configs(
        datasets=("cmnist", "bffhq"),
        ratios=(0.5, 1.0),
        methods=("erm", "rigl", "rest"),
        densities=(0.005, 0.05, 0.5),
    )
    configs = [c for c in configs if not (c["dataset"] == "bffhq" and c["ratio"] != 0.5)]
    statuses = {
        synthetic.config_hash(configs[1]): "pending",
        synthetic.config_hash(configs[5]): "errored",
    }
    synthetic.write_experiment(str(storage), "exp", configs, statuses=statuses)
    return str(storage)


@pytest.fixture(scope="module")
def partial_report(partial_storage: str) -> Path:
    return Path(report(partial_storage, "exp", str(Path(partial_storage) / "out")))


# -- a page in headless Chromium over choreographer ----------------------------------------


@dataclass
class Page:
    """What a page did: exceptions / console errors / error log entries, selector counts,
    a full-page PNG screenshot."""

    errors: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    png: bytes = b""


async def _call(tab: Any, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """One DevTools command; a protocol error fails loudly (choreographer returns it)."""
    reply = await tab.send_command(method, params)
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


async def _evaluate(tab: Any, expression: str) -> Any:
    reply = await _call(
        tab,
        "Runtime.evaluate",
        {"expression": expression, "returnByValue": True, "awaitPromise": True},
    )
    if "exceptionDetails" in reply:
        raise RuntimeError(f"{expression}: {reply['exceptionDetails']}")
    return reply["result"].get("value")


def _error_line(event: dict[str, Any]) -> str | None:
    """The error an event reports, or None (the three kinds a broken page produces)."""
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.exceptionThrown":
        details = params.get("exceptionDetails", {})
        return details.get("exception", {}).get("description") or details.get("text", "exception")
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        return " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
    entry = params.get("entry", {})
    if method == "Log.entryAdded" and entry.get("level") == "error":
        return f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip()
    return None


async def _open(
    browser: str,
    file: Path,
    *,
    wait_for: str,
    min_count: int,
    count: tuple[str, ...],
    width: int,
    full_page: bool,
    timeout_s: float,
) -> Page:
    import choreographer  # here, so the no-browser tests run without kaleido installed

    page = Page()

    async def record(event: dict[str, Any]) -> None:
        if (line := _error_line(event)) is not None:
            page.errors.append(line)

    async with choreographer.Browser(path=browser, headless=True) as chrome:
        tab = chrome.get_tab()  # the blank page the browser starts with
        assert tab is not None, f"{browser} opened no page"
        for event in ("Runtime.exceptionThrown", "Runtime.consoleAPICalled", "Log.entryAdded"):
            tab.subscribe(event, record)
        for domain in ("Page", "Runtime", "Log"):
            await _call(tab, f"{domain}.enable")
        metrics = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}
        await _call(tab, "Emulation.setDeviceMetricsOverride", metrics)
        loaded = tab.subscribe_once("Page.loadEventFired")
        await _call(tab, "Page.navigate", {"url": file.resolve().as_uri()})
        await asyncio.wait_for(loaded, timeout_s)
        # plotly may finish drawing after the load event: wait inside the page for it.
        selector = json.dumps(wait_for)
        ready = (
            "new Promise(done => { const check = () => "
            f"document.querySelectorAll({selector}).length >= {min_count} "
            "? done(true) : setTimeout(check, 50); check(); })"
        )
        await asyncio.wait_for(_evaluate(tab, ready), timeout_s)
        for css in count:
            page.counts[css] = await _evaluate(
                tab, f"document.querySelectorAll({json.dumps(css)}).length"
            )
        if full_page:
            size = (await _call(tab, "Page.getLayoutMetrics"))["cssContentSize"]
            metrics["height"] = min(math.ceil(size["height"]), 16000)
            await _call(tab, "Emulation.setDeviceMetricsOverride", metrics)
        shot = await _call(tab, "Page.captureScreenshot", {"format": "png"})
        await asyncio.sleep(0)  # let the event callbacks queued before the reply run
    page.png = base64.b64decode(shot["data"])
    return page


def open_page(
    browser: str,
    file: Path,
    *,
    wait_for: str,
    min_count: int = 1,
    count: tuple[str, ...] = (),
    width: int = 1280,
    full_page: bool = True,
    timeout_s: float = 90.0,
) -> Page:
    """Load ``file`` in a fresh headless ``browser``, wait until ``wait_for`` (CSS) matches
    ``min_count`` elements, then report errors, the ``count`` selectors and a screenshot."""
    return asyncio.run(
        _open(
            browser,
            file,
            wait_for=wait_for,
            min_count=min_count,
            count=count,
            width=width,
            full_page=full_page,
            timeout_s=timeout_s,
        )
    )


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    assert data[:8] == PNG_MAGIC
    return struct.unpack(">II", data[16:24])


# -- the report --------------------------------------------------------------------------


def test_report_is_self_contained_and_says_what_is_missing(partial_report: Path) -> None:
    text = partial_report.read_text()
    assert not re.search(r"<script[^>]+src=", text)  # plotly.js inlined, no CDN
    assert text.count("Plotly.newPlot") == 4  # 2 density figures + 2 FLOPs figures
    assert "Partial sweep" in text and "Missing cells" in text and "— (2/3)" in text
    assert "RuntimeError: CUDA out of memory" in text
    assert "Zhao et al., ECML PKDD 2023" in text


def test_report_renders_in_headless_chromium(
    chromium: str, partial_report: Path, tmp_path: Path
) -> None:
    page = open_page(
        chromium,
        partial_report,
        width=1400,
        wait_for=".js-plotly-plot .main-svg",
        min_count=4,
        count=(".js-plotly-plot", ".main-svg", "path.js-line", "td.missing"),
    )
    screenshot = tmp_path / "report.png"
    screenshot.write_bytes(page.png)
    print(f"screenshot: {screenshot}")
    assert page.errors == []
    assert page.counts[".js-plotly-plot"] == 4
    assert page.counts[".main-svg"] >= 8  # plotly draws two SVG layers per figure
    assert page.counts["path.js-line"] > 10  # the curves themselves were drawn
    assert page.counts["td.missing"] >= 1
    assert page.png[:8] == PNG_MAGIC and len(page.png) > 50_000


def test_console_errors_are_caught(chromium: str, tmp_path: Path) -> None:
    """The check is not vacuous: a page that throws is reported."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<html><body><div class='x'></div><script>console.error('boom'); undefinedCall();</script></body></html>"
    )
    page = open_page(chromium, bad, wait_for=".x", full_page=False)
    assert any("boom" in e for e in page.errors) and any("undefinedCall" in e for e in page.errors)


# -- PNG export (--png) ------------------------------------------------------------------


def test_png_export_renders_every_figure_in_one_browser_start(
    chromium: str, partial_storage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kaleido

    batches: list[int] = []
    real = kaleido.write_fig_from_object_sync

    def counting(specs: list[dict[str, Any]], **kwargs: Any) -> Any:
        batches.append(len(specs))
        return real(specs, **kwargs)

    monkeypatch.setattr(kaleido, "write_fig_from_object_sync", counting)
    analysis = build(partial_storage, "exp")
    df = analysis.frame
    wanted = {
        f"density_{d}_{r}": figures.density_curves(df, d, r, analysis.options.epoch)
        for d, r in figures.figure_names(df)
    }
    wanted["flops_cmnist"] = figures.flops_scatter(df, "cmnist", analysis.options.choice)
    with FigureWriter(Location.of(str(tmp_path)), png=True) as writer:
        for stem, fig in wanted.items():
            writer.write(stem, fig)
        assert not list(tmp_path.glob("*.png"))  # rendered together, at close
    assert batches == [len(wanted)] == [3]
    assert writer.png_note is None and writer.png_exporter == f"kaleido ({chromium})"
    assert sorted(writer.written) == sorted(
        [f"{s}.html" for s in wanted] + [f"{s}.png" for s in wanted]
    )
    for stem, fig in wanted.items():
        data = (tmp_path / f"{stem}.png").read_bytes()
        assert png_size(data) == (fig.layout.width, fig.layout.height)
        assert len(data) > 20_000  # axes, curves and text, not a blank image


@pytest.mark.parametrize("why", ["no-browser", "bad-browser-path", "no-kaleido"])
def test_png_without_browser_is_one_line_and_html_is_written(
    partial_storage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, why: str
) -> None:
    """No browser (or no kaleido): PNGs skipped with one line, every other file written."""
    if why == "no-browser":
        monkeypatch.delenv("BROWSER_PATH", raising=False)
        monkeypatch.setattr(export, "browser_path", lambda: None)
        expected = "no browser for kaleido"
    elif why == "bad-browser-path":  # BROWSER_PATH wins over PATH in kaleido's lookup
        monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-chromium"))
        expected = "no-such-chromium' is not a file"
    else:
        monkeypatch.setitem(sys.modules, "kaleido", None)
        monkeypatch.setitem(sys.modules, "choreographer.browsers", None)
        expected = "kaleido is not installed"
    result = analyze(partial_storage, "exp", str(tmp_path / "out"), png=True)
    note = result.png_note
    assert note is not None and "\n" not in note and expected in note
    if why != "no-kaleido":
        assert "BROWSER_PATH" in note and "apt-get install chromium" in note
    assert not [f for f in result.files if f.endswith(".png")]
    html = {f for f in result.files if f.startswith("figures/")}
    assert html == {
        "figures/density_bffhq_paper.html",
        "figures/density_cmnist_paper.html",
        "figures/flops_bffhq.html",
        "figures/flops_cmnist.html",
    }
    assert all((tmp_path / "out" / f).is_file() for f in result.files)


def test_png_render_failure_is_one_line_and_html_is_written(chromium: str, tmp_path: Path) -> None:
    """A browser that runs but cannot render in time: the PNGs are missing, the note says which,
    the HTML files are there."""
    fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2]))
    with FigureWriter(Location.of(str(tmp_path)), png=True, png_timeout_s=1e-4) as writer:
        writer.write("a", fig)
        writer.write("b", fig)
    assert writer.written == ["a.html", "b.html"] and writer.png_exporter is None
    note = writer.png_note
    assert note is not None and "\n" not in note
    # kaleido reports the timeout, or the tab it had to abandon, depending on its version
    assert note.startswith("PNG failed for a, b: ") and note.endswith("; HTML written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "b.html"]
