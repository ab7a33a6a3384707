"""The Kineto analyser: exact HTA numbers on hand-built traces (GPU and CPU), and a real gloo trace."""

from __future__ import annotations

import json

import pytest

from moebench.profile.clock import end_time_check
from moebench.profile.trace import analyse_traces, hta_metrics


def X(name, cat, ts, dur, pid=1, tid=1, **args):
    return {"ph": "X", "name": name, "cat": cat, "ts": ts, "dur": dur, "pid": pid, "tid": tid, "args": args}


def gpu_trace():
    """Known layout (µs): compute kernels [0,100] and [200,250]; a collective kernel [50,150] (metadata on the
    kernel); another [300,350] found only by correlation with a host record_param_comms; a memcpy [360,400].
    The kernel named like NCCL is plain compute: names are not evidence."""
    return {"distributedInfo": {"rank": 3, "backend": "nccl"}, "traceEvents": [
        X("gemm", "kernel", 0, 100, pid=0, tid=7),
        X("mystery_comm", "kernel", 50, 100, pid=0, tid=20, **{"Collective name": "all_to_allv", "Group size": 4}),
        X("ncclDevKernel_lookalike", "kernel", 200, 50, pid=0, tid=7),
        X("record_param_comms", "cpu_op", 290, 20, **{"Collective name": "allreduce"}),
        X("cudaLaunchKernel", "cuda_runtime", 295, 5, correlation=42),
        X("unnamed_kernel", "kernel", 300, 50, pid=0, tid=20, correlation=42),
        X("Memcpy DtoD", "gpu_memcpy", 360, 40, pid=0, tid=21),
        X("aten::mm", "cpu_op", -500, 10),  # host work does not widen the GPU span
    ]}


def test_exact_numbers_on_a_gpu_trace():
    m = hta_metrics(gpu_trace())
    assert m["device"] == "gpu" and m["rank"] == 3
    assert m["span_us"] == 400
    assert (m["compute_us"], m["non_compute_us"], m["idle_us"]) == (150, 140, 110)
    assert m["compute_us"] + m["non_compute_us"] + m["idle_us"] == m["span_us"]
    assert (m["comm_us"], m["overlap_us"]) == (150, 50)
    assert m["comm_comp_overlap_pct"] == pytest.approx(100 / 3)
    assert m["idle_pct"] == pytest.approx(27.5)
    assert m["collectives"] == {"all_to_allv": 1, "collective": 1}


def cpu_trace():
    """Main thread: aten::mm [0,100]; c10d::allreduce_ [100,130] with a nested aten::empty (belongs to comm);
    aten::add [150,180]. Gloo worker thread: gloo:all_reduce [110,200], overlapping the add by 30."""
    return {"distributedInfo": {"rank": 0, "backend": "gloo"}, "traceEvents": [
        X("aten::mm", "cpu_op", 0, 100),
        X("c10d::allreduce_", "cpu_op", 100, 30),
        X("aten::empty", "cpu_op", 105, 5),
        X("gloo:all_reduce", "user_annotation", 110, 90, tid=2),
        X("aten::add", "cpu_op", 150, 30),
        X("L0/attn", "user_annotation", 0, 100),  # region labels are not work
    ]}


def test_exact_numbers_on_a_cpu_trace():
    m = hta_metrics(cpu_trace())
    assert m["device"] == "cpu" and m["span_us"] == 200
    assert (m["compute_us"], m["non_compute_us"], m["idle_us"]) == (130, 70, 0)
    assert (m["comm_us"], m["overlap_us"]) == (100, 30)
    assert m["comm_comp_overlap_pct"] == pytest.approx(30)


def test_no_communication_and_unreadable_files(tmp_path):
    m = hta_metrics({"traceEvents": [X("aten::mm", "cpu_op", 0, 10), X("aten::mm", "cpu_op", 20, 10)]})
    assert (m["compute_us"], m["idle_us"], m["comm_comp_overlap_pct"]) == (20, 10, None)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "error" in analyse_traces([bad])[0]


def test_real_gloo_traces(ep):
    """The Kineto traces the 4 gloo ranks of the EP run wrote (uniform routing, inside the warm-up)."""
    _, out, _ = ep
    res = analyse_traces(sorted((out / "uniform").glob("trace_rank*.json")))
    assert [r["rank"] for r in res] == [0, 1, 2, 3]
    for r in res:
        assert "error" not in r and r["device"] == "cpu" and r["backend"] == "gloo"
        assert r["compute_us"] > 0 and r["comm_us"] > 0
        assert r["compute_pct"] + r["non_compute_pct"] + r["idle_pct"] == pytest.approx(100)
        assert 0 <= r["comm_comp_overlap_pct"] <= 100
        assert any("alltoall" in n or "all_to_all" in n for n in r["collectives"])
    # the region names line up with the profiler's: every layer phase appears as a range in the trace
    names = {e["name"] for e in json.loads((out / "uniform" / "trace_rank0.json").read_text())["traceEvents"]}
    assert {"L0/attn", "L0/router", "L0/dispatch", "L0/experts", "L0/combine", "L1/attn", "lm_head"} <= names


def test_end_time_check_flags_inconsistent_clocks():
    ok = [{"arrive_ns": [0, 5], "end_ns": [9, 9]}]
    bad = [{"arrive_ns": [0, 5], "end_ns": [9, 3]}]  # rank 1 "ended" before it arrived
    assert end_time_check(ok)["max_violation_ms"] == 0
    assert end_time_check(bad)["max_violation_ms"] == pytest.approx(2e-6)
    assert end_time_check([]) is None
