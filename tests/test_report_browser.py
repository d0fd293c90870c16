"""The report page in a real browser: Chromium, headless and offline, driven over the DevTools
protocol (on the ``--remote-debugging-pipe`` file descriptors: no port, no websocket library).

Checks: the page's script ran to the end (``<body data-ready="1">``) and nothing reported an error
(no uncaught exception, no console error, no log entry of level error, no request other than the
file itself, with the network switched off); one leaderboard row per (benchmark, optimizer); sorting
by a header reorders the rows; every chart is drawn (visible, non-empty SVG with its data marks)
when its tab or benchmark is shown. Saves screenshots of the leaderboard and of one drill-down
(under ``$OPTBENCH_SCREENSHOT_DIR`` too when set).

Skips only when no Chromium is installed and ``OPTBENCH_REQUIRE_BROWSER`` is not set (CI sets it
and installs Debian's ``chromium``); then a missing browser fails.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from report_page import expected_rows, fixture_page

from harness.report.html import slug

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT = 60.0


def _browser() -> str | None:
    found = os.environ.get("OPTBENCH_CHROMIUM") or next((b for b in map(shutil.which, BROWSERS) if b), None)
    if found:
        return found
    if os.environ.get("OPTBENCH_REQUIRE_BROWSER"):
        pytest.fail(
            f"OPTBENCH_REQUIRE_BROWSER is set but no browser was found (looked for {', '.join(BROWSERS)}; "
            "apt-get install chromium, or set OPTBENCH_CHROMIUM)"
        )
    pytest.skip(f"no Chromium ({', '.join(BROWSERS)}) installed; set OPTBENCH_REQUIRE_BROWSER=1 to fail instead")


class DevTools:
    """A DevTools protocol session over Chromium's pipe: JSON messages ending in a NUL byte, commands
    read by the browser on its fd 3, replies and events written on its fd 4."""

    def __init__(self, binary: str, profile: Path):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # ends the browser keeps, moved above 2 so bash can put them on 3 and 4 whatever their numbers
        keep = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser_r, from_browser_w)]
        for fd in (to_browser_r, from_browser_w):
            os.close(fd)
        args = [
            binary,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--window-size=1400,1000",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{keep[0]} 4>&{keep[1]}', "bash", *args],
            pass_fds=keep,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for fd in keep:
            os.close(fd)
        self._buffer = b""
        self._next = 0
        self.events: list[dict] = []
        self.session: str | None = None

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, left))
            if not ready:
                raise TimeoutError("the browser did not answer in time")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError(f"the browser closed its pipe: {self.proc.stderr.read().decode()[-2000:]}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, *, browser: bool = False) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params or {}}
        if self.session and not browser:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        deadline = time.monotonic() + TIMEOUT
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise AssertionError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 6000), "scale": 1}
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def close(self) -> None:
        try:
            self.send("Browser.close", browser=True)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            os.close(fd)


def _problems(events: list[dict], page_url: str) -> list[str]:
    out = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            out.append(f"exception: {params['exceptionDetails']}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
            out.append(f"console.{params['type']}: {[a.get('value') for a in params.get('args', [])]}")
        elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
            out.append(
                f"log {params['entry']['level']}: {params['entry'].get('text')} {params['entry'].get('url', '')}"
            )
        elif method == "Network.requestWillBeSent" and params["request"]["url"].split("#")[0] != page_url:
            out.append(f"request: {params['request']['url']}")
    return out


SHOW = """new Promise(done => {
  addEventListener("hashchange", () => requestAnimationFrame(() => done(true)), {once: true});
  location.hash = %s;
})"""

CHARTS = """[...document.querySelectorAll("figure.chart")].filter(f => f.offsetParent !== null).map(f => {
  const svg = f.querySelector("svg"), box = svg.getBoundingClientRect(), drawn = svg.getBBox();
  return {id: f.id, kind: f.dataset.kind, width: box.width, height: box.height,
          drawnWidth: drawn.width, drawnHeight: drawn.height,
          marks: svg.querySelectorAll('[id*="line2d"], [id*="PathCollection"], [id*="FillBetween"]').length,
          shapes: svg.querySelectorAll("path, use").length};
})"""

STATE = """({ready: document.body.dataset.ready || null,
  errors: document.documentElement.getAttribute("data-errors"),
  tab: document.body.dataset.tab, bench: document.body.dataset.bench,
  rows: [...document.querySelectorAll("#board tbody tr")].map(r => [r.dataset.bench, r.dataset.optimizer]),
  visibleTabs: [...document.querySelectorAll("section.tab")].filter(s => s.offsetParent !== null).map(s => s.id)})"""

SORT = """(() => {
  const th = [...document.querySelectorAll("#board thead th")].find(h => h.textContent === "optimizer");
  th.click();
  const first = [...document.querySelectorAll("#board tbody tr")].map(r => r.dataset.optimizer);
  th.click();
  const second = [...document.querySelectorAll("#board tbody tr")].map(r => r.dataset.optimizer);
  return {first, second, sort: th.getAttribute("aria-sort")};
})()"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = _browser()
    tools = DevTools(binary, tmp_path_factory.mktemp("chromium-profile"))
    try:
        target = tools.send("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        tools.session = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True}, browser=True)[
            "sessionId"
        ]
        for domain in ("Runtime", "Log", "Page", "Network"):
            tools.send(f"{domain}.enable")
        tools.send(
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )
        tools.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
        )
        yield tools
    finally:
        tools.close()


