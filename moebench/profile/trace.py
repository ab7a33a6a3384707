"""Holistic-Trace-Analysis metrics computed by moebench itself from a Kineto (torch.profiler) JSON trace, so they
work on CPU (gloo) traces as well as GPU (NCCL) ones.

Definitions (HTA's, docs/measure.md), over the span from the first to the last counted event of the rank:
- temporal breakdown: compute = time covered by compute work; non-compute = time covered by communication or
  memory work and not by compute; idle = time covered by nothing. The three add up to the span.
- compute–communication overlap % = time communication and compute run together ÷ communication time.

What counts as work:
- GPU trace (it has `kernel` events): kernels, plus `gpu_memcpy` / `gpu_memset` (memory, non-compute).
  A kernel is communication when Kineto's collective metadata says so: the kernel's args carry
  "Collective name" (Kineto copies a `record_param_comms` op's metadata onto its kernels), or it was launched
  (same correlation id) from inside a host collective op. Kernel names are never used.
- CPU trace: host operators (`cpu_op`) are compute; collectives are the ops that carry collective metadata
  ("Collective name", `record_param_comms`), the c10d operator namespace (`c10d::allreduce_`, ...), and the
  process group's own work annotations (`gloo:all_to_all`, on the gloo worker threads), which gloo builds emit
  instead of `record_param_comms`. Ops nested in a collective on the same thread belong to it.
"""

from __future__ import annotations

import bisect
import gzip
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Optional

Interval = tuple[float, float]


# -- interval arithmetic (µs) ---------------------------------------------------------------------------------
def merge(intervals: Iterable[Interval]) -> list[Interval]:
    out: list[list[float]] = []
    for s, e in sorted(intervals):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def length(merged: Iterable[Interval]) -> float:
    return sum(e - s for s, e in merged)


def intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    """Intersection of two merged (sorted, disjoint) interval lists."""
    i = j = 0
    out = []
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


