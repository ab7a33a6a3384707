"""Wait / transfer / idle arithmetic on synthetic timelines with known clock offsets, and the attribution."""

from __future__ import annotations

import pytest

from moebench.profile.analysis import match_collectives, rank_tables, union_ns
from moebench.profile.recorder import COMM, COMPUTE, Step
from moebench.profile.summary import summarize

MS = 1_000_000


def rec(name, kind, t0_ms, t1_ms, shift_ms=0.0, excl_ms=None):
    a, b = int((t0_ms + shift_ms) * MS), int((t1_ms + shift_ms) * MS)
    return (name, kind, a, b, int(excl_ms * MS) if excl_ms is not None else b - a)


def two_rank_steps(shift_ms: float = 1.0) -> dict[int, list[Step]]:
    """Rank 1's clock runs `shift_ms` ahead of rank 0's; true timeline (ms):
    rank 0: attn 0-2, dispatch 2-5, experts 5-7, combine 7-9, idle 9-10
    rank 1: attn 0-3, dispatch 3-5, experts 5-8, combine 8-9, idle 9-10"""
    r0 = Step(0, "decode", 4, 0, 10 * MS, [
        rec("L0/attn", COMPUTE, 0, 2), rec("L0/dispatch", COMM, 2, 5),
        rec("L0/experts", COMPUTE, 5, 7), rec("L0/combine", COMM, 7, 9)])
    s = shift_ms
    r1 = Step(0, "decode", 4, int(s * MS), int((10 + s) * MS), [
        rec("L0/attn", COMPUTE, 0, 3, s), rec("L0/dispatch", COMM, 3, 5, s),
        rec("L0/experts", COMPUTE, 5, 8, s), rec("L0/combine", COMM, 8, 9, s)])
    return {0: [r0], 1: [r1]}


def by_rank(tables):
    return {t["rank"]: t for t in tables if t["stage"] == "decode"}


def test_wait_and_transfer_with_clock_offset():
    steps = two_rank_steps(shift_ms=1.0)
    calls = match_collectives(steps, {0: 0, 1: 1 * MS})
    assert [c["name"] for c in calls] == ["L0/dispatch", "L0/combine"]
    assert calls[0]["wait_ns"] == [1 * MS, 0] and calls[0]["transfer_ns"] == [2 * MS, 2 * MS]
    assert calls[1]["wait_ns"] == [1 * MS, 0] and calls[1]["transfer_ns"] == [1 * MS, 1 * MS]
    assert all(c["last"] == 1 for c in calls)
    t = by_rank(rank_tables(steps, calls))
    r0, r1 = t[0], t[1]
    assert (r0["compute_ms"], r0["comm_ms"], r0["wait_ms"], r0["transfer_ms"], r0["idle_ms"]) == pytest.approx(
        (4, 5, 2, 3, 1))
    assert (r1["compute_ms"], r1["comm_ms"], r1["wait_ms"], r1["transfer_ms"], r1["idle_ms"]) == pytest.approx(
        (6, 3, 0, 3, 1))
    assert r0["step_ms"] == pytest.approx(10) and r0["closure_error_pct"] == pytest.approx(0)
    assert r1["caused_wait_ms"] == pytest.approx(2) and r0["caused_wait_ms"] == 0
    layer0 = r0["layers"][0]
    assert layer0["phases"]["dispatch"] == pytest.approx({"comm_ms": 3, "wait_ms": 1, "transfer_ms": 2})
    assert layer0["phases"]["attn"] == pytest.approx({"compute_ms": 2})


def test_ignoring_the_offset_misattributes_wait():
    steps = two_rank_steps(shift_ms=1.0)
    calls = match_collectives(steps, {0: 0, 1: 0})
    assert calls[0]["wait_ns"][0] == 2 * MS  # rank 1 looks 1 ms later than it was


def test_wait_is_clamped_to_the_call():
    """A clock error larger than the call cannot produce more wait than the call lasted."""
    steps = two_rank_steps(shift_ms=1.0)
    calls = match_collectives(steps, {0: 0, 1: -5 * MS})
    assert calls[0]["wait_ns"][0] == 3 * MS and calls[0]["transfer_ns"][0] == 0


def test_nested_collective_is_not_compute():
    """A tensor-parallel all-reduce inside `L0/attn`: attn keeps only its exclusive time."""
    st = Step(0, "decode", 1, 0, 4 * MS, [
        rec("L0/allreduce", COMM, 0.5, 1.5), rec("L0/attn", COMPUTE, 0, 2, excl_ms=1.0), rec("lm_head", COMPUTE, 2, 3)])
    t = rank_tables({0: [st]}, [])[0]
    assert (t["compute_ms"], t["comm_ms"], t["idle_ms"]) == pytest.approx((2, 1, 1))
    assert t["unmatched_comm_ms"] == pytest.approx(1)  # no peers: reported, counted as transfer
    assert t["layers"][-1]["name"] == "lm_head"


