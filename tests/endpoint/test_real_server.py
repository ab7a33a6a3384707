"""Against a real server started here: `transformers serve` (CPU, one request at a time) over a tiny random-weight
Llama and a tokenizer trained on a few sentences, both built offline. Its quirks are the point: several tokens per
chunk are possible, usage only with stream_options.include_usage in a chunk with empty choices, no [DONE], no
/metrics, HTTP 422 for unknown fields such as ignore_eos."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from moebench.endpoint.client import open_session
from moebench.endpoint.probe import probe
from moebench.endpoint.tokens import Tokenizer
from moebench.endpoint.workload import EndpointSpec
from moebench.results import load_result
from tests.cli.conftest import moebench

from . import tiny_model
from .conftest import run

pytestmark = pytest.mark.slow  # ~25 s: building the model and starting the server
START_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    pytest.importorskip("fastapi", reason="transformers serve needs transformers[serving]")
    exe = shutil.which("transformers", path=str(Path(sys.executable).parent)) or shutil.which("transformers")
    if exe is None:
        pytest.skip("no `transformers` command (pip install 'transformers[serving]')")
    folder = tiny_model.build(tmp_path_factory.mktemp("tiny-llama"))
    port = _free_port()
    log = folder / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    with open(log, "w") as f:
        proc = subprocess.Popen([exe, "serve", str(folder), "--host", "127.0.0.1", "--port", str(port),
                                 "--device", "cpu", "--log-level", "warning"], stdout=f, stderr=subprocess.STDOUT,
                                env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                # installed but broken is a failure to see, not a skip to overlook
                pytest.fail(f"transformers serve exited ({proc.returncode}): {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve not ready in {START_TIMEOUT_S} s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield {"base_url": f"{base}/v1", "model": str(folder), "folder": folder}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_probe_finds_the_quirks(served):
    async def go():
        async with open_session(None) as c:
            return await probe(c, EndpointSpec(base_url=served["base_url"]))

    caps = run(go())
    assert caps.model == served["model"]  # model: auto, from /v1/models
    assert caps.stream_usage and not caps.continuous_usage
    assert not caps.ignore_eos  # 422 for the unknown field, so it is left out
    assert not caps.done_marker and caps.metrics_url is None


def test_run_against_transformers_serve(served, tmp_path):
    wl = tmp_path / "w.yaml"
    wl.write_text(
        "kind: endpoint\nname: transformers-serve\n"
        f"endpoint: {{base_url: \"{served['base_url']}\", model: auto, api: chat}}\n"
        "deployment: {hardware: cpu, gpus: 1, price: {usd_per_gpu_hour: 0.5}}\n"
        "dataset: {kind: random, prompt_tokens: 12, output_tokens: 6}\n"
        "load: {concurrency: [1], requests_per_level: 4, max_duration_s: 60}\n"
        "slo: {ttft_ms: 5000}\n"
        "timing: {warmup_requests: 1, repeats: 2}\n"
        f"tokenizer: \"{served['folder']}\"\n"
    )
    proc = moebench("run", str(wl), "--out", str(tmp_path / "out"), timeout=180)
    assert proc.returncode == 0, proc.stderr
    doc = load_result(next((tmp_path / "out").glob("*.json")))
    [rec] = doc["records"]
    q, m = rec["requests"], rec["metrics"]
    assert q["ok"] == 8 and q["failed"] == 0
    assert q["output_token_source"] == {"final_usage": 8}  # the usage chunk with empty choices
    assert q["output_tokens_counted"] == 6  # eos disabled in the tiny model: max_tokens is what comes out
    tok = Tokenizer(served["folder"])
    # the server counts the chat template's tokens too, so its prompt is longer than the dataset's text
    assert q["prompt_tokens_counted"] >= 12 * 0.5 and tok.count("user:") >= 1
    assert m["ttft_ms"]["median"] > 0 and m["tpot_ms"]["n"] == 8
    assert m["itl_ms"] is None and m["inter_chunk_ms"]["n"] > 0  # no continuous usage: no per-token ITL
    assert m["usd_per_mtok"]["output"]["median"] > 0
    assert doc["hardware"]["endpoint"]["capabilities"]["ignore_eos"] is False
