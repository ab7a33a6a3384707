"""From step times to what a buyer asks: TTFT, TPOT, throughput per GPU against interactivity, $/M tokens.

Serving model (`Assumptions.serving`):
- `static` (what `moebench run` measures): one batch of B prompts is prefilled, then decoded together;
  TTFT = prefill(B), TPOT = one decode step.
- `continuous` (vLLM / SGLang / TRT-LLM under load, what InferenceMAX measures): B requests stay in flight and a
  finished one is replaced at once, so each decode step also carries B/(O−1) newcomers' prefill on average.
  TTFT = prefill of one prompt inside a decode step of the others, after half a step's wait: prefill(1) +
  1.5·step·(B−1)/B (queueing beyond the KV cache: load.py), TPOT = step + prefill(B)·(B−1)/B / (O−1): over a
  request's O−1 decode steps the batch also prefills the other B−1 newcomers.
Both do the same work per B requests, so throughput is the same: B·tokens / (prefill(B) + (O−1)·step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

from moebench import tokenomics as tk
from moebench.errors import BadInput
from moebench.models.config import ArchConfig
from moebench.projection.assumptions import Assumptions
from moebench.projection.cost import StepEstimate, step
from moebench.projection.device import Device
from moebench.projection.layout import (PIPELINE_STAGES, Layout, Memory, gpus_text, instance_layouts, layouts,
                                        max_ep, memory)
from moebench.projection.scenario import ServingScenario

DEFAULT_BATCHES = tuple(2**k for k in range(16))  # 1 … 32768 sequences per instance
DEFAULT_INTERACTIVITY = (10.0, 20.0, 50.0, 100.0)  # tokens/s/user
DEFAULT_MAX_GPUS = 128  # the widest instance the layout search tries


@dataclass(frozen=True)
class Point:
    """One layout serving `batch` concurrent sequences, per GPU where it says so."""

    layout: Layout
    batch: int
    prefill: StepEstimate  # B prompts at once
    decode: StepEstimate  # one step of B sequences
    ttft_ms: float
    tpot_ms: float
    memory: Memory
    rates: dict[str, float]  # input / output / total tokens per second of the instance

    @property
    def interactivity(self) -> float:
        return tk.interactivity(self.tpot_ms) or 0.0

    def per_gpu(self, kind: str) -> float:
        return tk.per_gpu(self.rates[kind], self.layout.n_gpus)

    tokens_per_step: float = 1.0  # per sequence and decode step (> 1 with speculative decoding / MTP)

    @property
    def decode_tokens_per_s_per_gpu(self) -> float:
        """Decode-only rate (what disaggregated decode pools report): B · tokens per step / step / GPUs."""
        return self.batch * self.tokens_per_step / (self.decode.time_ms / 1e3) / self.layout.n_gpus

    def usd_per_mtok(self, usd_per_gpu_hour: Optional[float]) -> Optional[dict[str, float]]:
        if usd_per_gpu_hour is None:
            return None
        n = self.layout.n_gpus
        cost = {k: tk.usd_per_mtok(usd_per_gpu_hour, n, self.rates[k]) for k in ("input", "output", "total")}
        cost["blended"] = tk.blended_usd_per_mtok(cost["input"], cost["output"])
        return cost


def evaluate(cfg: ArchConfig, lay: Layout, dev: Device, sc: ServingScenario, a: Assumptions, batch: int) -> Point:
    pre = step(cfg, lay, dev, sc, a, "prefill", batch)
    dec = step(cfg, lay, dev, sc, a, "decode", batch)
    o = sc.output_tokens
    per_token_ms = dec.time_ms / a.tokens_per_step  # a speculative step yields several tokens per sequence
    if a.serving == "static":
        ttft, tpot = pre.time_ms, per_token_ms
    else:
        # a newcomer waits for the step in progress (half a step on average), then its prompt is prefilled inside
        # a step of the B − 1 running decodes (chunked prefill mixes them), which it pays in full
        ttft = step(cfg, lay, dev, sc, a, "prefill", 1).time_ms + 1.5 * dec.time_ms * (batch - 1) / batch
        # over a request's O-1 decode steps the batch prefills the other B-1 newcomers, prefill(B)/B each.
        # (Subtracting prefill(1) instead, as once done, let a faster device show a higher TPOT: prefill(1) is
        # memory-bound and fell faster than prefill(B).)
        tpot = per_token_ms + pre.time_ms * (batch - 1) / batch / (o - 1)
    rates = tk.request_rates(batch, sc.prompt_tokens, o, pre.time_ms, per_token_ms)
    return Point(lay, batch, pre, dec, ttft, tpot, memory(cfg, lay, sc, dev, batch, a.mem_util), rates,
                 a.tokens_per_step)


@dataclass
class Projection:
    """Every fitting (layout, batch) point on one device, and the picks a report needs."""

    device: Device
    points: list[Point]
    notes: list[str] = field(default_factory=list)

    def for_batch(self, batch: int) -> Optional[Point]:
        """The memory check fixes the fewest GPUs that hold weights + this batch's KV; among the layouts of that
        size, the fastest (the highest token rate for the same work)."""
        fits = [p for p in self.points if p.batch == batch]
        if not fits:
            return None
        n = min(p.layout.n_gpus for p in fits)
        return max((p for p in fits if p.layout.n_gpus == n), key=lambda p: p.rates["output"])

    def at_interactivity(self, tokens_per_s_per_user: float) -> Optional[Point]:
        """Most output tokens/s per GPU among points at least this interactive (an SLO: ≥ target).

        A step function of the target, so a faster device can never look worse at any target."""
        ok = [p for p in self.points if p.interactivity >= tokens_per_s_per_user]
        return max(ok, key=lambda p: p.per_gpu("output"), default=None)

    def frontier(self) -> list[Point]:
        """Pareto frontier of (interactivity, output tokens/s/GPU), by rising interactivity."""
        best: list[Point] = []
        for p in sorted(self.points, key=lambda p: (-p.interactivity, -p.per_gpu("output"))):
            if not best or p.per_gpu("output") > best[-1].per_gpu("output"):
                best.append(p)
        return best[::-1]

    @property
    def min_gpus(self) -> Optional[int]:
        return min((p.layout.n_gpus for p in self.points), default=None)


def _largest(fits: Callable[[int], bool], hi: int) -> int:
    """The largest b in 1 … hi with fits(b), for a `fits` that holds up to some b and not beyond; 0 if none."""
    lo = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def project(cfg: ArchConfig, dev: Device, sc: ServingScenario, a: Assumptions, *,
            batches: Iterable[int] = DEFAULT_BATCHES, max_gpus: int = DEFAULT_MAX_GPUS,
            only: Optional[Iterable[Layout]] = None, gpus: Optional[int] = None) -> Projection:
    """Evaluate every layout (or `only` these, or those of exactly `gpus` GPUs) × batch whose weights + KV fit;
    notes say what could not."""
    if only is not None:
        cands = list(only)
    elif gpus is not None:
        cands = list(instance_layouts(cfg, dev, gpus))
        if not cands:
            ep = f", expert parallelism at most {max_ep(cfg)} ranks" if cfg.is_moe else ""
            raise BadInput(f"--gpus {gpus}: no layout of that many {dev.id} GPUs is one a serving engine runs for "
                           f"this model (attention TP splits its heads inside one scale-up domain of "
                           f"{dev.domain_size}{ep}, at most {PIPELINE_STAGES[-1]} pipeline stages; --layout fixes one)")
    else:
        cands = list(layouts(cfg, dev, max_gpus))
    pts: list[Point] = []
    notes: list[str] = []
    asked = sorted(set(batches))
    # besides the batches asked for: the half steps between powers of two (3·2^k) and each layout's largest batch,
    # where the best throughput at a low interactivity target sits (KV grows with the batch, so what fits is 1 … it)
    steps = {3 * 2**k for k in range(16)}
    for lay in cands:
        cap = _largest(lambda b: memory(cfg, lay, sc, dev, b, a.mem_util).fits, asked[-1] if asked else 0)
        for b in sorted(b for b in set(asked) | steps | {cap} if 1 <= b <= cap):
            pts.append(evaluate(cfg, lay, dev, sc, a, b))
    for lay in cands if only is not None else ():
        if lay.attn_tp > max(dev.domain_size, 1):
            notes.append(f"attention TP {lay.attn_tp} spans {-(-lay.attn_tp // dev.domain_size)} scale-up domains of "
                         f"{dev.domain_size}: its all-reduces cross the NIC (as SGLang's two-node TP16 runs; the "
                         "layout search keeps TP inside a domain)")
    if dev.compute_dtype(sc.ffn_dtype) != sc.ffn_dtype:
        notes.append(f"{sc.ffn_dtype} weights run weight-only on {dev.id} (no {sc.ffn_dtype} tensor cores): "
                     f"{dev.compute_dtype(sc.ffn_dtype)} matmuls, {sc.ffn_dtype} bytes")
    if a.gemm_tile and not dev.sm_count:
        notes.append(f"{dev.id} has no SM count in the catalog: GEMMs without tile and wave quantization")
    if not pts:
        largest = max((l.n_gpus for l in cands), default=0)
        # a dense model's layouts end at PIPELINE_STAGES[-1] domains (TP inside each): more GPUs would not help
        wider = only is not None or any(l.n_gpus > largest for l in layouts(cfg, dev, 2 * max(max_gpus, dev.domain_size)))
        hint = ("give more GPUs, a higher --mem-util or a lower precision" if only is not None or gpus is not None
                else "raise --max-gpus or lower the precision" if wider else
                f"tensor parallelism stays inside one scale-up domain of {dev.domain_size} and a pipeline has at "
                f"most {PIPELINE_STAGES[-1]} stages: lower the precision")
        notes.append(f"does not fit in {gpus_text(largest)} at any batch ({hint})")
    return Projection(dev, pts, notes)


def point_json(p: Point, dev: Device, *, phases: bool = False) -> dict[str, Any]:
    """Plain numbers with units in the names (records carry the same numbers as statistics)."""
    d: dict[str, Any] = {
        "layout": p.layout.to_json(dev.domain_size),
        "batch_size": p.batch,
        "ttft_ms": p.ttft_ms,
        "tpot_ms": p.tpot_ms,
        "decode_step_ms": p.decode.time_ms,
        "prefill_batch_ms": p.prefill.time_ms,
        "interactivity_tokens_per_s_per_user": p.interactivity,
        "output_tokens_per_s_per_gpu": p.per_gpu("output"),
        "input_tokens_per_s_per_gpu": p.per_gpu("input"),
        "total_tokens_per_s_per_gpu": p.per_gpu("total"),
        "decode_tokens_per_s_per_gpu": p.decode_tokens_per_s_per_gpu,
        "usd_per_mtok": p.usd_per_mtok(dev.usd_per_gpu_hour),
        "memory": p.memory.to_json(),
    }
    if phases:
        d["phases"] = {"prefill": p.prefill.to_json(), "decode": p.decode.to_json()}
    return d
