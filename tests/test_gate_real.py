"""The gate on real measured samples — the committed CPU baseline (results/baselines/cpu-ci-gate/) — perturbed
after the fact. This is the fast stand-in for tests/test_gate_e2e.py (real runs, minutes): it checks the
statistics against the shape real timing samples have (skew, outliers, ties in derived metrics), not the engine.

- unchanged: "current" runs are bootstrap resamples of the baseline's own samples (no change by construction):
  10 of 10 pass;
- slowed: the same resamples with every time × 1.25 (rates ÷ 1.25, costs × 1.25, as a 25% slower run would
  record them): 10 of 10 fail.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest

from moebench.gate import gate
from moebench.results import load_result, stat

BASELINE = Path(__file__).resolve().parents[1] / "results" / "baselines" / "cpu-ci-gate"


def _scale(name: str, k: float) -> float:
    """How a metric moves when every timed region takes k times as long."""
    if name.endswith("_ms") or name.startswith("usd_per_mtok") or name == "joules_per_token":
        return k
    return 1.0 / k  # rates: tokens/s, interactivity, tokens per MW, intelligence per $


def _stats(m: dict[str, Any]):
    """(name, statistic) for every statistic of a record's metrics, nested cost ones as `usd_per_mtok.<kind>`."""
    for name, st in m.items():
        if name == "usd_per_mtok":
            yield from ((f"usd_per_mtok.{k}", v) for k, v in (st or {}).items())
        elif isinstance(st, dict) and "samples" in st:
            yield name, st


def pooled(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """One document whose samples are those of all `docs` (same workload) concatenated, repeat by repeat."""
    out = copy.deepcopy(docs[0])
    for i, rec in enumerate(out["records"]):
        for name, st in _stats(rec["metrics"]):
            others = [dict(_stats(d["records"][i]["metrics"]))[name] for d in docs[1:]]
            st["samples"] = st["samples"] + [x for o in others for x in o["samples"]]
    return out


def perturbed(doc: dict[str, Any], *, seed: int, slowdown: float = 1.0, n: int = 10) -> dict[str, Any]:
    """A run of `n` repeats drawn from `doc`'s samples (seeded bootstrap; the same repeats for every metric of a
    record, so derived metrics stay consistent), scaled as a `slowdown`× slower run would record them.
    (`itl_ms` has one sample per decode step, not per repeat: it is drawn on its own.)"""
    rng = random.Random(seed)
    out = copy.deepcopy(doc)
    for rec in out["records"]:
        m = rec["metrics"]
        repeats = len(m["ttft_ms"]["samples"])
        idx = [rng.randrange(repeats) for _ in range(n)]
        for name, st in list(_stats(m)):
            xs = st["samples"]
            pick = [xs[i] for i in idx] if len(xs) == repeats else [rng.choice(xs) for _ in range(n)]
            new = stat([x * _scale(name, slowdown) for x in pick], st["basis"], st["unit"])
            if name.startswith("usd_per_mtok."):
                m["usd_per_mtok"][name.split(".", 1)[1]] = new
            else:
                m[name] = new
    return out


@pytest.fixture(scope="module")
def baseline() -> list[dict[str, Any]]:
    files = sorted(BASELINE.glob("*.json"))
    if not files:
        pytest.skip(f"no committed baseline in {BASELINE}")
    return [load_result(p) for p in files]


def test_committed_baseline_is_usable(baseline):
    assert all(d["complete"] and d["hardware"]["id"] == "cpu" for d in baseline)
    assert all(r["metrics"]["tpot_ms"]["n"] >= 7 for d in baseline for r in d["records"])  # Mann-Whitney reachable


def test_resampled_unchanged_runs_never_regress(baseline):
    pool = pooled(baseline)
    verdicts = [gate(baseline, [perturbed(pool, seed=s)]) for s in range(10)]
    assert sum(v.regressed for v in verdicts) == 0, [
        [(r.model, r.batch_size, r.metric, r.worse_ratio) for r in v.rows if r.status == "regressed"] for v in verdicts]


def test_resampled_runs_25_percent_slower_are_always_caught(baseline):
    pool = pooled(baseline)
    verdicts = [gate(baseline, [perturbed(pool, seed=s, slowdown=1.25)]) for s in range(10)]
    assert sum(v.regressed for v in verdicts) == 10
    for v in verdicts:  # caught on most records each time, not by one lucky metric
        caught = {(r.model, r.batch_size) for r in v.rows if r.status == "regressed"}
        assert len(caught) >= len({(r.model, r.batch_size) for r in v.rows}) / 2


def test_perturbation_keeps_derived_metrics_consistent(baseline):
    pool = pooled(baseline)
    d = perturbed(pool, seed=3, slowdown=1.25)
    for rec, orig in zip(d["records"], pool["records"]):
        m, o = rec["metrics"], orig["metrics"]
        for a, b in zip(m["tpot_ms"]["samples"], m["decode_tokens_per_s"]["samples"]):
            assert a * b == pytest.approx(rec["batch_size"] * 1e3, rel=1e-9)
        assert set(m["tpot_ms"]["samples"]) <= {x * 1.25 for x in o["tpot_ms"]["samples"]}
