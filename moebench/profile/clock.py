"""Clock alignment across ranks: a ping-pong offset estimate with rank 0 at start, and the causality check that
collective end times give afterwards.

Ping-pong (NTP's rule): rank 0 stamps t0 and sends; rank r stamps t1 on receipt and replies; rank 0 stamps t2.
offset_r = t1 − (t0 + t2) / 2 is rank r's clock minus rank 0's, with error at most rtt / 2; the round with the
smallest rtt wins. On one host with perf_counter_ns (CLOCK_MONOTONIC) the true offset is 0, so the estimate is a
direct check of the method; across hosts it is what makes arrivals comparable.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import torch


def ping_pong_offsets(group: Any = None, rounds: int = 30) -> tuple[list[int], list[int]]:
    """(offset_ns per rank, best rtt_ns per rank), known on every rank (rank 0's entries are 0).

    Collective over `group` (all ranks must call it); uses CPU tensors, so `group` must be a gloo group."""
    import torch.distributed as dist

    world, me = dist.get_world_size(group), dist.get_rank(group)
    offsets, rtts = [0] * world, [0] * world
    buf = torch.zeros(1, dtype=torch.int64)
    peer_global = (lambda r: dist.get_global_rank(group, r)) if group is not None else (lambda r: r)
    for r in range(1, world):
        if me == 0:
            best = None
            for _ in range(rounds):
                t0 = time.perf_counter_ns()
                dist.send(buf, peer_global(r), group=group)
                dist.recv(buf, peer_global(r), group=group)
                t2 = time.perf_counter_ns()
                t1 = int(buf.item())
                rtt = t2 - t0
                if best is None or rtt < best[1]:
                    best = (t1 - (t0 + t2) // 2, rtt)
            offsets[r], rtts[r] = best
        elif me == r:
            for _ in range(rounds):
                dist.recv(buf, peer_global(0), group=group)
                buf.fill_(time.perf_counter_ns())
                dist.send(buf, peer_global(0), group=group)
    out = torch.tensor([offsets, rtts], dtype=torch.int64)
    dist.broadcast(out, peer_global(0), group=group)
    return out[0].tolist(), out[1].tolist()


def end_time_check(collectives: list[dict[str, Any]]) -> Optional[dict[str, float]]:
    """Consistency of the aligned clocks, from matched collectives (`arrive_ns`, `end_ns` lists per rank, aligned).

    No rank can finish a collective before the last rank arrived, so `last arrival − own end` > 0 means the
    offsets are wrong by at least that much. Returns the worst and the 99th-percentile violation (ms; 0 when
    consistent) and the median spread of end times across ranks (ms)."""
    if not collectives:
        return None
    viol, spread = [], []
    for c in collectives:
        last = max(c["arrive_ns"])
        viol.append(max(0, max(last - e for e in c["end_ns"])))
        spread.append(max(c["end_ns"]) - min(c["end_ns"]))
    viol.sort()
    spread.sort()
    return {
        "max_violation_ms": viol[-1] / 1e6,
        "p99_violation_ms": viol[min(len(viol) - 1, int(0.99 * len(viol)))] / 1e6,
        "median_end_spread_ms": spread[len(spread) // 2] / 1e6,
        "n": len(collectives),
    }
