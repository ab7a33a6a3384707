"""The gate's statistics on synthetic samples: factor AND significance, direction, the small-sample fallback,
and the command's exit codes."""

from __future__ import annotations

import copy
import json
import math
import random

import pytest

from moebench.errors import BadInput
from moebench.gate import (
    better, gate, judge, mann_whitney_reachable, median_ci, runs_bounds, shift_rank, significance,
)
from moebench.results import stat
from tests.report.conftest import run_main as run_cli


def noisy(n: int, centre: float, rel_sd: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [centre * math.exp(rng.gauss(0, rel_sd)) for _ in range(n)]


def test_direction_of_metrics():
    assert better("ttft_ms") == better("tpot_ms") == better("usd_per_mtok.blended") == "lower"
    assert better("decode_tokens_per_s") == better("output_tokens_per_s_per_gpu") == "higher"
    assert better("intelligence_per_usd") == better("tokens_per_mw") == "higher"
    assert better("joules_per_token") == "lower"


def test_mann_whitney_reachability_matches_exact_minimum_p():
    # two-sided exact minimum p = 2 / C(n+m, n): 6 vs 6 -> 0.00216 (not < 0.002), 7 vs 7 -> 0.00058
    assert not mann_whitney_reachable(6, 6, 0.002)
    assert mann_whitney_reachable(7, 7, 0.002)
    assert mann_whitney_reachable(20, 3, 0.002)  # 2 / C(23, 3) = 0.0011
    assert not mann_whitney_reachable(5, 5, 0.002)


def test_order_statistic_interval_needs_eight_samples_at_99_percent():
    lo, hi, how = median_ci(list(range(1, 9)))
    assert (lo, hi, how) == (1, 8, "order-statistic")  # coverage 1 - 2/256 = 0.992
    lo, hi, how = median_ci([float(x) for x in range(1, 31)])
    assert how == "order-statistic" and 1 < lo < 15.5 < hi < 30
    lo, hi, how = median_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert how == "bootstrap" and 1 <= lo <= 3 <= hi <= 5


def test_unchanged_code_raises_no_false_alarm_in_200_noisy_pairs():
    # 5% run-to-run noise (what this 2-core machine shows on the debug models), 15 repeats per side
    alarms = sum(judge(noisy(15, 10, 0.05, s), noisy(15, 10, 0.05, 1000 + s), better="lower")["status"] == "regressed"
                 for s in range(200))
    assert alarms == 0


def test_a_25_percent_slowdown_is_caught_200_times_out_of_200():
    caught = sum(judge(noisy(15, 10, 0.05, s), noisy(15, 12.5, 0.05, 1000 + s), better="lower")["status"] == "regressed"
                 for s in range(200))
    assert caught == 200


def test_slowdown_within_the_factor_is_not_a_regression_even_when_significant():
    v = judge(noisy(30, 10, 0.01, 1), noisy(30, 10.5, 0.01, 2), better="lower")
    assert v["significant"] and v["status"] == "ok" and "within" in v["reason"]


def test_large_but_insignificant_difference_is_not_a_regression():
    # two samples each, wildly noisy: 30% worse median, intervals overlap
    v = judge([10.0, 20.0], [13.0, 26.0], better="lower")
    assert v["worse_ratio"] > 1.1 and not v["significant"] and v["status"] == "ok"


def test_throughput_and_its_reciprocal_get_the_same_verdict():
    base, cur = noisy(15, 10, 0.03, 5), noisy(15, 12.5, 0.03, 6)
    by_time = judge(base, cur, better="lower")
    by_rate = judge([1000 / x for x in base], [1000 / x for x in cur], better="higher")
    assert by_time["status"] == by_rate["status"] == "regressed"
    assert by_time["worse_ratio"] == pytest.approx(by_rate["worse_ratio"], rel=1e-9)
    assert judge(cur, base, better="lower")["status"] == "improved"


def test_few_samples_fall_back_to_non_overlapping_intervals():
    sig = significance([10.0, 10.1, 9.9, 10.05, 9.95], [12.5, 12.6, 12.4, 12.55, 12.45])
    assert sig.test == "ci-bootstrap" and sig.p_value is None and sig.significant
    assert judge([10.0, 10.1, 9.9, 10.05, 9.95], [12.5, 12.6, 12.4, 12.55, 12.45], better="lower")["status"] == "regressed"
    sig = significance([float(x) for x in range(10, 19)], [float(x) for x in range(12, 21)], alpha=1e-9)
    assert sig.test == "ci-order-statistic" and not sig.significant


# ------------------------------------------------------------------------------------------------ documents
def _doc(tpot: list[float], ttft: list[float], *, hw: str = "cpu", models=("llama3:debug",), complete=True) -> dict:
    recs = []
    for m in models:
        recs.append({
            "model": m, "kind": "dense", "basis": "measured", "batch_size": 1, "prompt_tokens": 64, "output_tokens": 16,
            "metrics": {
                "ttft_ms": stat(ttft, unit="ms"), "tpot_ms": stat(tpot, unit="ms"),
                "output_tokens_per_s_per_gpu": stat([16000 / (a + 15 * b) for a, b in zip(ttft, tpot)], unit="tokens/s/gpu"),
                "usd_per_mtok": None,
            },
        })
    return {"schema_version": 2, "complete": complete, "kind": "engine", "run_id": f"r-{hw}", "workload": {"name": "t"},
            "hardware": {"id": hw, "device": "cpu", "dtype": "float32"}, "environment": {"libraries": {"torch": "2"}},
            "world_size": 1, "records": recs}


def test_gate_rows_cover_every_record_and_metric():
    base = _doc(noisy(15, 10, 0.03, 1), noisy(15, 50, 0.03, 2))
    cur = _doc(noisy(15, 10, 0.03, 3), noisy(15, 50, 0.03, 4))
    res = gate([base], [cur])
    assert not res.regressed
    assert {r.metric: r.status for r in res.rows} == {
        "ttft_ms": "ok", "tpot_ms": "ok", "output_tokens_per_s_per_gpu": "ok", "usd_per_mtok.blended": "skipped"}


def test_a_record_missing_from_the_current_run_fails_the_gate():
    base = _doc(noisy(15, 10, 0.03, 1), noisy(15, 50, 0.03, 2), models=("llama3:debug", "mixtral:debug"))
    cur = _doc(noisy(15, 10, 0.03, 3), noisy(15, 50, 0.03, 4))
    res = gate([base], [cur])
    assert res.regressed and {r.status for r in res.rows if r.model == "mixtral:debug"} == {"missing"}


def _verdicts(table: str) -> list[str]:
    """The verdict cells of a gate table (its last column), one per row."""
    return [line.split("│")[-2].strip() for line in table.splitlines() if line.startswith("│")]


def test_the_table_says_which_side_lacks_a_record(tmp_path, capsys):
    """A current run that recorded nothing: every row is missing *from the current run*; the other way round,
    records only the current run has are new, *not in the baseline*."""
    base = _doc(noisy(15, 10, 0.03, 1), noisy(15, 50, 0.03, 2), models=("llama3:debug", "mixtral:debug"))
    empty = {**_doc(noisy(15, 10, 0.03, 3), noisy(15, 50, 0.03, 4)), "records": []}
    code, out, err = run_cli(["gate", "--baseline", _write(tmp_path, "b.json", base), _write(tmp_path, "e.json", empty)],
                             capsys)
    verdicts = _verdicts(out)
    assert code == 1 and len(verdicts) == 8  # 2 records × 4 metrics
    assert "regression: 8 of 8 checks failed; 8 of them missing from the current run" in err
    assert set(verdicts) == {"missing: not in the current run (the baseline has this record)"}
    assert "missing in the baseline" not in out

    one = _doc(noisy(15, 10, 0.03, 5), noisy(15, 50, 0.03, 6))
    code, out, _ = run_cli(["gate", "--baseline", _write(tmp_path, "o.json", one), _write(tmp_path, "b.json", base)],
                           capsys)
    new = [v for v in _verdicts(out) if v.startswith("new")]
    assert code == 0 and len(new) == 4
    assert set(new) == {"new: not in the baseline (only the current run has this record)"}
    lost = _doc(noisy(15, 10, 0.03, 7), noisy(15, 50, 0.03, 8))
    lost["records"][0]["metrics"]["ttft_ms"] = None
    row = next(r for r in gate([one], [lost]).rows if r.metric == "ttft_ms")
    assert row.verdict_line() == "missing: absent or null in 1 of the current run(s) (the baseline has it)"


def test_a_metric_lost_or_broken_in_the_current_run_fails_the_gate():
    base = _doc(noisy(15, 10, 0.03, 1), noisy(15, 50, 0.03, 2))
    lost = _doc(noisy(15, 10, 0.03, 3), noisy(15, 50, 0.03, 4))
    lost["records"][0]["metrics"]["ttft_ms"] = None
    res = gate([base], [lost])
    assert res.regressed and {r.metric: r.status for r in res.rows}["ttft_ms"] == "missing"
    nan = _doc([float("nan")] * 15, noisy(15, 50, 0.03, 4))
    row = next(r for r in gate([base], [nan]).rows if r.metric == "tpot_ms")
    assert row.status == "missing" and "NaN" in row.reason
    # absent in the baseline: nothing to hold the current run to, and nothing lost
    assert {r.metric: r.status for r in gate([lost], [base]).rows}["ttft_ms"] == "skipped"
    # pooled: one current run without it fails even when another run has it
    good = _doc(noisy(15, 10, 0.03, 5), noisy(15, 50, 0.03, 6))
    row = next(r for r in gate([base], [good, lost]).rows if r.metric == "ttft_ms")
    assert row.status == "missing" and "1 of the current run(s)" in row.reason
    # one zero sample among positives (and, with several runs, 1/0 in a higher-is-better metric) fails too
    zero = _doc(noisy(15, 10, 0.03, 7), noisy(15, 50, 0.03, 8))
    zero["records"][0]["metrics"]["output_tokens_per_s_per_gpu"]["samples"][3] = 0.0
    rows = {r.metric: r for r in gate([base, base], [good, zero]).rows}
    assert rows["output_tokens_per_s_per_gpu"].status == "missing" and rows["ttft_ms"].status == "ok"


def test_the_table_shows_prompt_and_output_when_the_scenario_changed(tmp_path, capsys):
    two = ("llama3:debug", "mixtral:debug")  # one record keeps its sizes: a changed scenario, not another workload
    base = _doc(noisy(15, 10, 0.03, 1), noisy(15, 50, 0.03, 2), models=two)
    longer = _doc(noisy(15, 10, 0.03, 3), noisy(15, 50, 0.03, 4), models=two)
    longer["records"][0]["prompt_tokens"] = 128
    code, out, _ = run_cli(["gate", "--baseline", _write(tmp_path, "b.json", base), _write(tmp_path, "c.json", longer)],
                           capsys)
    assert code == 1 and "(64+16)" in out and "(128+16)" in out  # missing at 64, new at 128: told apart
    _, same, _ = run_cli(["gate", "--baseline", _write(tmp_path, "b.json", base), _write(tmp_path, "s.json", base)], capsys)
    assert "(64+16)" not in same


def test_a_named_metric_that_no_record_has_is_bad_input():
    doc = _doc(noisy(15, 10, 0.03, 1), noisy(15, 50, 0.03, 2))
    with pytest.raises(BadInput, match="--metric tpot: not a metric the gate can judge"):
        gate([doc], [doc], metrics=["tpot_ms", "tpot"])
    assert {r.metric for r in gate([doc], [doc], metrics=["tpot_ms"]).rows} == {"tpot_ms"}


def test_pooling_several_files_per_side():
    b1, b2 = _doc(noisy(4, 10, 0.02, 1), noisy(4, 50, 0.02, 2)), _doc(noisy(4, 10, 0.02, 3), noisy(4, 50, 0.02, 4))
    c1, c2 = _doc(noisy(4, 13, 0.02, 5), noisy(4, 65, 0.02, 6)), _doc(noisy(4, 13, 0.02, 7), noisy(4, 65, 0.02, 8))
    res = gate([b1, b2], [c1, c2])
    tpot = next(r for r in res.rows if r.metric == "tpot_ms")
    assert tpot.baseline_n == tpot.current_n == 8 and tpot.test == "mann-whitney" and tpot.status == "regressed"


def _drifting_runs(centres: list[float], seed: int, n: int = 10, rel_sd: float = 0.02) -> list[dict]:
    """One result file per run; each run tight around its own centre (the machine's speed during that run)."""
    return [_doc(noisy(n, c, rel_sd, seed + i), noisy(n, 5 * c, rel_sd, seed + 100 + i)) for i, c in enumerate(centres)]


def test_shift_rank_is_the_exact_mann_whitney_critical_value():
    # the k-th smallest pairwise ratio is a one-sided 95% bound when P(U <= k-1) <= 5% < P(U <= k) under the null
    # (k = 1 at least);
    # brute force over every split of n + m ranks checks the recurrence
    from itertools import combinations

    for n, m in [(1, 1), (2, 3), (3, 3), (4, 4), (5, 5), (6, 6), (3, 6)]:
        us = sorted(sum(r - i for i, r in enumerate(c)) for c in combinations(range(n + m), n))
        k = shift_rank(n, m)
        assert k == 1 or sum(u <= k - 1 for u in us) / len(us) <= 0.05
        assert sum(u <= k for u in us) / len(us) > 0.05
    assert (shift_rank(3, 3), shift_rank(6, 6), shift_rank(9, 9)) == (1, 8, 22)
    # 3 runs a side: the bounds are the extremes, current's best vs baseline's worst and vice versa
    assert runs_bounds([10, 11, 12], [13, 14, 15]) == (13 / 12, 15 / 10)


def test_whole_runs_moved_by_machine_drift_are_inconclusive_not_a_regression():
    # what the shared 2-core VM does: each process runs at its own speed; the head's three runs happen to land
    # slower, so the pooled medians differ by ~14% and Mann-Whitney on 30 vs 30 repeats calls it significant;
    # but the head's best run is no slower than the baseline's worst: the runs overlap, no regression
    base, cur = _drifting_runs([9.6, 10.0, 11.0], 1), _drifting_runs([11.0, 11.4, 11.9], 50)
    res = gate(base, cur)
    tpot = next(r for r in res.rows if r.metric == "tpot_ms")
    assert tpot.worse_ratio > 1.10 and tpot.significant and (tpot.baseline_runs, tpot.current_runs) == (3, 3)
    assert tpot.runs_ratio < 1.10 and tpot.status == "inconclusive" and "more runs" in tpot.reason
    assert not res.regressed and res.verdict == "inconclusive"
    # the same samples judged as one run a side (no run structure) would have raised the alarm
    flat = judge([x for d in base for x in d["records"][0]["metrics"]["tpot_ms"]["samples"]],
                 [x for d in cur for x in d["records"][0]["metrics"]["tpot_ms"]["samples"]], better="lower")
    assert flat["status"] == "regressed" and flat["runs_ratio"] == pytest.approx(flat["worse_ratio"])


def test_a_burst_inside_one_run_does_not_move_that_runs_speed():
    # a neighbour's burst lifts the upper half of one baseline run; the run's speed (p20) stays put, so the head,
    # 25% slower in every run, still clears the factor between the runs
    base = _drifting_runs([10, 10, 10], 3)
    spoilt = base[2]["records"][0]["metrics"]["tpot_ms"]
    spoilt["samples"] = sorted(spoilt["samples"])[:4] + [x * 1.6 for x in sorted(spoilt["samples"])[4:]]
    tpot = next(r for r in gate(base, _drifting_runs([12.5] * 3, 9)).rows if r.metric == "tpot_ms")
    assert tpot.status == "regressed" and tpot.runs_ratio > 1.10


def _drift_trial(rng, s: int, runs: int, drift: float, slowdown: float):
    d = [math.exp(rng.gauss(0, drift)) for _ in range(2 * runs)]
    base = _drifting_runs([10 * x for x in d[:runs]], s)
    return gate(base, _drifting_runs([10 * (1 + slowdown) * x for x in d[runs:]], 500 + s))


@pytest.mark.parametrize("runs, drift, min_caught", [(3, 0.02, 50), (3, 0.03, 48), (6, 0.06, 45)])
def test_a_25_percent_slowdown_clears_the_run_to_run_spread(runs, drift, min_caught):
    # runs drifting by `drift` (log-sd of each run's speed): a 25% slowdown in every head run is caught, unchanged
    # code never is; more runs buy power back when the drift grows (docs/ci-gate.md has the table)
    rng = random.Random(7)
    caught = alarms = 0
    for s in range(50):
        slowed = _drift_trial(rng, s, runs, drift, 0.25)
        caught += slowed.regressed
        alarms += _drift_trial(rng, s, runs, drift, 0.0).regressed
        assert all(r.runs_ratio < r.worse_ratio for r in slowed.rows if r.status == "regressed")
    assert caught >= min_caught and alarms == 0


def test_gate_refuses_other_hardware_and_incomplete_baselines():
    with pytest.raises(BadInput, match="different hardware"):
        gate([_doc([1.0] * 9, [2.0] * 9, hw="cpu")], [_doc([1.0] * 9, [2.0] * 9, hw="h100_sxm")])
    with pytest.raises(BadInput, match="incomplete"):
        gate([_doc([1.0] * 9, [2.0] * 9, complete=False)], [_doc([1.0] * 9, [2.0] * 9)])


def _write(tmp_path, name, doc):
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return str(p)


def test_cli_exit_codes_and_json(tmp_path, capsys):
    base = _write(tmp_path, "base.json", _doc(noisy(15, 10, 0.03, 1), noisy(15, 50, 0.03, 2)))
    same = _write(tmp_path, "same.json", _doc(noisy(15, 10, 0.03, 3), noisy(15, 50, 0.03, 4)))
    slow = _write(tmp_path, "slow.json", _doc(noisy(15, 12.5, 0.03, 3), noisy(15, 62.5, 0.03, 4)))

    code, out, err = run_cli(["gate", "--baseline", base, same], capsys)
    assert code == 0 and "tpot_ms" in out and "ok: no regression in 3 checks (1 not judged" in err

    code, out, err = run_cli(["gate", "--baseline", base, same, "--metric", "bogus"], capsys)
    assert code == 3 and out == "" and "--metric bogus" in err and err.count("\n") == 1

    code, out, err = run_cli(["gate", "--baseline", base, slow, "--json"], capsys)
    doc = json.loads(out)  # exactly one JSON document on stdout
    assert code == 1 and doc["verdict"] == "regression" and doc["counts"]["regressed"] == 3
    assert "regression: 3 of 3 checks failed" in err  # usd_per_mtok is null on both sides: not a check

    code, out, _ = run_cli(["gate", "--baseline", base, slow, "--factor", "0.3"], capsys)
    assert code == 0  # a 25% slowdown is within a 30% factor

    code, out, err = run_cli(["gate", "--baseline", str(tmp_path / "nope.json"), same], capsys)
    assert code == 3 and out == "" and err.startswith("error:") and err.count("\n") == 1


def test_a_baseline_whose_runs_disagree_is_called_out():
    calm = [_doc(noisy(10, 10, 0.02, s), noisy(10, 50, 0.02, s + 50)) for s in range(3)]
    assert not any("disagree" in n for n in gate(calm, [calm[0]]).notes)
    wild = calm[:2] + [_doc(noisy(10, 14, 0.02, 9), noisy(10, 50, 0.02, 59))]
    (note,) = [n for n in gate(wild, [calm[0]]).notes if "disagree" in n]
    assert "3 runs" in note and "llama3:debug b1 tpot_ms 4" in note


def test_a_profiled_side_is_called_out():
    """--profile times carry the profiler's overhead: gating them against plain runs compares the profiler."""
    plain = _doc(noisy(10, 10, 0.02, 1), noisy(10, 50, 0.02, 2))
    prof = copy.deepcopy(plain)
    prof["records"][0]["profile"] = {"overhead": {}}
    assert not any("profiled" in n for n in gate([plain], [copy.deepcopy(plain)]).notes)
    assert not any("profiled" in n for n in gate([prof], [copy.deepcopy(prof)]).notes)
    (note,) = [n for n in gate([plain], [prof]).notes if "profiled" in n]
    assert note.startswith("baseline not profiled, current profiled")


def test_cli_pools_folders_on_both_sides(tmp_path, capsys):
    (tmp_path / "base").mkdir()
    (tmp_path / "cur").mkdir()
    for i in range(2):
        _write(tmp_path / "base", f"b{i}.json", _doc(noisy(4, 10, 0.02, i), noisy(4, 50, 0.02, 10 + i)))
        _write(tmp_path / "cur", f"c{i}.json", _doc(noisy(4, 13, 0.02, 20 + i), noisy(4, 65, 0.02, 30 + i)))
    code, out, _ = run_cli(["gate", "--baseline", str(tmp_path / "base"), str(tmp_path / "cur"), "--json"], capsys)
    rows = {r["metric"]: r for r in json.loads(out)["rows"]}
    assert code == 1 and rows["tpot_ms"]["baseline_n"] == rows["tpot_ms"]["current_n"] == 8
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["gate", "--baseline", str(tmp_path / "empty"), str(tmp_path / "cur")], capsys)
    assert code == 3 and "no result files" in err


