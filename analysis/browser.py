"""Headless Chromium over the DevTools protocol on a pipe (``--remote-debugging-pipe``).

Used to export figures as PNG offline (kaleido needs a Chrome it downloads) and by the tests
to check that the report renders without console errors. The pipe transport needs only the
standard library: Chromium reads NUL-terminated JSON messages on fd 3 and writes on fd 4, so
no websocket client, no open port, nothing reachable from outside.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainables.errors import UserError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
# Flags for a quiet, offline, root-safe headless browser.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
)


def find_chromium(explicit: str | None = None) -> str | None:
    """The browser to use: ``explicit``, else $REST_SWEEP_CHROMIUM, else one on PATH."""
    for name in (explicit, os.environ.get("REST_SWEEP_CHROMIUM"), *CANDIDATES):
        if name:
            path = shutil.which(name)
            if path:
                return path
    return None


@dataclass
class PageResult:
    """What a page did: console errors / exceptions, selector counts, a PNG screenshot."""

    errors: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    png: bytes = b""


class Chromium:
    """One headless browser process driven over the DevTools pipe (use as a context manager)."""

    def __init__(self, executable: str | None = None, timeout_s: float = 60.0) -> None:
        path = find_chromium(executable)
        if path is None:
            raise UserError(
                "chromium: not found (install the Debian package `chromium` or set REST_SWEEP_CHROMIUM)"
            )
        self.path, self.timeout_s = path, timeout_s
        self._next_id = 0
        self._buffer = b""
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Chromium:
        self._profile = tempfile.TemporaryDirectory(prefix="rest-sweep-chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire_fds() -> None:  # runs in the child: Chromium expects fd 3 (in) and fd 4 (out)
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [
            self.path,
            *FLAGS,
            f"--user-data-dir={self._profile.name}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=wire_fds,
            close_fds=False,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError, TimeoutError, RuntimeError):  # already gone
            self.send("Browser.close")
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)
        self._profile.cleanup()

    # -- protocol --------------------------------------------------------------------
    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium: no answer from the DevTools pipe")
            ready, _, _ = select.select([self._from_chrome], [], [], left)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium: the browser closed the DevTools pipe")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        """Send one command and wait for its answer; events seen meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout_s
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(
                        f"chromium: {method} failed: {reply['error'].get('message')}"
                    )
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, session: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(
            e.get("method") == method and e.get("sessionId") == session for e in self.events
        ):
            self.events.append(self._read_message(deadline))

    # -- one page ----------------------------------------------------------------------
    def open(
        self,
        file: Path,
        *,
        width: int = 1280,
        height: int = 900,
        wait_for: str | None = None,
        min_count: int = 1,
        count: tuple[str, ...] = (),
        full_page: bool = True,
    ) -> PageResult:
        """Load ``file``, wait for ``wait_for`` (a CSS selector) to match ``min_count``
        elements, then collect console errors, selector counts and a screenshot."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=session)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session,
        )
        self.send("Page.navigate", {"url": Path(file).resolve().as_uri()}, session)
        self.wait_event("Page.loadEventFired", session, self.timeout_s)
        if wait_for:
            self._wait_selector(session, wait_for, min_count)
        result = PageResult(errors=self._errors(session))
        for selector in count:
            result.counts[selector] = self._count(session, selector)
        if full_page:
            size = self.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
            self.send(
                "Emulation.setDeviceMetricsOverride",
                {
                    "width": width,
                    "height": min(int(math.ceil(size["height"])), 16000),
                    "deviceScaleFactor": 1,
                    "mobile": False,
                },
                session,
            )
        shot = self.send("Page.captureScreenshot", {"format": "png"}, session)
        result.png = base64.b64decode(shot["data"])
        self.send("Target.closeTarget", {"targetId": target})
        return result

    def _count(self, session: str, selector: str) -> int:
        expression = f"document.querySelectorAll({json.dumps(selector)}).length"
        reply = self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session
        )
        return int(reply["result"].get("value", 0))

    def _wait_selector(self, session: str, selector: str, min_count: int) -> None:
        deadline = time.monotonic() + self.timeout_s
        while self._count(session, selector) < min_count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"chromium: {selector!r} never matched {min_count} element(s)")
            time.sleep(0.1)

    def _errors(self, session: str) -> list[str]:
        out = []
        for event in self.events:
            if event.get("sessionId") != session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                out.append(
                    details.get("exception", {}).get("description")
                    or details.get("text", "exception")
                )
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append(
                    " ".join(
                        str(a.get("value", a.get("description", "")))
                        for a in params.get("args", [])
                    )
                )
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                out.append(
                    f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip()
                )
        return out


def screenshot_html(
    html_file: Path, png_file: Path, *, wait_for: str = ".main-svg", width: int = 1280
) -> PageResult:
    """Render one HTML file to a PNG (the offline static exporter for figures)."""
    with Chromium() as browser:
        result = browser.open(html_file, width=width, wait_for=wait_for)
    png_file.write_bytes(result.png)
    return result
