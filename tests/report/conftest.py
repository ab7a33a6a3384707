"""Fixtures for the report tests: result documents to report on, and a headless Chromium driven over the DevTools
protocol through `--remote-debugging-pipe` (file descriptors 3 and 4, NUL-separated JSON): no selenium, no
websocket library, no driver binary — only Debian's `chromium`.
"""

from __future__ import annotations

import copy
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest

from moebench.cli import main
from moebench.results import stat

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), shutil.which("google-chrome")) if p), None)


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    """The CLI in-process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    cap = capsys.readouterr()
    return e.value.code, cap.out, cap.err


@pytest.fixture
def run_cli(capsys):
    return lambda argv: run_main(argv, capsys)


# --------------------------------------------------------------------------------------------- result documents
def _record(model: str, kind: str, batch: int, ttft: float, tpot: float, *, basis: str = "measured",
            price: float = 2.0, score: Optional[float] = None, n: int = 7) -> dict[str, Any]:
    """A plausible record whose metrics follow the README's definitions from ttft/tpot samples."""
    prompt, output = 128, 32
    tt = [ttft * (1 + 0.01 * ((i * 37) % 7 - 3)) for i in range(n)]
    tp = [tpot * (1 + 0.01 * ((i * 53) % 7 - 3)) for i in range(n)]
    wall = [(a + (output - 1) * b) / 1e3 for a, b in zip(tt, tp)]
    out_tps = [batch * output / w for w in wall]
    in_tps = [batch * prompt / w for w in wall]

    def s(xs, unit):
        return stat(xs, basis, unit)

    cin = [price / (x * 3600) * 1e6 for x in in_tps]
    cout = [price / (x * 3600) * 1e6 for x in out_tps]
    blend = [(3 * a + b) / 4 for a, b in zip(cin, cout)]
    return {
        "model": model, "kind": kind, "layers_run": 4 if basis == "extrapolated" else 32, "layers_total": 32,
        "basis": basis, "batch_size": batch, "prompt_tokens": prompt, "output_tokens": output,
        "params": {"total": 46.7e9 if kind == "moe" else 8.0e9, "active": 12.9e9 if kind == "moe" else 8.0e9,
                   "active_ratio": 0.276 if kind == "moe" else 1.0},
        "extrapolation": None,
        "intelligence": None if score is None else {"score": score, "index": "artificial-analysis-intelligence-index",
                                                    "version": "v3", "source": "test"},
        "cost": {"usd_per_gpu_hour": price, "tier": "test", "source": "test", "n_gpus": 1},
        "metrics": {
            "ttft_ms": s(tt, "ms"), "tpot_ms": s(tp, "ms"), "itl_ms": s(tp * 3, "ms"),
            "prefill_tokens_per_s": s([batch * prompt / (t / 1e3) for t in tt], "tokens/s"),
            "decode_tokens_per_s": s([batch / (t / 1e3) for t in tp], "tokens/s"),
            "interactivity_tokens_per_s_per_user": s([1000 / t for t in tp], "tokens/s/user"),
            "input_tokens_per_s": s(in_tps, "tokens/s"), "output_tokens_per_s": s(out_tps, "tokens/s"),
            "total_tokens_per_s": s([a + b for a, b in zip(in_tps, out_tps)], "tokens/s"),
            "output_tokens_per_s_per_gpu": s(out_tps, "tokens/s/gpu"),
            "total_tokens_per_s_per_gpu": s([a + b for a, b in zip(in_tps, out_tps)], "tokens/s/gpu"),
            "usd_per_mtok": {"input": s(cin, "USD/Mtok"), "output": s(cout, "USD/Mtok"), "blended": s(blend, "USD/Mtok")},
            "intelligence_per_usd": None if score is None else s([score / b for b in blend], "score per USD/Mtok"),
            "tokens_per_mw": None, "joules_per_token": None,
            "efficiency": {"decode_bytes_per_step": 1e9, "prefill_flops": 1e12, "mbu_decode": 0.5, "mfu_prefill": 0.4,
                           "mbu_decode_measured_roof": None, "mfu_prefill_measured_roof": None, "mfu_decode": 0.01,
                           "basis": basis},
        },
    }


