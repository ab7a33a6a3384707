"""End to end at EP=4 on CPU (4 gloo ranks): hot-expert imbalance shows up as wait and is attributed to it, an
injected delay reads back as wait on the other ranks, and the step time closes.

The ranks run tests/profile/ep_harness.py (expert parallelism built from the model's own dispatcher hook; fixture
`ep` in conftest.py), one spawn for all runs: uniform and hot:0 alternate twice so both see the same machine load,
then a delay run. test_engine_profile.py runs the real engine (`moebench run --nproc 4`) once.
These are timing checks on a shared 2-core machine; the margins are wide on a quiet one (see the report).
"""

from __future__ import annotations

import contextlib
from typing import Optional

import pytest

from moebench.machine import CONTENDED_SHARE, usable_cpus
from tests.profile import ep_harness

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def timing_check(others_cores: Optional[float]):
    """A timing assertion; when it fails while the run was contended (other processes kept CONTENDED_SHARE of
    the usable cores busy, see moebench/machine.py; or that could not be measured), skip with the numbers instead:
    4 ranks on 2 cores are oversubscribed by design, and more load makes scheduling noise the signal. A machine
    left to the ranks always asserts."""
    try:
        yield
    except AssertionError as exc:
        cores = usable_cpus()
        if others_cores is None or others_cores >= CONTENDED_SHARE * cores:
            busy = "unknown" if others_cores is None else f"{others_cores:.2f}"
            pytest.skip(f"machine busy during the run (other processes kept {busy} of {cores} cores "
                        f"busy): {str(exc).splitlines()[0]}")
        raise AssertionError(f"{exc}\n(other processes kept {others_cores:.2f} of {cores} cores busy during the run)") \
            from None


def wait_per_forward(section: dict, rank: int) -> float:
    """Mean wait per timed forward (prefill and decode steps together), ms."""
    rows = [t for t in section["ranks"] if t["rank"] == rank]
    return sum(t["wait_ms"] * t["n_steps"] for t in rows) / sum(t["n_steps"] for t in rows)


def test_hot_expert_makes_the_other_ranks_wait(ep):
    res, _, busy = ep
    others = (1, 2, 3)  # EP rank 0 holds experts 0 and 1
    hot = sum(wait_per_forward(res[n], r) for n in ("hot", "hot_b") for r in others)
    uniform = sum(wait_per_forward(res[n], r) for n in ("uniform", "uniform_b") for r in others)
    with timing_check(busy):
        assert hot >= 3 * uniform, f"hot {hot:.1f} ms vs uniform {uniform:.1f} ms of wait per forward (ranks 1-3)"
    for n in ("hot", "hot_b"):
        sec = res[n]
        # Judged on prefill, where the SPEC puts the expert compute; its one decode step of 32 tokens is mostly
        # scheduling noise with 4 ranks on 2 cores (and is attributed to no one when nobody dominates).
        pre = sec["where_the_time_goes"]["prefill"]
        with timing_check(busy):  # who straggles is timing too: 4 ranks share 2 cores
            assert pre["straggler_rank"] == 0 and pre["cause"] == "imbalance", pre["text"]
        assert "expert-load imbalance" in pre["text"] and "rank 0" in pre["text"]
        worst = sec["most_imbalanced_layer"]
        assert worst["hottest_expert"] == 0 and worst["balancedness"] == pytest.approx(0.25)
        assert worst["hottest_expert_ranks"] == [0]


def test_uniform_routing_is_balanced(ep):
    res, _, _ = ep
    for n in ("uniform", "uniform_b"):
        layers = res[n]["expert_load"]["layers"]
        assert len(layers) == 2
        for layer in layers:
            assert layer["balancedness"] >= 0.9 and layer["ep_balancedness"] >= 0.9, layer
        assert [s["ranks"] for s in res[n]["expert_load"]["ep_shards"]] == [[0], [1], [2], [3]]


def test_injected_delay_reads_back_as_wait_per_layer(ep):
    res, _, busy = ep
    run = next(r for r in ep_harness.SPEC["runs"] if r["name"] == "delay")
    d, slow = run["delay_ms"], run["delay_rank"]
    sec = res["delay"]
    assert sec["straggler_rank"] == slow
    for t in sec["ranks"]:
        if t["stage"] != "decode":
            continue
        per_layer = [row["wait_ms"] for row in t["layers"] if row["layer"] is not None]
        assert len(per_layer) == 2
        for w in per_layer:
            with timing_check(busy):
                if t["rank"] == slow:
                    assert w < 0.2 * d, f"the delayed rank waits {w:.1f} ms per layer"
                else:
                    assert w == pytest.approx(d, rel=0.2), f"rank {t['rank']}: {per_layer} ms of wait per layer, d = {d}"


def test_compute_comm_idle_close_on_the_engine_step_time(ep):
    """Per rank, compute + comm + idle from the regions equals the step time the engine's own timer measured."""
    res, _, _ = ep
    for name, sec in res.items():
        for t in sec["ranks"]:
            assert abs(t["closure_error_pct"]) < 1e-6
            assert t["comm_ms"] == pytest.approx(t["wait_ms"] + t["transfer_ms"])
            if t["stage"] == "decode":
                itl = sec["engine_itl_ms"][t["rank"]]
                engine = sum(itl) / len(itl)
                parts = t["compute_ms"] + t["comm_ms"] + t["idle_ms"]
                # the engine's timer also holds what lies outside the regions (sampling, appending the token);
                # with 4 ranks on 2 cores that read 2-6% of a decode step in CI runs, so 10% here
                assert parts == pytest.approx(engine, rel=0.10), (name, t["rank"], parts, engine)


def test_side_results_overhead_energy_trace_clock(ep):
    res, out, _ = ep
    sec = res["uniform"]
    ov = sec["overhead"]
    assert ov["plain_decode_tokens_per_s"] > 0 and ov["profiled_decode_tokens_per_s"] > 0
    assert ov["basis"] == "measured"
    assert sec["energy"]["joules_per_token"] is None and sec["energy"]["tokens"] > 0  # CPU: no NVML, no error
    hta = sec["trace"]["hta"]
    assert len(hta) == 4 and all(h and "error" not in h and h["device"] == "cpu" and h["comm_us"] > 0 for h in hta)
    assert sorted(p.name for p in (out / "uniform").glob("trace_rank*.json")) == [f"trace_rank{r}.json" for r in range(4)]
    clock = sec["clock"]
    assert clock["offsets_ms"] == [0.0] * 4  # one host: one CLOCK_MONOTONIC
    for off, rtt in zip(clock["pingpong_offsets_ms"][1:], clock["pingpong_rtt_ms"][1:]):
        assert abs(off) <= rtt / 2 + 0.05
    assert clock["end_check"]["max_violation_ms"] < 1.0
