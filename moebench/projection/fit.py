"""Fit the efficiency presets (presets.py) to published measurements and measure the error on held-out ones.

A `Measurement` is one published number under its conditions (model, hardware, GPUs and layout, formats, lengths,
load, engine). `predict` runs the projection under those conditions with a table of factors; `fit` chooses the
factors that minimise Σ log²(projected / measured) over the `fit` points, each factor pulled weakly towards its
prior (a tenth of a point's weight per e-fold) so that a factor no point constrains stays at its prior; `held_out`
then scores the `holdout` points, which the fit never saw.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Optional, Sequence

from moebench.models.config import ArchConfig
from moebench.projection.assumptions import Assumptions
from moebench.projection.device import Device
from moebench.projection.layout import Layout
from moebench.projection.load import LoadPoint, at_concurrency, at_rate, kv_capacity, offline
from moebench.projection.presets import HeldOut, Presets, band_of
from moebench.projection.scenario import LengthMoments, ServingScenario
from moebench.projection.cost import step
from moebench.projection.sweep import evaluate

# metric -> True when a larger number is better (throughput), False when smaller is (latency)
METRICS = {"tpot_ms": False, "ttft_ms": False, "request_latency_s": False, "total_tokens_per_s_per_gpu": True,
           "output_tokens_per_s_per_gpu": True, "decode_tokens_per_s_per_gpu": True,
           "interactivity_tokens_per_s_per_user": True}
# concurrency: continuous serving, closed loop; static_batch: one batch prefilled then decoded (a latency benchmark);
# decode_*: a disaggregated decode pool at a batch per GPU, or at the most batch an interactivity allows
LOADS = ("concurrency", "rate", "offline", "static_batch", "decode_batch_per_gpu", "decode_interactivity")


@dataclass(frozen=True)
class Measurement:
    id: str
    model: str
    device: Device
    engine: str
    layout: Layout
    prompt: int
    output: int
    weight_dtype: str
    kv_dtype: str
    load: str  # one of LOADS
    load_value: Optional[float]  # concurrency, requests/s, decode batch per GPU, or tok/s/user
    metric: str  # one of METRICS
    value: float
    split: str  # fit | holdout
    source_group: str = ""
    comm_overlap: float = 0.0
    spec_tokens: int = 0
    spec_accept: float = 0.0
    mem_util: float = 0.9
    kind: str = "dense"  # dense | moe
    eager: bool = False  # run without CUDA/HIP graphs: the host issues every op (presets' eager.host_us)
    headline: bool = True  # the point's main number (its throughput); False: a secondary one (TPOT)
    lengths: Optional[LengthMoments] = None  # a length distribution (prompt/output are then its means)
    max_seqs: Optional[int] = None  # the engine's published cap on sequences in flight (else its preset's)

    @property
    def precision(self) -> str:
        return self.weight_dtype


@dataclass(frozen=True)
class Param:
    prior: float
    lo: float
    hi: float


def base_assumptions(m: Measurement) -> Assumptions:
    return Assumptions(comm_overlap=m.comm_overlap, spec_tokens=m.spec_tokens, spec_accept=m.spec_accept,
                       mem_util=m.mem_util)


def predict(m: Measurement, cfg: ArchConfig, presets: Presets) -> Optional[float]:
    """The projected value of `m.metric` under `m`'s conditions; None where the deployment does not fit. A fit
    stack's own factor (`source.<group>/<engine>` in the table) applies to its points; held-out sources have none."""
    return _with_source(m, _projected(m, cfg, presets), presets)


def conditions(m: Measurement, presets: Presets) -> tuple[Assumptions, ServingScenario]:
    """The assumptions and scenario `m` is projected under: the presets for its device and engine, its published
    sequence cap and memory share, the eager host time where it ran without graphs, its lengths."""
    a = presets.assumptions(m.device, m.engine, base_assumptions(m))
    if m.max_seqs is not None:
        a = a.replace(max_seqs=m.max_seqs)
    if m.eager:
        host = presets.params.get("eager.host_us", 0.0)
        a = a.replace(host_us={"prefill": host, "decode": host})
    return a, ServingScenario(m.prompt, m.output, weight_dtype=m.weight_dtype, kv_dtype=m.kv_dtype, lengths=m.lengths)


