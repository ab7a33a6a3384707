"""A record's energy fields: measured (and scaled with the time when N of the layers ran), estimated from the
catalog's all-in power, or not measured; its contention; and phase-attributed $/M (prefill time priced into
input tokens, decode time into output tokens, so together they are the run's cost — unlike the published
convention, which charges the whole time to each kind)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import pytest

from moebench.engine.generate import GenerationSamples
from moebench.engine.records import Peaks, Pricing, build_record, rate_metrics
from moebench.results import stat

NO_PEAKS = Peaks(None, None, None, None)


def record_of(samples: GenerationSamples, *, batch: int, prompt: int, output: int, layers: Optional[int] = None,
              allin_kw: Optional[float] = None, n_gpus: int = 1) -> dict:
    from moebench.models import entry_arch

    _, cfg = entry_arch("llama3:debug", "random", layers)
    return build_record(
        name="llama3:debug", kind="dense", run_cfg=cfg, samples=samples, batch=batch, prompt=prompt, output=output,
        dtype_bytes=4, pricing=Pricing(None, None, None, n_gpus, allin_kw), peaks=NO_PEAKS, intelligence=None,
        energy_j_per_repeat=samples.energy_j, energy_source=samples.energy_source, energy_scope=samples.energy_scope)


def samples(energy_j=(), source="not measured", window_s=(1.5, 1.6)) -> GenerationSamples:
    return GenerationSamples(ttft_ms=[10.0, 12.0], tpot_ms=[2.0, 2.0], itl_ms=[2.0] * 6, energy_j=list(energy_j),
                             energy_source=source, energy_scope="test counter", energy_window_s=list(window_s))


def test_cpu_without_a_counter_or_catalog_power_is_not_measured():
    rec = record_of(samples(), batch=2, prompt=8, output=4)
    assert rec["energy_source"] == "not measured" and rec["metrics"]["joules_per_token"] is None
    assert "no readable counter" in rec["energy_scope"]


def test_without_a_counter_catalog_power_gives_an_estimate_never_a_measurement():
    rec = record_of(samples(), batch=2, prompt=8, output=4, allin_kw=1.5, n_gpus=2)
    jpt = rec["metrics"]["joules_per_token"]
    assert rec["energy_source"] == "estimated" and jpt["basis"] == "estimated" and jpt["unit"] == "J/token"
    # 1.5 kW x 2 devices x (TTFT + 3 TPOT) / (2 x (8 + 4)) tokens
    assert jpt["samples"] == pytest.approx([3000 * (10 + 6) / 1e3 / 24, 3000 * (12 + 6) / 1e3 / 24])
    assert "not a reading" in rec["energy_scope"]


def test_measured_energy_per_token_is_the_repeat_over_its_tokens():
    rec = record_of(samples([4.8, 7.2], "rapl"), batch=2, prompt=8, output=4, allin_kw=1.5)
    jpt = rec["metrics"]["joules_per_token"]
    assert rec["energy_source"] == "rapl" and rec["energy_scope"] == "test counter"
    assert jpt["basis"] == "measured" and jpt["samples"] == pytest.approx([0.2, 0.3])  # a counter beats the estimate


def test_energy_of_n_layers_is_scaled_like_their_time():
    rec = record_of(samples([4.8, 7.2], "nvml"), batch=2, prompt=8, output=4, layers=2)
    jpt, ext = rec["metrics"]["joules_per_token"], rec["extrapolation"]
    assert rec["basis"] == "extrapolated" and jpt["basis"] == "extrapolated"
    f_pre, f_dec = ext["prefill_factor"], ext["decode_factor"]
    assert f_pre > 1 and f_dec > 1
    for j, e, ttft in zip(jpt["samples"], [4.8, 7.2], [10.0, 12.0]):
        assert j == pytest.approx(e * (f_pre * ttft + f_dec * 6) / (ttft + 6) / 24)


def test_the_record_carries_its_contention():
    s = samples()
    s.contention = [{"host": "h", "machine_cpu_s": 3.0, "own_cpu_s": 1.0, "wall_s": 2.0, "usable_cpus": 4,
                     "other_gpu_processes": 0}]
    c = record_of(s, batch=2, prompt=8, output=4)["contention"]
    assert c["other_cpu_cores"] == pytest.approx(1.0) and c["usable_cpus"] == 4 and c["contended"] is True
    assert record_of(samples(), batch=2, prompt=8, output=4)["contention"] is None  # nothing measured


def test_repeats_too_short_for_the_counter_are_pooled_into_one_sample():
    # 0.4 s and 0.7 s windows: each under a second, 1.1 s together
    rec = record_of(samples([4.8, 7.2], "nvml", window_s=(0.4, 0.7)), batch=2, prompt=8, output=4)
    jpt = rec["metrics"]["joules_per_token"]
    assert jpt["n"] == 1 and jpt["samples"] == pytest.approx([(4.8 + 7.2) / (2 * 24)]) and jpt["basis"] == "measured"
    assert rec["energy_scope"].startswith("test counter; pooled: all 2 repeats") and "coarse" not in rec["energy_scope"]
    # 3 ms and 4 ms: 7 ms metered in all is a few of NVML's update steps, and says so
    rec = record_of(samples([4.8, 7.2], "nvml", window_s=(0.003, 0.004)), batch=2, prompt=8, output=4)
    assert rec["metrics"]["joules_per_token"]["n"] == 1 and "coarse: 0.007 s metered in all" in rec["energy_scope"]


def test_the_report_labels_how_energy_was_obtained():
    """An estimate never reads as a reading: the CSV carries the source and basis, the HTML prints them beside
    the figure, and a CPU without a counter says "not measured" where the figure would be."""
    from moebench.report.html import dense_vs_moe
    from moebench.report.rows import record_row

    doc = {"hardware": {"name": "CPU host", "device": "cpu"}, "workload": {"name": "w"}}
    estimated = record_row(doc, record_of(samples(), batch=2, prompt=8, output=4, allin_kw=1.5), "a.json")
    unmeasured = record_row(doc, record_of(samples(), batch=4, prompt=8, output=4), "a.json")
    assert (estimated["energy_source"], estimated["energy_basis"]) == ("estimated", "estimated")
    assert estimated["joules_per_token_median"] is not None
    assert (unmeasured["energy_source"], unmeasured["joules_per_token_median"]) == ("not measured", None)
    html = dense_vs_moe([estimated, unmeasured])
    assert "(estimated)</span>" in html and ">not measured<" in html


# ------------------------------------------------------------------------------------ phase-attributed $/M
REAL_RUN = Path(__file__).parents[1] / "report" / "data" / "runs" / "tiny-extrapolated.json"


def _cost_usd(price: float, n_gpus: int, prefill_ms: float, step_ms: float, output: int) -> float:
    return price * n_gpus / 3600 * (prefill_ms + (output - 1) * step_ms) / 1e3


@pytest.mark.parametrize("n_gpus", [1, 8])
def test_phase_prices_add_up_to_the_runs_cost(n_gpus):
    batch, prompt, output, price = 4, 128, 32, 2.5
    ttft, tpot = [310.0, 290.0, 330.0], [21.0, 19.5, 23.0]
    m = rate_metrics(stat(ttft, "measured", "ms"), stat(tpot, "measured", "ms"), batch=batch, prompt=prompt,
                     output=output, pricing=Pricing(price, "explicit", "test", n_gpus), intelligence=None,
                     basis="measured")
    phase, whole = m["usd_per_mtok_phase"], m["usd_per_mtok"]
    for i, (a, b) in enumerate(zip(ttft, tpot)):
        pin, pout = phase["input"]["samples"][i], phase["output"]["samples"][i]
        billed = pin * batch * prompt / 1e6 + pout * batch * output / 1e6
        assert billed == pytest.approx(_cost_usd(price, n_gpus, a, b, output), rel=1e-12)
        # the published convention charges the whole run to each kind, so it bills the run twice over
        twice = (whole["input"]["samples"][i] * batch * prompt + whole["output"]["samples"][i] * batch * output) / 1e6
        assert twice == pytest.approx(2 * _cost_usd(price, n_gpus, a, b, output), rel=1e-12)
        assert phase["blended"]["samples"][i] == pytest.approx((3 * pin + pout) / 4)


def test_a_real_runs_phase_prices_reconcile_with_its_cost():
    doc = json.loads(REAL_RUN.read_text())
    for r in doc["records"]:
        m, cost = r["metrics"], r["cost"]
        b, p, o = r["batch_size"], r["prompt_tokens"], r["output_tokens"]
        for i, (a, s) in enumerate(zip(m["ttft_ms"]["samples"], m["tpot_ms"]["samples"])):
            billed = (m["usd_per_mtok_phase"]["input"]["samples"][i] * b * p
                      + m["usd_per_mtok_phase"]["output"]["samples"][i] * b * o) / 1e6
            assert billed == pytest.approx(_cost_usd(cost["usd_per_gpu_hour"], cost["n_gpus"], a, s, o), rel=1e-9)


def test_no_price_no_phase_prices():
    s = stat([10.0, 11.0])
    m = rate_metrics(s, s, batch=1, prompt=8, output=4, pricing=Pricing(None, None, None, 1), intelligence=None,
                     basis="measured")
    assert m["usd_per_mtok_phase"] is None and m["usd_per_mtok"] is None


def test_extrapolation_agrees_from_any_depth_when_time_follows_the_model():
    """A machine whose prefill takes `a` ms a layer plus the LM head's weight read, and whose decode step takes
    `c` ms a byte: extrapolating Llama-3.1-8B from 1 layer and from 6 gives the same full depth, 32·a + head.
    Counting the LM head's FLOPs on every prompt token (prefill runs it on the last one) made the 1-layer factor
    10.1 where it is about 30: TTFT 1.3 s against 2.1 s from 6 layers, on a CPU (bf16, prompt 64)."""
    from moebench.engine.records import extrapolation_factors
    from moebench.models import entry_arch

    batch, prompt, output, db = 1, 64, 16, 2
    a, c = 77.0, 55.0 / 1.05e9  # ms per layer of prefill; ms per byte read in a decode step
    full = None
    for layers in (1, 6):
        cfg = entry_arch("llama3:8b", "random", layers)[1]
        full = cfg.full()
        head_ms = c * cfg.head_bytes(db)
        ttft = layers * a + head_ms
        tpot = c * cfg.decode_bytes(batch, prompt + output // 2, db)
        f_pre, f_dec = extrapolation_factors(cfg, batch, prompt, output, db, ttft, tpot)
        assert ttft * f_pre == pytest.approx(full.num_hidden_layers * a + head_ms, rel=0.02)
        assert tpot * f_dec == pytest.approx(c * full.decode_bytes(batch, prompt + output // 2, db), rel=1e-9)
    # the LM head once per sequence: a prompt of 64 tokens does not run it 64 times
    assert full.prefill_flops(2, 64) == 2 * (64 * (full.flops_per_token(32) - full.head_flops()) + full.head_flops())
