"""Fixtures for the report tests: result documents to report on, the CLI in-process, and a headless Chromium
(tests/report/chromium.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Optional

import pytest

from moebench.cli import main
from moebench.results import stat
from tests.report.chromium import CHROMIUM, open_in_chromium


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
        "basis": basis, "serving": None if basis == "projected" else "static", "batch_size": batch, "prompt_tokens": prompt, "output_tokens": output,
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
            "tokens_per_mw": None, "joules_per_token": None, "tokens_per_joule": None,
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
        "schema_version": 2, "complete": True, "kind": "engine", "run_id": f"20260101T000000Z-test-{hw_id}",
        "created_utc": "2026-01-01T00:00:00Z", "workload_path": "workloads/test.yaml",
        "workload": {"name": "dense-vs-moe-test", "scenario": {"prompt_tokens": 128, "output_tokens": 32}},
        "hardware": {"id": hw_id, "name": hw_name, "device": "cuda", "dtype": "bfloat16", "n_devices": 1,
                     "kernels": "torch", "price": {"usd_per_gpu_hour": price, "tier": "test", "source": "test"},
                     "measured_roofs": {"mem_gbps": 3000.0, "matmul_gflops": 700000.0, "matmul_dtype": "bfloat16",
                                        "basis": "measured"}},
        "moebench_version": "0.1.0", "git_commit": sha,
        "environment": {"python": "3.11", "platform": "linux",
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


@pytest.fixture
def chromium():
    if CHROMIUM is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium) — the browser check did not run")
    return open_in_chromium