def _projected(m: Measurement, cfg: ArchConfig, presets: Presets) -> Optional[float]:
    a, sc = conditions(m, presets)
    lay = m.layout
    lp: Optional[LoadPoint]
    if m.load == "concurrency":
        lp = at_concurrency(cfg, lay, m.device, sc, a, int(m.load_value or 1))
    elif m.load == "rate":
        lp = at_rate(cfg, lay, m.device, sc, a, float(m.load_value or 0))
    elif m.load == "offline":
        lp = offline(cfg, lay, m.device, sc, a)
    elif m.load == "static_batch":
        # a batch the KV cache cannot hold runs in waves of what it holds (the engine admits the rest as slots free)
        want, cap = int(m.load_value or 1), kv_capacity(cfg, lay, m.device, sc, a)
        if cap < 1:
            return None
        run = min(want, cap)
        p = evaluate(cfg, lay, m.device, sc, a.replace(serving="static"), run)
        waves = math.ceil(want / run)
        # the batch takes `waves` waves of `run` (the last one no shorter: its step time barely falls with the batch),
        # so a throughput is `want` sequences over that time, a latency the whole of it
        v = _metric(m.metric, p, None, sc)
        if v is None or waves == 1:
            return v
        return v * waves if m.metric == "request_latency_s" else v * want / (waves * run)
    else:  # a decode pool (prefill runs elsewhere): its TPOT is the decode step
        a = a.replace(serving="static")
        if m.load == "decode_batch_per_gpu":
            b = int(m.load_value or 1) * lay.n_gpus
        else:  # the largest batch whose step meets the interactivity
            target_ms = 1000 / float(m.load_value or 1) * a.tokens_per_step
            lo, hi = 1, 4096
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if step(cfg, lay, m.device, sc, a, "decode", mid * lay.n_gpus).time_ms <= target_ms:
                    lo = mid
                else:
                    hi = mid - 1
            b = lo * lay.n_gpus
        p = evaluate(cfg, lay, m.device, sc, a, b)
        return _metric(m.metric, p, None, sc)
    if lp is None:
        return None
    return _metric(m.metric, lp.point, lp, sc)


def _with_source(m: Measurement, value: Optional[float], presets: Presets) -> Optional[float]:
    """`value` under its stack's (or source's) own factor (fit sources only: a speed × it, a time ÷ it)."""
    s = presets.params.get(SOURCE + stack(m), presets.params.get(SOURCE + m.source_group))
    if value is None or s is None:
        return value
    return value * s if METRICS[m.metric] else value / s


def _metric(metric: str, p, lp: Optional[LoadPoint], sc: ServingScenario) -> Optional[float]:
    if metric == "request_latency_s":
        return (p.ttft_ms + (sc.output_tokens - 1) * p.tpot_ms) / 1e3
    if metric == "tpot_ms":
        return p.tpot_ms
    if metric == "ttft_ms":
        return p.ttft_ms if lp is None else lp.ttft_ms
    if metric == "interactivity_tokens_per_s_per_user":
        return p.interactivity
    if metric == "decode_tokens_per_s_per_gpu":
        return p.decode_tokens_per_s_per_gpu
    return p.per_gpu(metric.split("_")[0])


@dataclass
class Scored:
    m: Measurement
    projected: Optional[float]

    @property
    def ratio(self) -> Optional[float]:
        return None if self.projected is None else self.projected / self.m.value

    @property
    def error(self) -> float:
        """max(projected / published, published / projected) ≥ 1 (NaN where the deployment does not fit)."""
        r = self.ratio
        return math.nan if r is None else max(r, 1 / r)

    @property
    def optimism(self) -> Optional[float]:
        """How much more the projection promises: projected/published for a throughput, published/projected for a
        time (> 1: too optimistic)."""
        r = self.ratio
        return None if r is None else (r if METRICS[self.m.metric] else 1 / r)

    @property
    def optimistic(self) -> bool:
        return (self.optimism or 1.0) > 1

    def held_out(self) -> HeldOut:
        m = self.m
        return HeldOut(m.id, m.device.vendor, m.kind, m.precision, m.engine, m.metric, float(self.ratio or 0),
                       self.optimistic, float(self.optimism or 0))


def score(points: Iterable[Measurement], cfgs: Callable[[str], ArchConfig], presets: Presets) -> list[Scored]:
    return [Scored(m, predict(m, cfgs(m.model), presets)) for m in points]


def tags(m: Measurement) -> set[str]:
    """The factor prefixes `m` depends on."""
    t = {m.device.vendor, m.engine, *m.device.arch_lookup, "prefill", "decode"}
    if m.kind == "moe":
        t.add("moe")
    if m.layout.ep > 1:
        t.add("ep")
    if m.eager:
        t.add("eager")
    return t


# a published stack's own factor on every speed it published (nuisance: projections never use it): keyed by stack,
# `source.<group>/<engine>`, or by the whole source, `source.<group>`
SOURCE = "source."


def stack(m: Measurement) -> str:
    """The published stack `m` came from: who ran it and with which engine ("inferencex/vllm")."""
    return f"{m.source_group}/{m.engine}"


def anchor_group(k: str) -> str:
    """The engine whose stacks a source factor is anchored among ("" for a whole source's factor: all of them)."""
    return k[len(SOURCE):].partition("/")[2]


def depends(k: str, m: Measurement) -> bool:
    """Whether the factor `k` changes `m`'s projection."""
    if k.startswith(SOURCE):
        name = k[len(SOURCE):]
        return name == (stack(m) if "/" in name else m.source_group)
    return k.split(".")[0] in tags(m)


def relevant(params: Mapping[str, Param], points: Sequence[Measurement]) -> list[str]:
    """The factors some point depends on (a vendor, engine or architecture no point has cannot be fitted)."""
    return [k for k in params if any(depends(k, m) for m in points)]


_MISS = math.log(5.0)  # the residual of a point that no longer fits: a 5× miss
_HUBER = 0.3  # residuals beyond ~1.35× count linearly, not squared: one odd source does not set every factor