# -- trace reading ---------------------------------------------------------------------------------------------
def load_trace(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt") as f:
        return json.load(f)


def _args(ev: dict) -> dict:
    return ev.get("args") or {}


def is_collective_op(ev: dict) -> bool:
    """A host-side collective by Kineto / c10d metadata (see the module docstring)."""
    name = ev.get("name", "")
    a = _args(ev)
    if "Collective name" in a or name == "record_param_comms":
        return True
    if ev.get("cat") == "cpu_op" and name.startswith("c10d::"):
        return True
    return ev.get("cat") == "user_annotation" and name.startswith(("gloo:", "nccl:", "ucc:", "mpi:"))


def _span(ev: dict) -> Interval:
    ts = float(ev["ts"])
    return ts, ts + float(ev.get("dur", 0.0))


def _breakdown(compute: list[Interval], comm: list[Interval], memory: list[Interval]) -> dict[str, float]:
    comp = merge(compute)
    comm_m = merge(comm)
    noncomp = merge(comm + memory)
    work = merge(compute + comm + memory)
    if not work:
        return {"span_us": 0.0, "compute_us": 0.0, "non_compute_us": 0.0, "idle_us": 0.0, "comm_us": 0.0,
                "overlap_us": 0.0, "compute_pct": None, "non_compute_pct": None, "idle_pct": None,
                "comm_comp_overlap_pct": None}
    span = work[-1][1] - work[0][0]
    c = length(comp)
    nc = length(noncomp) - length(intersect(noncomp, comp))
    idle = span - length(work)
    cm = length(comm_m)
    ov = length(intersect(comm_m, comp))
    return {
        "span_us": span, "compute_us": c, "non_compute_us": nc, "idle_us": idle, "comm_us": cm, "overlap_us": ov,
        "compute_pct": 100 * c / span if span else None,
        "non_compute_pct": 100 * nc / span if span else None,
        "idle_pct": 100 * idle / span if span else None,
        "comm_comp_overlap_pct": 100 * ov / cm if cm else None,
    }


def _gpu(events: list[dict]) -> dict[str, Any]:
    # host collective ops per thread, to catch kernels launched from inside them (correlation ids)
    coll_by_thread: dict[tuple, list[Interval]] = defaultdict(list)
    for ev in events:
        if ev.get("cat") in ("cpu_op", "user_annotation") and is_collective_op(ev):
            coll_by_thread[(ev.get("pid"), ev.get("tid"))].append(_span(ev))
    merged = {k: merge(v) for k, v in coll_by_thread.items()}
    comm_corr = set()
    for ev in events:
        if ev.get("cat") in ("cuda_runtime", "cuda_driver", "privateuse1_runtime"):
            iv = merged.get((ev.get("pid"), ev.get("tid")))
            if iv and _inside(iv, _span(ev)):
                comm_corr.add(_args(ev).get("correlation"))
    compute, comm, memory, names = [], [], [], Counter()
    for ev in events:
        cat = ev.get("cat")
        if cat == "kernel":
            a = _args(ev)
            if "Collective name" in a or (a.get("correlation") is not None and a.get("correlation") in comm_corr):
                comm.append(_span(ev))
                names[a.get("Collective name", "collective")] += 1
            else:
                compute.append(_span(ev))
        elif cat in ("gpu_memcpy", "gpu_memset"):
            memory.append(_span(ev))
    return {"device": "gpu", **_breakdown(compute, comm, memory), "collectives": dict(names)}


def _inside(merged: list[Interval], iv: Interval) -> bool:
    """Whether interval iv lies inside one interval of a merged list."""
    i = bisect.bisect_right(merged, (iv[0], float("inf"))) - 1
    return i >= 0 and merged[i][0] <= iv[0] and iv[1] <= merged[i][1]


def _cpu(events: list[dict]) -> dict[str, Any]:
    coll, names = [], Counter()
    coll_by_thread: dict[tuple, list[Interval]] = defaultdict(list)
    for ev in events:
        if ev.get("ph") == "X" and is_collective_op(ev):
            iv = _span(ev)
            coll.append(iv)
            coll_by_thread[(ev.get("pid"), ev.get("tid"))].append(iv)
            names[_args(ev).get("Collective name") or ev["name"]] += 1
    merged = {k: merge(v) for k, v in coll_by_thread.items()}
    compute = []
    for ev in events:
        if ev.get("ph") != "X" or ev.get("cat") != "cpu_op" or is_collective_op(ev):
            continue
        iv = _span(ev)
        mine = merged.get((ev.get("pid"), ev.get("tid")))
        if mine and _inside(mine, iv):
            continue  # bookkeeping inside a collective call is communication time
        compute.append(iv)
    return {"device": "cpu", **_breakdown(compute, coll, []), "collectives": dict(names)}


def hta_metrics(trace: dict[str, Any] | str | Path) -> dict[str, Any]:
    """Temporal breakdown and compute–communication overlap of one rank's trace (µs and %)."""
    doc = trace if isinstance(trace, dict) else load_trace(trace)
    events = [e for e in doc.get("traceEvents", []) if e.get("ph") == "X" and "ts" in e]
    info = doc.get("distributedInfo") or {}
    gpu = any(e.get("cat") == "kernel" for e in events)
    out = _gpu(events) if gpu else _cpu(events)
    return {"rank": info.get("rank"), "backend": info.get("backend"), **out}


def analyse_traces(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """`hta_metrics` for each trace file, with its path; a file that cannot be read gets an `error` entry."""
    out = []
    for p in paths:
        try:
            out.append({"path": str(p), **hta_metrics(p)})
        except (OSError, ValueError, KeyError) as exc:
            out.append({"path": str(p), "error": f"{type(exc).__name__}: {exc}"})
    return out


def main(argv: Optional[list[str]] = None) -> None:
    """`python -m moebench.profile.trace TRACE.json ...` prints the metrics as JSON."""
    import sys

    print(json.dumps(analyse_traces(argv if argv is not None else sys.argv[1:]), indent=2))


if __name__ == "__main__":
    main()
