"""The loads serving benchmarks apply, on one layout: a fixed concurrency (closed loop: each client sends its next
request when the last one finishes), a request rate (open loop, Poisson arrivals), or offline (every request
available at once: the most throughput the KV cache allows).

An instance runs at most `kv_capacity` sequences at once (weights + their KV within `mem_util` of HBM); requests
beyond it wait for a slot. Closed loop at concurrency C > capacity b: the instance runs b, the other C − b wait, and
by Little's law each request spends C/b of a service time (TTFT + (O−1)·TPOT at b) in the system, so it queues for
(C/b − 1) service times before its prefill. Open loop at rate λ: the concurrency B settles where B = λ · service(B)
(Little); a rate the capacity cannot serve is overloaded (the queue grows without bound). Once admitted, a request's
TTFT is the continuous-serving one (sweep.evaluate: half a step's wait, then its prefill inside a decode step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Literal, Optional

from moebench.models.config import ArchConfig
from moebench.projection.assumptions import Assumptions
from moebench.projection.device import Device
from moebench.projection.layout import Layout, kv_bytes_per_seq, memory
from moebench.projection.scenario import ServingScenario
from moebench.projection.sweep import Point, Projection, evaluate

LoadKind = Literal["concurrency", "rate", "offline"]
_UNBOUNDED = 1 << 16  # sequences: the cap where a device has no capacity figure (measured CPU roofs)


@dataclass(frozen=True)
class LoadPoint:
    """What one layout does under a load: the batch it runs (`point`), and a request's wait for a slot."""

    kind: LoadKind
    requested: Optional[float]  # concurrency, or requests/s; None offline
    point: Point  # the sequences in flight (≤ the KV capacity); at a rate below capacity, its token rates are the
    # arrivals' (λ × tokens per request), not what those sequences could serve back to back
    capacity: int  # sequences the KV cache holds
    queue_ms: Optional[float]  # mean wait before admission; None when overloaded (unbounded)

    @property
    def overloaded(self) -> bool:
        return self.queue_ms is None

    @property
    def ttft_ms(self) -> Optional[float]:
        """Time to first token under the load: the wait for a slot + the admitted request's TTFT."""
        if self.queue_ms is None:
            return None
        return self.queue_ms + self.point.ttft_ms

    def to_json(self) -> dict[str, Any]:
        return {"load": self.kind, "requested": self.requested, "batch_in_flight": self.point.batch,
                "kv_capacity_sequences": self.capacity, "queue_ms": self.queue_ms, "ttft_under_load_ms": self.ttft_ms,
                "overloaded": self.overloaded}


def kv_capacity(cfg: ArchConfig, lay: Layout, dev: Device, sc: ServingScenario, a: Assumptions) -> int:
    """Most sequences of prompt + output tokens the instance holds at once (0: the weights alone do not fit): what
    its KV cache holds, at most the engine's `max_seqs` per attention group (with DP attention each group runs its
    own scheduler and batch, as TensorRT-LLM's and SGLang's attention-DP ranks do)."""
    mem = memory(cfg, lay, sc, dev, lay.dp, a.mem_util)
    limit = _UNBOUNDED if a.max_seqs is None else a.max_seqs
    if mem.capacity_bytes is None:
        return limit * lay.dp
    per_group = math.floor((mem.capacity_bytes - mem.weights_bytes) / kv_bytes_per_seq(cfg, lay, sc))
    return min(limit, max(0, per_group)) * lay.dp


def service_ms(p: Point, sc: ServingScenario) -> float:
    """A request's time in service: its first token, then O − 1 more."""
    return p.ttft_ms + (sc.output_tokens - 1) * p.tpot_ms


def at_concurrency(cfg: ArchConfig, lay: Layout, dev: Device, sc: ServingScenario, a: Assumptions,
                   concurrency: int) -> Optional[LoadPoint]:
    """Closed loop of `concurrency` clients; None when not even one sequence fits."""
    cap = kv_capacity(cfg, lay, dev, sc, a)
    if cap < 1:
        return None
    b = min(concurrency, cap)
    p = evaluate(cfg, lay, dev, sc, a, b)
    return LoadPoint("concurrency", concurrency, p, cap, service_ms(p, sc) * (concurrency / b - 1))