def _residual(m: Measurement, cfg: ArchConfig, presets: Presets) -> float:
    """log(projected / published), through a pseudo-Huber transform (squared near 0, linear beyond `_HUBER`)."""
    v = predict(m, cfg, presets)
    r = _MISS if v is None else math.log(v / m.value)
    return math.copysign(_HUBER * math.sqrt(2 * (math.sqrt(1 + (r / _HUBER) ** 2) - 1)), r)


def fit(points: Sequence[Measurement], cfgs: Callable[[str], ArchConfig], params: Mapping[str, Param], *,
        prior_weight: float = 0.1, source_anchor: float = 10.0, iterations: int = 8,
        log: Callable[[str], None] = lambda s: None) -> dict[str, float]:
    """Levenberg–Marquardt in log-factor space over the factors the points depend on, each kept in its bounds;
    the Jacobian by forward differences, re-projecting only the points that depend on the factor moved."""
    import numpy as np

    free = relevant(params, points)
    pts = list(points)
    deps = {k: [i for i, m in enumerate(pts) if depends(k, m)] for k in free}
    # the stacks' own factors are anchored to a point-weighted geometric mean of 1 among the stacks of each engine
    # (one stiff residual per engine), so that they take each stack's departure from the others of its engine, and
    # the shared and engine factors keep the level the points agree on: an engine is a stated attribute of every
    # deployment, who published a run is not
    anchors: dict[str, list[tuple[int, int]]] = {}
    for j, k in enumerate(free):
        if k.startswith(SOURCE):
            anchors.setdefault(anchor_group(k), []).append((j, len(deps[k])))
    lo = np.log([params[k].lo for k in free])
    hi = np.log([params[k].hi for k in free])
    prior = np.log([params[k].prior for k in free])
    w = math.sqrt(prior_weight)

    def values(x: "np.ndarray") -> dict[str, float]:
        return {**{k: p.prior for k, p in params.items()}, **{k: float(math.exp(v)) for k, v in zip(free, x)}}

    def residuals(x: "np.ndarray", only: Optional[list[int]] = None, base: Optional["np.ndarray"] = None) -> "np.ndarray":
        pr = Presets(values(x))
        r = np.array(base[: len(pts)]) if base is not None else np.zeros(len(pts))
        for i in (range(len(pts)) if only is None else only):
            r[i] = _residual(pts[i], cfgs(pts[i].model), pr)
        anchor = [source_anchor * sum(n * x[j] for j, n in grp) / sum(n for _, n in grp) for grp in anchors.values()]
        return np.concatenate([r, w * (x - prior), anchor])

    x = np.clip(prior, lo, hi)
    r = residuals(x)
    lam, h = 1e-2, 0.05
    for it in range(iterations):
        jac = np.zeros((len(r), len(free)))
        for j, k in enumerate(free):
            xj = x.copy()
            xj[j] = xj[j] + h if xj[j] + h <= hi[j] else xj[j] - h
            jac[:, j] = (residuals(xj, deps[k], r) - r) / (xj[j] - x[j])
        g, a = jac.T @ r, jac.T @ jac
        loss = float(r @ r)
        while True:
            step_ = np.linalg.solve(a + lam * np.diag(np.diag(a) + 1e-9), -g)
            xn = np.clip(x + step_, lo, hi)
            rn = residuals(xn)
            if float(rn @ rn) < loss:
                x, r, lam = xn, rn, max(lam / 3, 1e-4)
                break
            lam *= 4
            if lam > 1e4:
                break
        log(f"iteration {it + 1}: loss {float(r @ r):.4f} " + " ".join(f"{k}={math.exp(v):.3g}" for k, v in zip(free, x)))
        if lam > 1e4 or loss - float(r @ r) < 1e-4 * loss:
            break
    return values(x)


@dataclass
class Summary:
    label: str
    n: int
    median: float
    worst: float
    optimistic: int
    median_ratio: float  # geometric: > 1 too high a number

    def row(self) -> str:
        return (f"| {self.label} | {self.n} | {self.median:.2f}× | {self.worst:.2f}× | {self.optimistic} of {self.n} | "
                f"{self.median_ratio:.2f} |")


def summaries(scored: Sequence[Scored]) -> list[Summary]:
    """Median and worst error over all scored points, then by vendor, dense/MoE and precision."""
    ok = [s for s in scored if s.ratio is not None]
    groups: dict[str, list[Scored]] = {"all": ok}
    for s in ok:
        vendor = {"nvidia": "NVIDIA", "amd": "AMD"}.get(s.m.device.vendor, s.m.device.vendor)
        for label in (vendor, {"moe": "MoE"}.get(s.m.kind, s.m.kind), s.m.precision.upper(), f"engine {s.m.engine}"):
            groups.setdefault(label, []).append(s)
    out = []
    for label, ss in groups.items():
        if not ss:
            continue
        b = band_of([s.held_out() for s in ss], label)
        geo = math.exp(statistics.median(math.log(s.ratio) for s in ss))
        out.append(Summary(label, b.n, b.median, b.worst, b.optimistic, geo))
    return out