def _endpoint_doc(failures: list[list[float]], rates=("continuous",)) -> dict:
    """An endpoint run: one record per load level (`serving` tells rate levels apart), failure_ratio per repeat."""
    doc = _doc(noisy(6, 10, 0.03, 1), noisy(6, 50, 0.03, 2))
    doc["kind"] = "endpoint"
    proto = doc["records"][0]
    doc["records"] = []
    for serving, share in zip(rates, failures):
        rec = copy.deepcopy(proto)
        rec.update(serving=serving)
        rec["metrics"]["failure_ratio"] = stat(share, unit="fraction")
        doc["records"].append(rec)
    return doc


def test_failures_against_a_healthy_baseline_regress_by_the_points_they_rose():
    """A healthy baseline's failure ratio is 0, which no ratio can be taken of: it is judged by points."""
    base = _endpoint_doc([[0.0] * 6])
    rows = {r.metric: r for r in gate([base], [_endpoint_doc([[0.25] * 6])]).rows}
    assert rows["failure_ratio"].status == "regressed" and "points" in rows["failure_ratio"].reason
    rows = {r.metric: r for r in gate([base], [_endpoint_doc([[0.0] * 5 + [0.005]])]).rows}
    assert rows["failure_ratio"].status == "ok"  # half a point: within the tolerance
    engine = {r.metric for r in gate([_doc(noisy(6, 10, 0.03, 1), noisy(6, 50, 0.03, 2))],
                                     [_doc(noisy(6, 10, 0.03, 3), noisy(6, 50, 0.03, 4))]).rows}
    assert "failure_ratio" not in engine  # a metric engine records never carry gives no row


def test_two_rate_levels_of_one_concurrency_are_two_records():
    rates = ("continuous, rate 2/s", "continuous, rate 8/s")
    base = _endpoint_doc([[0.0] * 6, [0.0] * 6], rates)
    cur = _endpoint_doc([[0.0] * 6, [0.5] * 6], rates)
    verdicts = {(r.serving, r.metric): r.status for r in gate([base], [cur]).rows}
    assert verdicts[(rates[0], "failure_ratio")] == "ok" and verdicts[(rates[1], "failure_ratio")] == "regressed"
