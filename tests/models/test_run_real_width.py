"""`moebench run` on real-width models: N of L layers run and are extrapolated; a run that cannot fit exits 3
before allocating anything, in one line naming the bytes and the largest `layers:` that fits."""

from __future__ import annotations

import json
import re

import pytest

from moebench.models import memory, resolve_name
from tests.cli.conftest import moebench

QWEN = """\
name: qwen-real-width
models: [{name: "qwen3-moe:30b-a3b", layers: 2}]
device: cpu
dtype: bfloat16
kernels: torch
scenario: {prompt_tokens: 8, output_tokens: 2, batch_sizes: [1]}
timing: {warmup: 0, repeats: 1}
price: {fallback_usd_per_gpu_hour: 0.1}
"""

DEEPSEEK = """\
name: deepseek-too-big
models: [{name: "deepseek-v3:671b", layers: 4}]
device: cpu
dtype: float32
scenario: {prompt_tokens: 16, output_tokens: 4, batch_sizes: [1]}
"""


def test_qwen3_30b_a3b_two_layers_runs_on_cpu(tmp_path):
    wl = tmp_path / "qwen.yaml"
    wl.write_text(QWEN)
    proc = moebench("run", str(wl), "--json", "--out", str(tmp_path / "out"), timeout=600)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    rec = doc["records"][0]
    assert (rec["model"], rec["layers_run"], rec["layers_total"], rec["basis"]) == ("qwen3-moe:30b-a3b", 2, 48, "extrapolated")
    assert rec["params"]["total"] == resolve_name("qwen3-moe:30b-a3b")[1].total_params()
    assert rec["metrics"]["ttft_ms"]["median"] > 0 and doc["complete"] is True


def test_deepseek_671b_four_layers_exits_3_naming_the_memory(tmp_path):
    wl = tmp_path / "ds.yaml"
    wl.write_text(DEEPSEEK)
    # a 24 GB machine, whatever this one has free now (the memory used elsewhere changed the answer)
    proc = moebench("run", str(wl), "--out", str(tmp_path / "out"), env={memory.AVAILABLE_ENV: str(24 * 10**9)})
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    # progress lines may precede it on stderr; the error itself is one line
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and re.fullmatch(
        r"error: .*ds.yaml: models\[0\]: deepseek-v3:671b with layers: 4 needs \d+\.\d GB but cpu has 24\.0 GB "
        r"available; the largest layers: that fits is 3", err[0]), proc.stderr
