"""`moebench run` on endpoint workloads, as a user runs it: the CLI in a subprocess against the stub server."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from moebench.results import load_result
from tests.cli.conftest import REPO, assert_one_line_error, moebench


def workload(tmp_path: Path, base_url: str, **extra: str) -> Path:
    fields = {
        "kind": "endpoint", "name": "stub",
        "endpoint": f'{{base_url: "{base_url}"}}',
        "deployment": "{hardware: h100_sxm, gpus: 2, price: {usd_per_gpu_hour: 2.0}}",
        "dataset": "{kind: random, prompt_tokens: 16, output_tokens: 8}",
        "load": "{concurrency: [1, 4], requests_per_level: 12}",
        "slo": "{ttft_ms: 1000}",
        "timing": "{warmup_requests: 2, repeats: 2}",
        **extra,
    }
    p = tmp_path / "w.yaml"
    p.write_text("".join(f"{k}: {v}\n" for k, v in fields.items()))
    return p


def assert_error_last(proc, code: int, *needles: str) -> None:
    """Progress lines may precede it on stderr; the failure itself is one line, the last, with no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert [ln for ln in lines if ln.startswith("error:")] == lines[-1:] and "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[-1], lines[-1]


def results(out: Path) -> list[Path]:
    return sorted(out.glob("*.json"))