def test_peer_groups_match_separately():
    """Two EP groups issue collectives with the same names; each is split within its own group."""
    def st(arrive_ms):
        return [Step(0, "decode", 1, 0, 10 * MS, [rec("L0/dispatch", COMM, arrive_ms, 6)])]
    steps = {0: st(1), 1: st(2), 2: st(3), 3: st(5)}
    peers = {0: (0, 1), 1: (0, 1), 2: (2, 3), 3: (2, 3)}
    calls = match_collectives(steps, {}, peers)
    waits = {r: w for c in calls for r, w in zip(c["ranks"], c["wait_ns"])}
    assert waits == {0: 1 * MS, 1: 0, 2: 2 * MS, 3: 0}


def test_untimed_steps_are_left_out_and_union_handles_overlap():
    warm = Step(0, "decode", 1, 0, 100 * MS, [rec("L0/attn", COMPUTE, 0, 100)], timed=False)
    timed = Step(1, "prefill", 8, 0, 10 * MS, [rec("L0/attn", COMPUTE, 0, 4), rec("L0/experts", COMPUTE, 3, 6)])
    t = rank_tables({0: [warm, timed]}, [])
    assert [x["stage"] for x in t] == ["prefill"] and t[0]["idle_ms"] == pytest.approx(4)
    assert union_ns([(0, 4), (3, 6), (8, 9)]) == 7


def four_ranks(slow_rank: int, load_hot: bool):
    """Rank `slow_rank` computes 5 ms longer in experts; the others wait for it at combine."""
    ranks = []
    for r in range(4):
        extra = 5 if r == slow_rank else 0
        s = Step(0, "decode", 8, 0, (12 + 5) * MS, [
            rec("L0/attn", COMPUTE, 0, 2), rec("L0/dispatch", COMM, 2, 3),
            rec("L0/experts", COMPUTE, 3, 5 + extra), rec("L0/combine", COMM, 5 + extra, 11 + 5)])
        load = [[100, 100, 10, 10, 10, 10, 10, 10]] if load_hot else [[25] * 8]
        ranks.append({"rank": r, "steps": [s], "load_total": load, "shard": (2 * r, 2)})
    return ranks


def test_attribution_to_expert_imbalance():
    sec = summarize(four_ranks(0, load_hot=True), routing="hot:0")
    w = sec["where_the_time_goes"]["decode"]
    assert w["cause"] == "imbalance" and sec["straggler_rank"] == 0
    assert "expert-load imbalance" in sec["attribution"] and "L0" in sec["attribution"]
    worst = sec["most_imbalanced_layer"]
    assert worst["hottest_expert"] == 0 and worst["hottest_expert_ranks"] == [0]
    assert worst["balancedness"] == pytest.approx((4 * 260 / 8) / 400)
    assert sec["expert_load"]["layers"][0]["tokens_per_ep_rank"] == [800, 80, 80, 80]
    rows = {t["rank"]: t for t in sec["ranks"]}
    assert rows[1]["wait_ms"] == pytest.approx(5) and rows[0]["wait_ms"] == 0


def test_imbalance_held_by_several_ranks_is_still_imbalance():
    """data 2 x expert 2: ranks 0 and 2 both hold the hot shard and split the wait they cause (5 ms each):
    neither dominates alone, the pair does."""
    ranks = []
    for r in range(4):
        extra = 5 if r in (0, 2) else 0
        s = Step(0, "decode", 8, 0, 17 * MS, [
            rec("L0/experts", COMPUTE, 0, 2 + extra), rec("L0/combine", COMM, 2 + extra, 16)])
        ranks.append({"rank": r, "steps": [s], "peers": (0, 1) if r in (0, 1) else (2, 3),
                      "load_total": [[100, 100, 10, 10, 10, 10, 10, 10]], "shard": (0, 4) if r in (0, 2) else (4, 4)})
    sec = summarize(ranks, routing="hot:0")
    assert [t["caused_wait_ms"] for t in sec["ranks"]] == pytest.approx([5, 0, 5, 0])
    assert sec["most_imbalanced_layer"]["hottest_expert_ranks"] == [0, 2]
    w = sec["where_the_time_goes"]["decode"]
    assert w["cause"] == "imbalance" and w["straggler_rank"] == 0 and "on ranks 0, 2 is hot" in w["text"]


def test_attribution_to_a_straggler_when_load_is_even():
    sec = summarize(four_ranks(2, load_hot=False), routing="uniform")
    assert sec["where_the_time_goes"]["decode"]["cause"] == "straggler"
    assert sec["straggler_rank"] == 2 and "straggler rank 2" in sec["attribution"]
    assert "compute +5.00 ms/step" in sec["attribution"] and "explains" not in sec["attribution"]  # all of it
    assert sec["most_imbalanced_layer"]["balancedness"] == pytest.approx(1.0)