def test_the_page_in_a_real_browser(browser, tmp_path_factory):
    path, data, n_charts = fixture_page(tmp_path_factory.getbasetemp())
    url = path.resolve().as_uri()
    started = time.monotonic()
    browser.events.clear()
    browser.send("Page.navigate", {"url": url})
    browser.wait_for("Page.loadEventFired")

    state = browser.evaluate(STATE)
    assert state["ready"] == "1" and state["errors"] is None, state
    assert state["tab"] == "leaderboard" and state["visibleTabs"] == ["leaderboard"]
    rows = [tuple(r) for r in state["rows"]]
    assert len(rows) == len(set(rows)) == len(expected_rows(data)) and set(rows) == expected_rows(data)

    shots = [browser.screenshot(tmp_path_factory.getbasetemp() / "report_leaderboard.png")]
    sorted_rows = browser.evaluate(SORT)
    order = ["adamw", "signum", "softsignum", "hardswitchsign", "muon", "softmuon", "sgd"]
    assert sorted_rows["first"] == sorted(sorted_rows["first"], key=order.index)
    assert sorted_rows["second"] == sorted(sorted_rows["second"], key=order.index, reverse=True)
    assert sorted_rows["sort"] == "descending"

    seen = {}
    keys = sorted({tuple(r[k] for k in ("task", "dataset", "size", "variant")) for r in data.board.rows})
    for target in ["overview", *(slug(k) for k in keys)]:
        assert browser.evaluate(SHOW % json.dumps("#" + target))
        shown = browser.evaluate(STATE)
        assert shown["bench" if target.startswith("bench-") else "tab"] == target
        for chart in browser.evaluate(CHARTS):
            assert chart["width"] > 300 and chart["height"] > 150, chart
            assert chart["drawnWidth"] > 100 and chart["drawnHeight"] > 100, chart
            assert chart["marks"] >= 1 and chart["shapes"] >= 15, chart
            seen[chart["id"]] = (target, chart["kind"])
        if target == slug(keys[-1]):
            shots.append(browser.screenshot(tmp_path_factory.getbasetemp() / "report_benchmark.png"))
    assert sorted(seen) == sorted(f"chart-{i}" for i in range(1, n_charts + 1))  # every chart, drawn once
    assert sorted(kind for _, kind in seen.values()).count("curves") == len(keys)

    final = browser.evaluate(STATE)
    assert final["errors"] is None
    assert _problems(browser.events, url) == []
    for shot in shots:
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    keep = os.environ.get("OPTBENCH_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copy(shot, Path(keep) / shot.name)
    print(f"browser checks took {time.monotonic() - started:.1f} s; screenshots: {', '.join(map(str, shots))}")


def test_a_script_error_would_be_seen(browser, tmp_path):
    """The checks above can fail: a page whose script throws is caught by the same means."""
    broken = tmp_path / "broken.html"
    from harness.report import assets

    broken.write_text(
        f"<!DOCTYPE html><html><head><script>{assets.HEAD_SCRIPT}</script></head><body>"
        f'<div id="js-errors"></div><script>undefinedFunction();</script></body></html>',
        encoding="utf-8",
    )
    browser.events.clear()
    browser.send("Page.navigate", {"url": broken.as_uri()})
    browser.wait_for("Page.loadEventFired")
    state = browser.evaluate(STATE)
    assert state["ready"] is None and "undefinedFunction" in state["errors"]
    assert any("undefinedFunction" in p for p in _problems(browser.events, broken.as_uri()))


def test_a_page_with_conditions_axes_and_time_to_target(browser, tmp_path):
    """Budget-free records with a delay, an axis and two benchmarks: the overview's time-to-target
    profile and axis charts are drawn, and nothing reports an error."""
    from test_report_conditions import _records

    from harness.report import data as rd
    from harness.report import html

    frame, curves = _records()
    path, n_charts = html.write_page(rd.from_frame(frame, curves, tmp_path), tmp_path / "report.html")
    url = path.resolve().as_uri()
    browser.events.clear()
    browser.send("Page.navigate", {"url": url})
    browser.wait_for("Page.loadEventFired")
    assert browser.evaluate(STATE)["ready"] == "1"
    assert browser.evaluate(SHOW % json.dumps("#overview"))
    kinds = [c["kind"] for c in browser.evaluate(CHARTS)]
    assert "time_profile" in kinds and "axis" in kinds
    for chart in browser.evaluate(CHARTS):
        assert chart["drawnWidth"] > 100 and chart["marks"] >= 1, chart
    assert browser.evaluate(STATE)["errors"] is None and _problems(browser.events, url) == []
    assert n_charts >= 2