def test_run_writes_one_record_per_level(stub, tmp_path):
    server = stub(tokens_per_chunk=2, usage="continuous")
    wl = workload(tmp_path, server.base_url, interactivity_targets="[1.0, 1.0e9]")
    proc = moebench("run", str(wl), "--out", str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "concurrency 4" in proc.stdout and "TTFT ms" in proc.stdout
    assert "$/M blended at 1 tok/s/user: " in proc.stdout  # every level is faster: the cheapest one's price
    assert "no priced level reaches it" in proc.stdout
    [path] = results(tmp_path / "out")
    doc = load_result(path)  # the same reader compare, report and gate use
    assert doc["complete"] and doc["kind"] == "endpoint" and doc["world_size"] == 2
    assert [r["load"]["label"] for r in doc["records"]] == ["concurrency 1", "concurrency 4"]
    # identity compare and the gate match levels by: the declared dataset, not what the server counted
    assert [(r["batch_size"], r["prompt_tokens"], r["output_tokens"], r["serving"]) for r in doc["records"]] == [
        (1, 16, 8, "continuous"), (4, 16, 8, "continuous")]
    assert doc["records"][0]["energy_source"] == "estimated"  # the catalog's all-in power: h100_sxm has one
    # the targets' prices are saved, not only printed: every level beats 1 tok/s/user, none reaches 1e9
    low, high = doc["at_interactivity"]
    cheapest = min(r["metrics"]["usd_per_mtok"]["blended"]["median"] for r in doc["records"])
    assert low["target_tokens_per_s_per_user"] == 1.0 and low["usd_per_mtok_blended"] == cheapest
    assert low["levels"][0] == low["levels"][1] and high["usd_per_mtok_blended"] is None
    rep = moebench("report", str(path), "--out", str(tmp_path / "report"), timeout=120)
    assert rep.returncode == 0, rep.stderr
    html = (tmp_path / "report" / "report.html").read_text()
    assert "at each stated interactivity" in html and "no priced level reaches it" in html
    for r in doc["records"]:
        assert r["requests"]["ok"] == 24 and r["requests"]["failed"] == 0  # 12 × 2 repeats; warm-up excluded
        assert r["metrics"]["output_tokens_per_s"]["n"] == 2  # one sample per repeat
        assert r["metrics"]["ttft_ms"]["n"] == 24 and r["metrics"]["itl_ms"] is not None
        assert r["metrics"]["usd_per_mtok"]["blended"]["median"] > 0
        assert r["requests"]["output_token_source"] == {"continuous_usage": 24}
    # 2 warm-up + 24 measured per level, plus the probe
    assert len(server.log.requests) == 2 * 26 + 1


def test_json_is_one_document_on_stdout(stub, tmp_path):
    server = stub()
    wl = workload(tmp_path, server.base_url, load="{concurrency: [2], requests_per_level: 4}")
    proc = moebench("run", str(wl), "--out", str(tmp_path / "out"), "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["records"][0]["requests"]["ok"] == 8


def test_quick_look_with_endpoint_flag(stub, tmp_path):
    server = stub(tokens_per_chunk=8)
    proc = moebench("run", "--endpoint", server.base_url, "--out", str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = load_result(results(tmp_path)[0])
    assert [r["load"]["value"] for r in doc["records"]] == [1, 8]


def test_unreachable_server_exits_4_in_one_line(tmp_path):
    proc = moebench("run", str(workload(tmp_path, "http://127.0.0.1:9/v1")), "--out", str(tmp_path / "out"))
    assert_one_line_error(proc, 4, "unreachable", "127.0.0.1:9")
    assert not results(tmp_path / "out")


def test_failures_past_the_threshold_exit_5_with_partial_results(stub, tmp_path):
    server = stub(http_500_every=3)
    wl = workload(tmp_path, server.base_url, max_failure_ratio="0.2")
    proc = moebench("run", str(wl), "--out", str(tmp_path / "out"), timeout=120)
    assert_error_last(proc, 5, "concurrency 1: 8 of 24 requests failed", "HTTP 500", "partial results in")
    [path] = results(tmp_path / "out")
    doc = load_result(path)
    assert not doc["complete"] and "max_failure_ratio" in doc["error"]
    [rec] = doc["records"]  # the failing level is saved; the next one never ran
    assert rec["requests"]["failed"] == 8 and rec["requests"]["ok"] == 16


def test_some_failures_under_the_threshold_are_counted_and_the_run_goes_on(stub, tmp_path):
    server = stub(http_500_every=10)
    proc = moebench("run", str(workload(tmp_path, server.base_url, max_failure_ratio="0.2")),
                    "--out", str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = load_result(results(tmp_path / "out")[0])
    assert sum(r["requests"]["failed"] for r in doc["records"]) > 0


def _run_until(tmp_path, server, load: str, out, ready, timeout_s: float = 60) -> subprocess.Popen:
    """`moebench run` of a one-repeat endpoint workload in the background, returned once `ready()` (or it ended)."""
    wl = workload(tmp_path, server.base_url, load=load, timing="{warmup_requests: 0, repeats: 1}")
    proc = subprocess.Popen([sys.executable, "-m", "moebench", "run", str(wl), "--out", str(out)], cwd=REPO,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout_s
    while not ready() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    return proc


def test_sigterm_during_the_probe_of_a_silent_server_stops_at_once(stub, tmp_path):
    """A server that accepts and never answers held the probe for its minute-long step whatever the signal; a stop
    now ends it, with nothing measured and nothing saved."""
    server = stub(silent_after=0)
    out = tmp_path / "out"
    proc = _run_until(tmp_path, server, "{concurrency: [1], requests_per_level: 2}", out,
                      lambda: bool(server.log.bodies))  # the probe's first completion request is in, unanswered
    assert server.log.bodies, "the probe never sent its request"
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130 and time.monotonic() - sent < 4, stderr
    assert stderr.splitlines()[-1] == "error: interrupted before the first level finished: nothing saved"
    assert not results(out)


def test_sigterm_saves_partial_results(stub, tmp_path):
    server = stub(token_delay_s=0.02)
    out = tmp_path / "out"
    # the file appears once the first level is done; the second takes ~1.3 s
    proc = _run_until(tmp_path, server, "{concurrency: [4, 1], requests_per_level: 8}", out, lambda: bool(results(out)))
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.splitlines()[-1].startswith("error: interrupted: partial results (levels measured: 1) in")
    doc = load_result(results(out)[0])
    assert not doc["complete"] and doc["error"] == "interrupted"
    assert [r["load"]["label"] for r in doc["records"]] == ["concurrency 4"]
    assert doc["records"][0]["load"]["level_complete"] is True  # its one repeat ran; a level cut short says so


def test_bad_workload_fields_exit_3_naming_them(tmp_path):
    wl = workload(tmp_path, "http://127.0.0.1:9/v1", load="{concurrency: [1], request_rate: [2.0]}")
    assert_one_line_error(moebench("run", str(wl)), 3, "load", "exactly one of concurrency or request_rate")
    wl = workload(tmp_path, "http://127.0.0.1:9/v1", deployment="{hardware: h100_sxmm}")
    assert_one_line_error(moebench("run", str(wl), "--out", str(tmp_path / "o")), 3, "deployment.hardware",
                          "did you mean")
    wl = workload(tmp_path, "http://127.0.0.1:9/v1", dataset="{kind: random, prompt_tokens: 8, output_tokens: 4, seeds: 1}")
    assert_one_line_error(moebench("validate", str(wl)), 3, "dataset.random.seeds", "unknown key")


def test_workload_and_endpoint_flag_together_is_a_usage_error(tmp_path):
    proc = moebench("run", str(workload(tmp_path, "http://x/v1")), "--endpoint", "http://x/v1")
    assert_one_line_error(proc, 2, "either WORKLOAD or --endpoint")


def test_server_metrics_are_sampled_beside_the_client_view(stub, tmp_path):
    server = stub(metrics=True, tokens_per_chunk=4, token_delay_s=0.05)  # 3 waves of 0.2 s requests
    wl = workload(tmp_path, server.base_url, load="{concurrency: [3], requests_per_level: 9}",
                  timing="{warmup_requests: 0, repeats: 1}", telemetry_interval_s="0.05")
    proc = moebench("run", str(wl), "--out", str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    srv = load_result(results(tmp_path / "out")[0])["records"][0]["server"]
    assert srv["scrapes"] >= 2 and srv["preemptions"] == 0
    assert srv["tokens_per_iteration"] == 4  # the stub writes 4 tokens per chunk, one chunk per "iteration"
    assert max(srv["running_requests"]["samples"]) in (1, 2, 3)  # never more than the closed loop's 3 in flight


def test_open_loop_levels_are_records_too(stub, tmp_path):
    server = stub()
    wl = workload(tmp_path, server.base_url,
                  load="{request_rate: [40, 80], arrival: gamma, burstiness: 0.5, requests_per_level: 10, "
                       "max_concurrency: 4}")
    proc = moebench("run", str(wl), "--out", str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    recs = load_result(results(tmp_path / "out")[0])["records"]
    assert [(r["load"]["label"], r["serving"]) for r in recs] == [
        ("rate 40/s", "continuous, rate 40/s"), ("rate 80/s", "continuous, rate 80/s")]
    assert all(r["requests"]["ok"] == 20 and r["metrics"]["queue_ms"]["n"] == 20 for r in recs)


def test_a_server_that_stops_answering_fails_the_run(stub, tmp_path):
    server = stub(silent_after=1)  # the probe is answered; nothing after it
    wl = workload(tmp_path, server.base_url, load="{concurrency: [2], requests_per_level: 4, max_duration_s: 0.5}",
                  timing="{warmup_requests: 0, repeats: 1}")
    proc = moebench("run", str(wl), "--out", str(tmp_path / "out"), timeout=120)
    assert_error_last(proc, 5, "concurrency 2: 0 of 2 requests failed and 2 were cut at the time limit", "none answered",
                      "partial results in")
    [rec] = load_result(results(tmp_path / "out")[0])["records"]
    assert rec["requests"]["ok"] == 0 and rec["requests"]["failure_ratio"] == 1.0


def test_a_dead_server_fails_the_run_at_its_first_silence_not_after_every_repeat(stub, tmp_path):
    """Warm-up requests nobody answers fail the level before its repeats; a repeat nobody answered ends the level's
    repeats. Each had waited out max_duration_s: (1 + repeats) of them per level, 40 min for endpoint-vllm.yaml."""
    server = stub(silent_after=1)  # the probe is answered; nothing after it
    wl = workload(tmp_path, server.base_url, load="{concurrency: [2], requests_per_level: 4, max_duration_s: 1}",
                  timing="{warmup_requests: 2, repeats: 3}")
    t0 = time.monotonic()
    proc = moebench("run", str(wl), "--out", str(tmp_path / "out"), timeout=120)
    assert_error_last(proc, 5, "concurrency 2: none of its 2 warm-up requests was answered",
                      "nothing measured, nothing saved")
    assert time.monotonic() - t0 < 1 + 4 and not results(tmp_path / "out")  # one max_duration_s, not four
    fresh = stub(silent_after=1)  # the first one's probe request is spent
    wl = workload(tmp_path, fresh.base_url, load="{concurrency: [2], requests_per_level: 4, max_duration_s: 1}",
                  timing="{warmup_requests: 0, repeats: 3}")
    proc = moebench("run", str(wl), "--out", str(tmp_path / "out2"), timeout=120)
    assert_error_last(proc, 5, "none answered", "partial results in")
    [rec] = load_result(results(tmp_path / "out2")[0])["records"]
    assert rec["load"]["repeats"] == 1 and rec["load"]["repeats_planned"] == 3


def test_without_usage_or_tokenizer_token_rates_are_not_measured_not_zero(stub, tmp_path):
    server = stub(usage="none")
    wl = workload(tmp_path, server.base_url, load="{concurrency: [2], requests_per_level: 4}")
    proc = moebench("run", str(wl), "--out", str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "server reports no usage: set tokenizer:" in proc.stderr
    [rec] = load_result(results(tmp_path / "out")[0])["records"]
    m = rec["metrics"]
    for key in ("output_tokens_per_s", "input_tokens_per_s", "total_tokens_per_s", "goodput_tokens_per_s",
                "usd_per_mtok", "usd_per_mtok_good", "tpot_ms", "joules_per_token", "tokens_per_mw"):
        assert m[key] is None, key
    assert m["request_throughput_per_s"]["median"] > 0 and m["ttft_ms"]["n"] == 8
    assert "set tokenizer:" in rec["requests"]["note"] and "set tokenizer:" in proc.stdout


def test_repeats_is_honoured_and_engine_options_are_refused(stub, tmp_path):
    server = stub()
    wl = workload(tmp_path, server.base_url, load="{concurrency: [2], requests_per_level: 2}")
    proc = moebench("run", str(wl), "--repeats", "3", "--out", str(tmp_path / "out"), "--wide", timeout=120)
    assert proc.returncode == 0, proc.stderr
    [rec] = load_result(results(tmp_path / "out")[0])["records"]
    assert rec["load"]["repeats"] == 3 and rec["metrics"]["output_tokens_per_s"]["n"] == 3
    assert "E2E ms" in proc.stdout and "req/s" in proc.stdout  # --wide: what the narrow table leaves out
    for extra in (["--nproc", "4"], ["--profile"], ["--device", "cuda"]):
        proc = moebench("run", str(wl), *extra, "--out", str(tmp_path / "o2"))
        assert_one_line_error(proc, 2, extra[0], "not for an endpoint workload")
    assert len(server.log.requests) == 1 + 2 + 3 * 2  # nothing sent for the refused runs


def test_validate_refuses_what_run_refuses(tmp_path):
    url = "http://127.0.0.1:9/v1"  # nothing listens: validate needs no server
    cases = [
        ({"deployment": "{hardware: h100_sxmm}"}, "deployment.hardware"),
        ({"deployment": "{hardware: h100_sxm, model: 'lama3:8b'}"}, "deployment.model: unknown model 'lama3:8b' (did you mean 'llama3:8b'"),
        ({"dataset": f"{{kind: jsonl, path: {tmp_path / 'missing.jsonl'}}}"}, "dataset.path"),
        ({"tokenizer": str(tmp_path / "no-tokenizer")}, "tokenizer"),
        ({"load": "{concurrency: [1, 4, 4], requests_per_level: 2}"}, "concurrency 4 given twice"),
        ({"load": "{request_rate: [0.5, 0.5], requests_per_level: 2}"}, "request_rate 0.5 given twice"),
        ({"endpoint": '{base_url: "http://127.0.0.1:9/v1?x=1"}'}, "base_url"),
        ({"endpoint": '{base_url: "http://ho st:9/v1"}'}, "base_url"),
    ]
    for extra, field in cases:
        wl = workload(tmp_path, url, **extra)
        assert_one_line_error(moebench("validate", str(wl)), 3, field)
        assert_one_line_error(moebench("run", str(wl), "--out", str(tmp_path / "o")), 3, field)
    proc = moebench("validate", str(workload(tmp_path, url)))
    assert proc.returncode == 0 and "endpoint workload" in proc.stdout, proc.stderr


@pytest.mark.parametrize("url, why", [("http://127.0.0.1:99999/v1", "Port out of range"),
                                      ("http://[::1/v1", "Invalid IPv6 URL"), ("http://", "names no host")])
def test_a_malformed_url_is_bad_input_not_an_unreachable_server(tmp_path, url, why):
    proc = moebench("run", "--endpoint", url, "--out", str(tmp_path / "o"))
    assert_one_line_error(proc, 3, f"base_url {url!r}", why)
    assert not (tmp_path / "o").exists()


def test_the_stub_serves_from_the_command_line_for_a_quick_look(tmp_path):
    """`python -m moebench.endpoint.stub` (docs/endpoint.md's example server) on 127.0.0.1, then Ctrl-C."""
    p = subprocess.Popen([sys.executable, "-m", "moebench.endpoint.stub", "--port", "0", "--ttft-ms", "5",
                          "--tpot-ms", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        line = p.stdout.readline()
        assert line.startswith("stub serving http://127.0.0.1:"), line + p.stderr.read()
        url = line.split()[2]
        proc = moebench("run", "--endpoint", url, "--out", str(tmp_path / "out"))
        assert proc.returncode == 0, proc.stderr
        (saved,) = (tmp_path / "out").glob("*.json")
        recs = load_result(saved)["records"]
        assert recs and all(r["metrics"]["ttft_ms"]["median"] >= 5 for r in recs)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)
    assert p.returncode == 0 and "Traceback" not in p.stderr.read()
