"""The HTML report, opened in a real headless Chromium: figures render, no console error.

Uses the DevTools protocol over a pipe (analysis/browser.py, standard library only). Skips
only when Chromium is absent and CI is unset; under CI a missing browser fails.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from analysis import synthetic
from analysis.api import report
from analysis.browser import Chromium, find_chromium


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install the Debian package `chromium` (headless report test)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def partial_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
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
    return Path(report(str(storage), "exp", str(storage / "out")))


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
    with Chromium(chromium, timeout_s=90) as browser:
        page = browser.open(
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
    assert page.png[:8] == b"\x89PNG\r\n\x1a\n" and len(page.png) > 50_000


def test_console_errors_are_caught(chromium: str, tmp_path: Path) -> None:
    """The check is not vacuous: a page that throws is reported."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<html><body><div class='x'></div><script>console.error('boom'); undefinedCall();</script></body></html>"
    )
    with Chromium(chromium) as browser:
        page = browser.open(bad, wait_for=".x", full_page=False)
    assert any("boom" in e for e in page.errors) and any("undefinedCall" in e for e in page.errors)