def make_doc(hw_id: str, hw_name: str, price: float, speed: float, *, sha: str = "a" * 40,
             dense: str = "llama3:8b", moe: str = "mixtral:8x7b", profile: bool = False,
             projected: bool = False) -> dict[str, Any]:
    """A result document for a dense and an MoE model at batch 1, 8, 32; `speed` divides every time."""
    recs = []
    for b in (1, 8, 32):
        recs.append(_record(dense, "dense", b, 40 * b / speed, (12 + 0.2 * b) / speed, price=price, score=21.0))
        recs.append(_record(moe, "moe", b, 60 * b / speed, (9 + 0.4 * b) / speed, price=price, score=24.0,
                            basis="extrapolated"))
        if projected:
            recs.append(_record("qwen3-moe:235b-a22b", "moe", b, 30 * b / speed, (6 + 0.1 * b) / speed, price=price,
                                score=45.0, basis="projected"))
    doc: dict[str, Any] = {
        "schema_version": 1, "complete": True, "kind": "model", "run_id": f"20260101T000000Z-test-{hw_id}",
        "created_utc": "2026-01-01T00:00:00Z", "workload_path": "workloads/test.yaml",
        "workload": {"name": "dense-vs-moe-test", "scenario": {"prompt_tokens": 128, "output_tokens": 32}},
        "hardware": {"id": hw_id, "name": hw_name, "device": "cuda", "dtype": "bfloat16", "n_devices": 1,
                     "kernels": "torch", "price": {"usd_per_gpu_hour": price, "tier": "test", "source": "test"},
                     "measured_roofs": {"mem_gbps": 3000.0, "matmul_gflops": 700000.0, "matmul_dtype": "bfloat16",
                                        "basis": "measured"}},
        "environment": {"moebench_version": "0.1.0", "git_sha": sha, "python": "3.11", "platform": "linux",
                        "machine": "x86_64", "cpu_count": 2, "hostname": "test", "libraries": {"torch": "2.13.0"},
                        "torch_threads": 2},
        "world_size": 1,
        "records": recs,
    }
    if profile:
        doc["profile"] = {"models": [{
            "model": moe, "batch_size": 8,
            "ranks": [{"rank": r, "layers": [
                {"layer": i, "compute_ms": 1.0 + 0.1 * i, "comm_ms": 0.5 + 0.3 * r, "wait_ms": 0.3 * r,
                 "transfer_ms": 0.5, "idle_ms": 0.05} for i in range(4)]} for r in range(2)],
            "expert_load": {"tokens_per_expert": [[float((e * 7 + i * 3) % 11 + 1) for e in range(8)] for i in range(4)],
                            "balancedness": 0.62},
        }]}
    return doc


@pytest.fixture
def docs(tmp_path: Path) -> dict[str, Path]:
    """Two hardware generations (H100, B200) on different commits, one profiled, written to tmp files."""
    a = make_doc("h100_sxm", "NVIDIA H100 SXM", 2.5, 1.0, sha="1" * 40, profile=True)
    b = make_doc("b200", "NVIDIA B200", 4.0, 2.1, sha="2" * 40, projected=True)
    out = {}
    for name, d in (("h100.json", a), ("b200.json", b)):
        p = tmp_path / name
        p.write_text(json.dumps(d))
        out[name] = p
    return out


@pytest.fixture
def doc_factory():
    return lambda *a, **k: copy.deepcopy(make_doc(*a, **k))


# --------------------------------------------------------------------------------------------- headless chromium
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


def open_in_chromium(html_path: Path, shot_dir: Path, *, timeout: float = 60) -> Page:
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
        import base64

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


@pytest.fixture
def chromium():
    if CHROMIUM is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium) — the browser check did not run")
    return open_in_chromium
