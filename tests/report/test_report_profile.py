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


def test_reads_the_section_the_profiler_writes():
    """A `profile` section made by moebench.profile.summary.summarize itself (4 ranks, rank 0 slow in experts,
    every token to experts 0-1), placed on a record: the report finds per-rank layer rows and the load matrix."""
    from moebench.profile.recorder import COMM, COMPUTE, Step
    from moebench.profile.summary import summarize

    ms = 1_000_000

    def rec(name, kind, a, b):
        return (name, kind, a * ms, b * ms, (b - a) * ms)

    ranks = []
    for r in range(4):
        extra = 5 if r == 0 else 0
        step = Step(0, "decode", 8, 0, 17 * ms, [
            rec("L0/attn", COMPUTE, 0, 2), rec("L0/dispatch", COMM, 2, 3),
            rec("L0/experts", COMPUTE, 3, 5 + extra), rec("L0/combine", COMM, 5 + extra, 16)])
        ranks.append({"rank": r, "steps": [step], "load_total": [[100, 100, 10, 10, 10, 10, 10, 10]],
                      "shard": (2 * r, 2)})
    section = summarize(ranks, routing="hot:0")
    doc = {"records": [{"model": "mixtral:debug", "batch_size": 8, "profile": section}]}

    (b,) = breakdowns(doc)
    assert b["title"] == "mixtral:debug · batch 8 · decode"
    assert [(r["rank"], r["layer"]) for r in b["layers"]] == [(r, lay) for r in range(4) for lay in ("L0", "idle")]
    # idle is the rank's step time outside every region (17 ms step, regions end at 16 ms): its own bar
    idle = [r for r in b["layers"] if r["layer"] == "idle"]
    assert all(r["idle_ms"] == 1.0 and r["compute_ms"] is None and r["wait_ms"] is None for r in idle)
    waits = {r["rank"]: r["wait_ms"] for r in b["layers"] if r["layer"] == "L0"}
    assert waits[1] > 4.9 and waits[0] < 0.1  # the others wait ~5 ms for rank 0
    (e,) = expert_loads(doc)
    assert e["tokens_LE"] == [[400.0, 400.0, 40.0, 40.0, 40.0, 40.0, 40.0, 40.0]] and e["layer_labels"] == ["L0"]
    assert 0 < e["balancedness"] < 0.5