def test_a_straggler_whose_extra_compute_explains_little_is_called_so():
    """Rank 1 computes 0.5 ms more but starts its experts 4.5 ms late: the others wait 5 ms, a tenth of it compute."""
    ranks = []
    for r in range(3):
        gap, extra = (4.5, 0.5) if r == 1 else (0, 0)
        s = Step(0, "decode", 8, 0, 17 * MS, [
            rec("L0/attn", COMPUTE, 0, 2), rec("L0/experts", COMPUTE, 2 + gap, 4 + gap + extra),
            rec("L0/combine", COMM, 4 + gap + extra, 16)])
        ranks.append({"rank": r, "steps": [s]})
    sec = summarize(ranks)
    assert sec["straggler_rank"] == 1
    assert "explains 10% of the 5.00 ms/step the others wait for it" in sec["attribution"]


def test_wait_spread_over_ranks_names_no_straggler():
    """Each rank arrives last at one of four collectives, equally late: nobody dominates the caused wait."""
    ranks = []
    for r in range(4):
        recs, t = [], 0
        for layer in range(4):
            extra = 3 if layer == r else 0
            recs += [rec(f"L{layer}/experts", COMPUTE, t, t + 2 + extra),
                     rec(f"L{layer}/combine", COMM, t + 2 + extra, t + 6)]
            t += 6
        ranks.append({"rank": r, "steps": [Step(0, "decode", 8, 0, t * MS, recs)]})
    sec = summarize(ranks)
    w = sec["where_the_time_goes"]["decode"]
    assert w["cause"] == "spread" and sec["straggler_rank"] is None
    assert "no rank causes most of it" in w["text"] and "25%" in w["text"]
    assert [t["caused_wait_ms"] for t in sec["ranks"]] == pytest.approx([9] * 4)  # 3 ranks x 3 ms, once per rank


def test_a_late_rank_that_computes_no_more_is_called_so():
    """Rank 2 starts its experts 5 ms late (idle, not compute): a straggler, but not because of its compute."""
    ranks = []
    for r in range(4):
        gap = 5 if r == 2 else 0
        s = Step(0, "decode", 8, 0, 17 * MS, [
            rec("L0/attn", COMPUTE, 0, 2), rec("L0/experts", COMPUTE, 2 + gap, 4 + gap),
            rec("L0/combine", COMM, 4 + gap, 16)])
        ranks.append({"rank": r, "steps": [s]})
    sec = summarize(ranks)
    assert sec["straggler_rank"] == 2 and sec["where_the_time_goes"]["decode"]["cause"] == "straggler"
    assert "compute +0.00 ms/step" in sec["attribution"] and "without computing more" in sec["attribution"]
    assert {t["rank"]: t["idle_ms"] for t in sec["ranks"]}[2] == pytest.approx(5 + 1)


def test_summary_renders():
    from rich.console import Console

    from moebench.profile.summary import render_summary

    sec = summarize(four_ranks(0, load_hot=True), routing="hot:0")
    con = Console(record=True, width=140)
    con.print(render_summary(sec, title="mixtral:debug"))
    text = con.export_text()
    assert "where the time goes" in text and "most imbalanced layer: L0" in text and "straggler rank (decode): 0" in text


def test_peers_can_differ_by_phase():
    """EP over all 4 ranks for dispatch, tensor-parallel pairs for allreduce."""
    def st(dispatch_ms, allreduce_ms):
        return [Step(0, "decode", 1, 0, 20 * MS, [rec("L0/allreduce", COMM, allreduce_ms, 10),
                                                   rec("L0/dispatch", COMM, dispatch_ms, 19)])]
    steps = {0: st(11, 1), 1: st(12, 2), 2: st(13, 4), 3: st(15, 7)}
    tp = {0: (0, 1), 1: (0, 1), 2: (2, 3), 3: (2, 3)}
    peers = {r: {"*": (0, 1, 2, 3), "allreduce": tp[r]} for r in steps}
    calls = match_collectives(steps, {}, peers)
    ar = {r: w for c in calls if c["name"] == "L0/allreduce" for r, w in zip(c["ranks"], c["wait_ns"])}
    dp = {r: w for c in calls if c["name"] == "L0/dispatch" for r, w in zip(c["ranks"], c["wait_ns"])}
    assert ar == {0: 1 * MS, 1: 0, 2: 3 * MS, 3: 0}
    assert dp == {0: 4 * MS, 1: 3 * MS, 2: 2 * MS, 3: 0}


def test_the_ranks_of_a_tensor_parallel_group_route_the_same_tokens_once():
    """EP2 x TP2: ranks 0,1 and 2,3 each route one batch slice; summing all four counted every token twice."""
    from moebench.profile.summary import expert_load

    ranks = [{"rank": r, "steps": [], "token_slice": r // 2, "load_total": [[3, 1, 0, 0] if r < 2 else [0, 0, 2, 2]],
              "shard": (0, 2) if r % 2 == 0 else (2, 2)} for r in range(4)]
    [layer] = expert_load(ranks)["layers"]
    assert layer["tokens_per_expert"] == [3, 1, 2, 2]  # 8 routed slots, not 16
    old = [{k: v for k, v in rk.items() if k != "token_slice"} for rk in ranks]  # each rank its own slice
    assert expert_load(old)["layers"][0]["tokens_per_expert"] == [6, 2, 4, 4]
