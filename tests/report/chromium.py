"""A headless Chromium driven over the DevTools protocol through `--remote-debugging-pipe` (file descriptors 3 and
4, NUL-separated JSON): no selenium, no websocket library, no driver binary — only Debian's `chromium` (or a
Chrome already on the PATH, as on GitHub's runners)."""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), shutil.which("google-chrome")) if p), None)


@dataclass
class Page:
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    plots: list[dict[str, Any]] = field(default_factory=list)
    expected_plots: int = -1
    screenshot: Optional[Path] = None
    values: dict[str, Any] = field(default_factory=dict)


class DevTools:
    """A minimal DevTools-protocol client over Chromium's --remote-debugging-pipe."""

    def __init__(self, proc: subprocess.Popen, wfd: int, rfd: int):
        self.proc, self.wfd, self.rfd = proc, wfd, rfd
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            r, _, _ = select.select([self.rfd], [], [], left)
            if r:
                chunk = os.read(self.rfd, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, params: Optional[dict] = None, session: Optional[str] = None, timeout: float = 30) -> dict:
        self.next_id += 1
        mid = self.next_id
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.wfd, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == mid:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        for e in self.events:
            if e.get("method") == method:
                return e
        while True:
            m = self._read_message(deadline)
            self.events.append(m)
            if m.get("method") == method:
                return m

    def evaluate(self, session: str, expr: str) -> Any:
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True}, session)
        if "exceptionDetails" in r:
            raise RuntimeError(f"evaluate failed: {r['exceptionDetails']}")
        return r["result"].get("value")


_PLOTS_JS = """Array.from(document.querySelectorAll('[data-plot]')).map(d => {
  const gd = d.querySelector('.js-plotly-plot');
  return {name: d.dataset.plot,
          svgs: d.querySelectorAll('.plot-container .main-svg').length,
          traces: gd && gd._fullData ? gd._fullData.length : 0,
          drawn: d.querySelectorAll('g.trace, .hm, .heatmaplayer image').length};
})"""


def open_in_chromium(html_path: Path, shot_dir: Path, *, timeout: float = 180) -> Page:
    """Load `html_path`, wait until every plot rendered, record console errors and network requests, screenshot."""
    assert CHROMIUM
    profile = shot_dir / "chromium-profile"
    c_read, p_write = os.pipe()  # we write commands, chromium reads fd 3
    p_read, c_write = os.pipe()  # chromium writes fd 4, we read

    def child_fds() -> None:
        os.dup2(c_read, 3)
        os.dup2(c_write, 4)

    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--mute-audio", f"--user-data-dir={profile}",
         "--window-size=1400,1000", "about:blank"],
        preexec_fn=child_fds, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(c_read)
    os.close(c_write)
    dt = DevTools(proc, p_write, p_read)
    page = Page()
    try:
        target = dt.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = dt.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            dt.call(f"{domain}.enable", {}, s)
        dt.events.clear()
        url = html_path.resolve().as_uri()
        dt.call("Page.navigate", {"url": url}, s)
        dt.wait_event("Page.loadEventFired", timeout)
        deadline = time.monotonic() + timeout
        while True:
            page.expected_plots = int(dt.evaluate(s, "Number(document.body.dataset.plots || -1)"))
            page.plots = dt.evaluate(s, _PLOTS_JS)
            if len(page.plots) == page.expected_plots and all(p["svgs"] and p["drawn"] for p in page.plots):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        page.values["pwned"] = dt.evaluate(s, "typeof window.__pwned === 'undefined' ? null : window.__pwned")
        page.values["scripts"] = dt.evaluate(s, "document.querySelectorAll('script').length")
        page.values["title"] = dt.evaluate(s, "document.title")
        page.values["text"] = dt.evaluate(s, "document.body.innerText")
        size = dt.call("Page.getLayoutMetrics", {}, s)["cssContentSize"]
        shot = dt.call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000), "scale": 1}}, s)
        page.screenshot = shot_dir / f"{html_path.stem}.png"
        page.screenshot.write_bytes(base64.b64decode(shot["data"]))
        # drain what arrived meanwhile, then classify
        try:
            while True:
                dt.events.append(dt._read_message(time.monotonic() + 0.3))
        except TimeoutError:
            pass
        for e in dt.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                page.console_errors.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                page.console_errors.append(str(d.get("exception", {}).get("description") or d.get("text")))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                page.console_errors.append(p["entry"].get("text", ""))
            elif m == "Network.requestWillBeSent":
                req = p.get("request", {}).get("url", "")
                if req != url:
                    page.requests.append(req)
        try:
            dt.call("Browser.close", {}, timeout=5)
        except (RuntimeError, TimeoutError):
            pass
    finally:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(p_write)
        os.close(p_read)
    return page
