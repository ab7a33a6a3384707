import pytest

from moebench import tokenomics as tk
from moebench.endpoint.client import RequestRecord
from moebench.endpoint.cost import DeploymentCost
from moebench.endpoint.load import LevelRun
from moebench.endpoint.stats import is_good, itl_per_token_ms, level_metrics, request_summary, tpot_ms
from moebench.endpoint.workload import Slo
from moebench.results import stat


def req(ttft_s=0.1, chunks=(0.1, 0.2, 0.4), tokens=(1, 2, 2), out=5, prompt=10, error=None):
    r = RequestRecord(start=0.0, first_token=ttft_s, end=chunks[-1], chunk_times=list(chunks),
                      chunk_tokens=list(tokens) if tokens else None, output_tokens=out, prompt_tokens=prompt,
                      output_source="continuous_usage", error=error)
    return r


def test_tpot_and_itl_per_token_by_hand():
    r = req()
    assert tpot_ms(r) == pytest.approx((400 - 100) / 4)
    # gaps of 100 and 200 ms carrying 2 tokens each
    assert itl_per_token_ms(r) == pytest.approx([50, 50, 100, 100])


def test_goodput_counts_only_requests_meeting_every_slo():
    fast, slow_first, slow_tokens = req(), req(ttft_s=0.3, chunks=(0.3, 0.35, 0.4)), req(chunks=(0.1, 0.5, 0.9))
    slo = Slo(ttft_ms=200, tpot_ms=100)
    assert [is_good(r, slo) for r in (fast, slow_first, slow_tokens)] == [True, False, False]
    assert not is_good(req(error="HTTP 500"), slo)


def test_goodput_under_a_tpot_slo_is_unknown_where_a_tpot_is():
    """Tokens nobody counted leave TPOT unknown: goodput under a TPOT SLO is then null, not 0 (every request called
    bad) nor half (those whose count was missing called bad)."""
    cost = DeploymentCost(2.0, "explicit", "test", 1, None, None)
    counted, uncounted = req(), req(out=None, tokens=None)
    half = [LevelRun(records=[counted, uncounted], started=0.0, ended=1.0)]
    m = level_metrics(half, Slo(tpot_ms=1000), cost)
    assert m["goodput_requests_per_s"] is None and m["usd_per_mtok_good"] is None
    assert m["request_throughput_per_s"]["samples"] == [2.0]
    assert request_summary(half, Slo(tpot_ms=1000))["good"] is None  # the count too
    m = level_metrics(half, Slo(ttft_ms=1000), cost)  # a TTFT SLO needs no token count
    assert m["goodput_requests_per_s"]["samples"] == [2.0]
    assert request_summary(half, Slo(ttft_ms=1000))["good"] == 2


def test_level_metrics_rates_and_cost_per_repeat():
    runs = [LevelRun(records=[req(), req(), req(error="HTTP 500: x")], started=0.0, ended=2.0),
            LevelRun(records=[req(), req(ttft_s=0.5, chunks=(0.5, 0.6, 0.7))], started=0.0, ended=1.0)]
    cost = DeploymentCost(2.0, "explicit", "test", 4, None, {"score": 50.0})
    m = level_metrics(runs, Slo(ttft_ms=200), cost)
    assert m["output_tokens_per_s"]["samples"] == [10 / 2, 10 / 1]
    assert m["goodput_requests_per_s"]["samples"] == [1.0, 1.0]
    assert m["goodput_tokens_per_s"]["samples"] == [2 * 5 / 2, 5 / 1]  # good output tokens / wall
    assert m["usd_per_mtok"]["output"]["samples"][0] == pytest.approx(tk.usd_per_mtok(2.0, 4, 5.0))
    assert m["usd_per_mtok_good"]["output"]["samples"][1] == pytest.approx(tk.usd_per_mtok(2.0, 4, 5.0))
    assert m["intelligence_per_usd"]["median"] > 0
    assert m["ttft_ms"]["n"] == 4 and m["joules_per_token"] is None
    free = level_metrics(runs, Slo(ttft_ms=200), DeploymentCost(0.0, "explicit", "test", 4, None, {"score": 50.0}))
    assert free["usd_per_mtok"]["blended"]["median"] == 0
    assert free["intelligence_per_usd"] is None  # a machine you own: no score per $ (it read 0.0)
    s = request_summary(runs, Slo(ttft_ms=200))
    assert (s["sent"], s["ok"], s["failed"], s["good"]) == (5, 4, 1, 3)
    assert s["failure_ratio"] == pytest.approx(0.2) and s["errors"] == {"HTTP 500": 1}
    assert s["error_examples"] == {"HTTP 500": "HTTP 500: x"}


