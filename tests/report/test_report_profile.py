"""The report reads the profiler's per-rank, per-layer times and expert load (and says when there are none)."""

from __future__ import annotations

from moebench.report.profile_view import breakdowns, expert_loads


def test_breakdown_per_rank_and_layer(doc_factory):
    d = doc_factory("h100_sxm", "H100", 2.5, 1.0, profile=True)
    (b,) = breakdowns(d)
    assert b["title"] == "mixtral:8x7b · batch 8"
    assert [(r["rank"], r["layer"]) for r in b["layers"]][:3] == [(0, "L0"), (0, "L1"), (0, "L2")]
    r1 = next(r for r in b["layers"] if r["rank"] == 1 and r["layer"] == "L2")
    assert r1["compute_ms"] == 1.2 and r1["wait_ms"] == 0.3 and r1["transfer_ms"] == 0.5


def test_transfer_falls_back_to_comm_minus_wait_and_mappings_work():
    d = {"records": [], "profile": {"ranks": {"0": {"layers": {"L0": {"compute_ms": 2.0, "comm_ms": 1.0, "wait_ms": 0.25}}}}}}
    (b,) = breakdowns(d)
    assert b["layers"] == [{"rank": 0, "layer": "L0", "compute_ms": 2.0, "comm_ms": 1.0, "wait_ms": 0.25,
                            "transfer_ms": 0.75, "idle_ms": None}]


def test_expert_load_matrix(doc_factory):
    d = doc_factory("h100_sxm", "H100", 2.5, 1.0, profile=True)
    (e,) = expert_loads(d)
    assert len(e["tokens_LE"]) == 4 and len(e["tokens_LE"][0]) == 8 and e["balancedness"] == 0.62


def test_no_profile_gives_nothing(doc_factory):
    d = doc_factory("h100_sxm", "H100", 2.5, 1.0)
    assert breakdowns(d) == [] and expert_loads(d) == []
