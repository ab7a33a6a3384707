"""J/token of an endpoint from the server's energy counters: a DCGM exporter (a stub serving a counter that
advances) and NVML on this host (a fake NVML), beside the catalog estimate they replace."""

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from moebench import energy
from moebench.endpoint.runner import run_endpoint_workload
from moebench.endpoint.workload import EndpointWorkload
from moebench.errors import EnvironmentProblem
from moebench.results import load_result
from tests.cli.conftest import assert_one_line_error, moebench

from .test_cli import results, workload

STEP_MJ = 1000  # each scrape of the stub exporter finds every GPU's counter 1 J further on


@contextlib.contextmanager
def dcgm_exporter(gpus=4, step_mj=STEP_MJ):
    """dcgm-exporter's text: one energy counter per GPU (label gpu="i"), advancing `step_mj` per scrape."""
    state = {"scrapes": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            state["scrapes"] += 1
            mj = 5_000_000 + state["scrapes"] * step_mj
            body = ("# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).\n"
                    "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n"
                    + "".join(f'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{gpu="{i}",UUID="GPU-{i}",'
                              f'modelName="NVIDIA H100"}} {mj + i}\n' for i in range(gpus))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics", state
    finally:
        server.shutdown()
        thread.join(5)


def tokens_per_repeat(rec):
    """The stub server counts 7 prompt tokens and 8 output tokens per request."""
    return rec["requests"]["ok"] // rec["load"]["repeats"] * (7 + 8)


def test_dcgm_exporter_counters_give_measured_joules_per_token(stub, tmp_path):
    server = stub()
    with dcgm_exporter() as (url, state):
        wl = workload(tmp_path, server.base_url,
                      deployment=f'{{hardware: h100_sxm, gpus: 2, price: {{usd_per_gpu_hour: 2.0}}, '
                                 f'energy: {{meter: dcgm, dcgm_url: "{url}", gpus: [1, 3]}}}}')
        proc = moebench("run", str(wl), "--out", str(tmp_path / "out"), timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert state["scrapes"] == 1 + 2 * 2 * 2  # the check at the start, then before and after 2 repeats × 2 levels
    for rec in load_result(results(tmp_path / "out")[0])["records"]:
        assert rec["energy_source"] == "dcgm" and "GPU 1, 3" in rec["energy_scope"]
        jpt = rec["metrics"]["joules_per_token"]
        assert jpt["basis"] == "measured" and jpt["n"] == 2
        # two GPUs' counters moved 1 J each over every repeat
        assert jpt["samples"] == pytest.approx([2 * STEP_MJ / 1e3 / tokens_per_repeat(rec)] * 2)


def test_a_counter_that_does_not_move_falls_back_to_the_estimate_and_says_why(stub, tmp_path):
    server = stub()
    with dcgm_exporter(step_mj=0) as (url, _):
        wl = EndpointWorkload.model_validate({
            "kind": "endpoint", "name": "e", "endpoint": {"base_url": server.base_url},
            "deployment": {"hardware": "h100_sxm", "gpus": 1, "energy": {"meter": "dcgm", "dcgm_url": url}},
            "dataset": {"kind": "random", "prompt_tokens": 8, "output_tokens": 4},
            "load": {"concurrency": [2], "requests_per_level": 4}, "timing": {"warmup_requests": 0}})
        doc, _ = run_endpoint_workload(wl, out_dir=tmp_path)
    [rec] = doc["records"]
    assert rec["energy_source"] == "estimated" and "did not advance" in rec["energy_scope"]
    assert rec["metrics"]["joules_per_token"]["basis"] == "estimated"


def test_an_unreadable_exporter_fails_before_any_request(stub, tmp_path):
    server = stub()
    wl = workload(tmp_path, server.base_url,
                  deployment='{gpus: 1, energy: {meter: dcgm, dcgm_url: "http://127.0.0.1:9/metrics"}}')
    assert_one_line_error(moebench("run", str(wl), "--out", str(tmp_path / "out")), 4, "deployment.energy",
                          "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION")
    assert len(server.log.requests) == 1  # the probe only


class FakeNvml:
    """pynvml's calls the meter makes; each read finds every GPU 500 mJ further on."""

    def __init__(self):
        self.reads = 0

    def nvmlDeviceGetHandleByIndex(self, i):  # noqa: N802 - pynvml's names
        return i

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):  # noqa: N802
        self.reads += 1
        return 1_000_000 + 500 * self.reads


def test_nvml_on_this_host_reads_the_servers_gpus_by_index(stub, tmp_path, monkeypatch):
    fake = FakeNvml()
    monkeypatch.setattr("moebench.endpoint.energy.nvml", lambda: fake)
    server = stub()
    wl = EndpointWorkload.model_validate({
        "kind": "endpoint", "name": "e", "endpoint": {"base_url": server.base_url},
        "deployment": {"gpus": 2, "energy": {"meter": "nvml"}},  # no catalog hardware: no estimate to fall back on
        "dataset": {"kind": "random", "prompt_tokens": 8, "output_tokens": 4},
        "load": {"concurrency": [2], "requests_per_level": 4}, "timing": {"warmup_requests": 0, "repeats": 2}})
    doc, _ = run_endpoint_workload(wl, out_dir=tmp_path)
    [rec] = doc["records"]
    assert rec["energy_source"] == "nvml" and "NVML GPU 0, 1" in rec["energy_scope"]
    # a read is one call per GPU: between two reads each of the 2 counters moved 2 × 500 mJ
    assert rec["metrics"]["joules_per_token"]["samples"] == pytest.approx([2 * 1.0 / (4 * (7 + 4))] * 2)


def test_nvml_asked_for_but_absent_is_an_environment_problem(stub, tmp_path, monkeypatch):
    monkeypatch.setattr(energy, "nvml", lambda: None)
    monkeypatch.setattr("moebench.endpoint.energy.nvml", lambda: None)
    wl = EndpointWorkload.model_validate({
        "kind": "endpoint", "name": "e", "endpoint": {"base_url": stub().base_url},
        "deployment": {"energy": {"meter": "nvml"}}, "dataset": {"kind": "random", "prompt_tokens": 8,
                                                                   "output_tokens": 4},
        "load": {"concurrency": [1], "requests_per_level": 1}})
    with pytest.raises(EnvironmentProblem, match="meter nvml"):
        run_endpoint_workload(wl, out_dir=tmp_path)


def test_meter_fields_are_checked(tmp_path):
    wl = workload(tmp_path, "http://127.0.0.1:9/v1", deployment="{gpus: 2, energy: {meter: dcgm}}")
    assert_one_line_error(moebench("validate", str(wl)), 3, "deployment.energy", "dcgm_url")
    wl = workload(tmp_path, "http://127.0.0.1:9/v1", deployment="{gpus: 2, energy: {meter: nvml, gpus: [0]}}")
    assert_one_line_error(moebench("validate", str(wl)), 3, "energy.gpus lists 1 GPU(s), the deployment has 2")