def test_unpriced_deployment_has_no_cost_and_energy_hook_fills_joules():
    runs = [LevelRun(records=[req()], started=0.0, ended=1.0)]
    bare = DeploymentCost(None, None, None, 1, None, None)
    m = level_metrics(runs, Slo(), bare, energy_j=[30.0])
    assert m["usd_per_mtok"] is None and m["usd_per_mtok_good"] is None
    assert m["joules_per_token"]["median"] == pytest.approx(30.0 / 15) and m["joules_per_token"]["basis"] == "measured"
    assert m["tokens_per_joule"]["median"] == pytest.approx(15 / 30.0)
    assert level_metrics(runs, Slo(), bare)["joules_per_token"] is None  # no counter, no catalog power


def test_without_a_counter_energy_is_a_labelled_catalog_estimate():
    runs = [LevelRun(records=[req()], started=0.0, ended=2.0)]
    m = level_metrics(runs, Slo(), DeploymentCost(None, None, None, 2, 1.5, None))
    # 1.5 kW × 2 GPUs × 2 s over 15 tokens
    assert m["joules_per_token"]["median"] == pytest.approx(1500 * 2 * 2 / 15)
    assert m["joules_per_token"]["basis"] == "estimated"


def test_failure_ratio_counts_cut_requests_per_repeat_and_the_gate_reads_it():
    from moebench.gate import gate

    runs = [LevelRun(records=[req(), req(), req(error="HTTP 500: x")], started=0.0, ended=2.0, cut=1),
            LevelRun(records=[req(), req()], started=0.0, ended=1.0)]
    cost = DeploymentCost(None, None, None, 1, None, None)
    m = level_metrics(runs, Slo(), cost)
    assert m["failure_ratio"]["samples"] == [2 / 4, 0.0]  # (1 failed + 1 cut) / 4 sent, then none
    assert request_summary(runs, Slo())["failure_ratio"] == pytest.approx(2 / 6)

    def doc(ratios):
        rec = {"model": "m", "kind": None, "basis": "measured", "batch_size": 4, "prompt_tokens": 8,
               "output_tokens": 4, "metrics": {"failure_ratio": stat(ratios, "measured", "fraction")}}
        return {"schema_version": 2, "complete": True, "kind": "endpoint", "run_id": "r", "workload": {"name": "t"},
                "hardware": {"id": "h100_sxm", "device": "endpoint"}, "environment": {}, "world_size": 1,
                "records": [rec]}

    res = gate([doc([0.01, 0.02] * 6)], [doc([0.3, 0.4] * 6)], metrics=["failure_ratio"])
    assert res.regressed and [r.status for r in res.rows] == ["regressed"]


def test_per_token_samples_are_capped_but_the_statistics_use_all():
    from moebench.endpoint.stats import MAX_STORED_SAMPLES

    chunks = tuple(0.1 + 0.001 * i * (1 + i % 7) for i in range(3000))  # 2,999 uneven gaps in one request
    runs = [LevelRun(records=[req(chunks=chunks, tokens=(1,) * 3000, out=3000)], started=0.0, ended=10.0)]
    m = level_metrics(runs, Slo(), DeploymentCost(None, None, None, 1, None, None))
    itl = m["itl_ms"]
    assert itl["n"] == 2999 and len(itl["samples"]) == MAX_STORED_SAMPLES and "of 2999" in itl["samples_stored"]
    gaps = sorted((b - a) * 1e3 for a, b in zip(chunks, chunks[1:]))
    assert itl["samples"][0] == gaps[0] and itl["samples"][-1] == gaps[-1]
    assert stat(itl["samples"])["median"] == pytest.approx(itl["median"], rel=0.01)
    assert "samples_stored" not in m["ttft_ms"]  # one sample per request: under the cap, all kept
