"""workloads/dense-vs-moe.yaml: Llama-3.1-405B vs GPT-OSS-120B at real widths, on layer counts that fit a
24 GB CPU machine, with intelligence scores from one index version."""

from __future__ import annotations

from pathlib import Path

import pytest

from moebench.catalog import reference_models
from moebench.models import resolve_name
from moebench.arith import dtype_bytes
from moebench.models.memory import AVAILABLE_ENV, required_bytes
from moebench.workload import load_workload

PATH = Path(__file__).resolve().parents[2] / "workloads" / "dense-vs-moe.yaml"


@pytest.fixture(autouse=True)
def _a_24gb_machine(monkeypatch):
    """load_workload runs the memory check: against the machine the workload is sized for, not this one's load."""
    monkeypatch.setenv(AVAILABLE_ENV, str(24 * 10**9))


def test_the_workload_pits_405b_against_gpt_oss_120b():
    wl = load_workload(PATH)
    assert [m.name for m in wl.model_entries] == ["llama3:405b", "gpt-oss:120b"]
    assert all(m.layers for m in wl.model_entries)
    assert wl.intelligence.version == "v3"
    scores = {m.name: reference_models()[m.name].score("v3").score for m in wl.model_entries}
    assert scores == {"llama3:405b": 28, "gpt-oss:120b": 61}


def test_each_model_fits_a_24gb_machine_at_real_width():
    wl = load_workload(PATH)
    s = wl.scenario
    for m in wl.model_entries:
        cfg = resolve_name(m.name)[1].with_layers(m.layers)
        need = required_bytes(cfg, batch=max(s.batch_sizes), max_seq=s.prompt_tokens + s.output_tokens,
                              dtype_bytes=dtype_bytes(wl.dtype))
        assert need < 21e9, (m.name, need)  # 24 GB minus what the OS and other processes hold
        bigger = resolve_name(m.name)[1].with_layers(m.layers + 1)
        assert required_bytes(bigger, batch=1, max_seq=36, dtype_bytes=2) > 21e9  # the most layers that fit
