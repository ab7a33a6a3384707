"""Phase-attributed $/M: prefill time priced into input tokens, decode time into output tokens, so together they
are the run's cost — unlike the published convention, which charges the whole time to each kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moebench.engine.records import Pricing, rate_metrics
from moebench.results import stat

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