def at_rate(cfg: ArchConfig, lay: Layout, dev: Device, sc: ServingScenario, a: Assumptions,
            requests_per_s: float) -> Optional[LoadPoint]:
    """Open loop at `requests_per_s`: the concurrency where arrivals and completions balance; overloaded (queue
    unbounded) when even the full KV capacity completes fewer requests per second. None when nothing fits."""
    cap = kv_capacity(cfg, lay, dev, sc, a)
    if cap < 1:
        return None
    lam = requests_per_s / 1e3  # per ms

    def settled(b: int) -> bool:  # at b in flight, completions (b / service) keep up with arrivals
        return lam * service_ms(evaluate(cfg, lay, dev, sc, a, b), sc) <= b

    if not settled(cap):
        return LoadPoint("rate", requests_per_s, evaluate(cfg, lay, dev, sc, a, cap), cap, None)
    lo, hi = 1, cap  # the smallest b that keeps up
    while lo < hi:
        mid = (lo + hi) // 2
        if settled(mid):
            hi = mid
        else:
            lo = mid + 1
    # Little gives the latencies of the b sequences in flight; the tokens served are the arrivals' (the b slots
    # idle the rest of the time), and $/M charges the whole GPU-hour to them
    served = {"input": requests_per_s * sc.prompt_tokens, "output": requests_per_s * sc.output_tokens}
    served["total"] = served["input"] + served["output"]
    return LoadPoint("rate", requests_per_s, replace(evaluate(cfg, lay, dev, sc, a, lo), rates=served), cap, 0.0)


def offline(cfg: ArchConfig, lay: Layout, dev: Device, sc: ServingScenario, a: Assumptions) -> Optional[LoadPoint]:
    """Every request available at once: the batch up to the KV capacity with the most tokens/s. Throughput rises
    with the batch (weights are read once per step for more sequences) until the KV cache is full; the two
    halvings below it are also tried, for GEMM tile quantization and per-sequence overheads."""
    cap = kv_capacity(cfg, lay, dev, sc, a)
    if cap < 1:
        return None
    batches = {max(1, cap // 4), max(1, cap // 2), cap}
    best = max((evaluate(cfg, lay, dev, sc, a, b) for b in batches), key=lambda p: p.rates["total"])
    return LoadPoint("offline", None, best, cap, 0.0)


def under_load(cfg: ArchConfig, dev: Device, sc: ServingScenario, a: Assumptions, proj: Projection, *,
               batches: Iterable[int] = (), rates: Iterable[float] = (), offline_max: bool = False) -> list[LoadPoint]:
    """The loads a report shows for the instance `proj` settles on (its fewest GPUs): each concurrency in
    `batches` that its KV cache or the engine's cap cannot hold at once (queued), each request rate, and the offline
    maximum. Each on the layout of that size that serves it best: most output tokens/s, then (a rate every layout
    keeps up with) the shortest request."""
    n = proj.min_gpus
    if n is None:
        return []
    lays = list(dict.fromkeys(p.layout for p in proj.points if p.layout.n_gpus == n))

    def best(f: Callable[[Layout], Optional[LoadPoint]]) -> Optional[LoadPoint]:
        got = [lp for lay in lays if (lp := f(lay)) is not None]
        # at a rate every layout that keeps up serves the same tokens: the one whose requests finish soonest
        return max(got, key=lambda lp: (not lp.overloaded, lp.point.rates["output"], -service_ms(lp.point, sc)),
                   default=None)

    # a concurrency queues where no layout holds it at once: beyond the KV cache, or beyond the engine's cap
    caps = [kv_capacity(cfg, lay, dev, sc, a) for lay in lays]
    rows = [best(lambda lay: at_concurrency(cfg, lay, dev, sc, a, b)) for b in batches
            if proj.for_batch(b) is None or all(c < b for c in caps)]
    rows += [best(lambda lay: at_rate(cfg, lay, dev, sc, a, r)) for r in rates]
    if offline_max:
        rows.append(best(lambda lay: offline(cfg, lay, dev, sc, a)))
    return [r for r in rows if r is not None]
