"""Disaggregated serving: a prefill pool and a decode pool of instances, each with its own layout, the prompt's KV
cache handed from one to the other (Dynamo, SGLang PD, DeepSeek's production system).

A prefill instance prefills `prefill_batch` prompts per forward; a decode instance keeps `decode_batch` sequences
in flight, each finishing after O − 1 decode steps (fewer with speculative decoding). The system completes
min(prefill rate, decode rate) requests per second; the faster pool idles for the rest. A request's TTFT is its
prefill plus the KV hand-off (over the NIC between domains, else over scale-up); its TPOT is the decode step,
which no newcomer's prefill slows (that is the point of disaggregating).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional

from moebench import tokenomics as tk
from moebench.models.config import ArchConfig
from moebench.projection import comm
from moebench.projection.assumptions import Assumptions
from moebench.projection.cost import StepEstimate, step
from moebench.projection.device import Device
from moebench.projection.layout import Layout, kv_bytes_per_seq
from moebench.projection.scenario import LengthMoments, ServingScenario


@dataclass(frozen=True)
class Pools:
    """One prefill pool and one decode pool serving the same requests."""

    prefill_layout: Layout
    prefill_instances: int
    prefill_batch: int
    decode_layout: Layout
    decode_instances: int
    decode_batch: int
    prefill: StepEstimate
    decode: StepEstimate
    transfer_ms: float  # the KV hand-off of one request
    tokens_per_step: float
    prompt_tokens: int
    output_tokens: int

    @property
    def n_gpus(self) -> int:
        return self.prefill_instances * self.prefill_layout.n_gpus + self.decode_instances * self.decode_layout.n_gpus

    @property
    def prefill_requests_per_s(self) -> float:
        return self.prefill_instances * self.prefill_batch / (self.prefill.time_ms / 1e3)

    @property
    def decode_requests_per_s(self) -> float:
        steps = (self.output_tokens - 1) / self.tokens_per_step
        return self.decode_instances * self.decode_batch / (steps * self.decode.time_ms / 1e3)

    @property
    def requests_per_s(self) -> float:
        return min(self.prefill_requests_per_s, self.decode_requests_per_s)

    @property
    def ttft_ms(self) -> float:
        return self.prefill.time_ms + self.transfer_ms

    @property
    def tpot_ms(self) -> float:
        return self.decode.time_ms / self.tokens_per_step

    def per_gpu(self, kind: str) -> float:
        """Input, output or total tokens/s per GPU of both pools together."""
        tokens = {"input": self.prompt_tokens, "output": self.output_tokens,
                  "total": self.prompt_tokens + self.output_tokens}[kind]
        return self.requests_per_s * tokens / self.n_gpus

    def usd_per_mtok(self, usd_per_gpu_hour: Optional[float]) -> Optional[dict[str, float]]:
        """Each pool priced into its own tokens: the prefill pool's GPU-hours into the prompt tokens, the decode
        pool's into the output tokens; `total` prices every GPU into every token."""
        if usd_per_gpu_hour is None or self.requests_per_s <= 0:
            return None
        r = self.requests_per_s
        cost = {"input": tk.usd_per_mtok(usd_per_gpu_hour, self.prefill_instances * self.prefill_layout.n_gpus,
                                         r * self.prompt_tokens),
                "output": tk.usd_per_mtok(usd_per_gpu_hour, self.decode_instances * self.decode_layout.n_gpus,
                                          r * self.output_tokens),
                "total": tk.usd_per_mtok(usd_per_gpu_hour, self.n_gpus, r * (self.prompt_tokens + self.output_tokens))}
        cost["blended"] = tk.blended_usd_per_mtok(cost["input"], cost["output"])
        return cost

    def to_json(self) -> dict[str, Any]:
        return {"prefill": {"layout": dataclasses.asdict(self.prefill_layout), "instances": self.prefill_instances,
                            "batch": self.prefill_batch, "requests_per_s": self.prefill_requests_per_s},
                "decode": {"layout": dataclasses.asdict(self.decode_layout), "instances": self.decode_instances,
                           "batch": self.decode_batch, "requests_per_s": self.decode_requests_per_s},
                "n_gpus": self.n_gpus, "ttft_ms": self.ttft_ms, "tpot_ms": self.tpot_ms,
                "kv_transfer_ms": self.transfer_ms, "requests_per_s": self.requests_per_s,
                "total_tokens_per_s_per_gpu": self.per_gpu("total"),
                "output_tokens_per_s_per_gpu": self.per_gpu("output")}


def pools(cfg: ArchConfig, dev: Device, sc: ServingScenario, a: Assumptions, *, prefill_layout: Layout,
          decode_layout: Layout, decode_batch: int, prefill_batch: int = 1, prefill_instances: int = 1,
          decode_instances: int = 1) -> Pools:
    """Both pools under `a` (decode steps carry no prefill: served statically)."""
    a = a.replace(serving="static")
    pre = step(cfg, prefill_layout, dev, sc, a, "prefill", prefill_batch)
    dec = step(cfg, decode_layout, dev, sc, a, "decode", decode_batch)
    # every decode GPU of the sequence's attention group receives its share of the prompt's KV cache, over the NIC
    # once both pools no longer fit one scale-up domain
    kv = kv_bytes_per_seq(cfg, decode_layout, prompt_only(sc))
    cross = (prefill_instances * prefill_layout.n_gpus + decode_instances * decode_layout.n_gpus
             > max(dev.domain_size, 1))
    return Pools(prefill_layout, prefill_instances, prefill_batch, decode_layout, decode_instances, decode_batch,
                 pre, dec, comm.p2p_ms(kv, cross, dev, a.comm), a.tokens_per_step, sc.prompt_tokens,
                 sc.output_tokens)


def prompt_only(sc: ServingScenario) -> ServingScenario:
    """`sc` as a prefill instance holds it: the prompt's KV cache, none of the output's (decoded elsewhere)."""
    m = sc.lengths
    two = None if m is None else LengthMoments(m.prompt, 2.0, m.prompt_sq, 2 * m.prompt, 4.0)  # the prompts' spread
    return dataclasses.replace(sc, output_tokens=2, lengths=two)


def balanced(cfg: ArchConfig, dev: Device, sc: ServingScenario, a: Assumptions, *, prefill_layout: Layout,
             decode_layout: Layout, decode_batch: int, decode_instances: int = 1, prefill_batch: int = 1) -> Pools:
    """The fewest prefill instances that keep `decode_instances` decode instances busy."""
    one = pools(cfg, dev, sc, a, prefill_layout=prefill_layout, decode_layout=decode_layout,
                decode_batch=decode_batch, prefill_batch=prefill_batch, decode_instances=decode_instances)
    need = max(1, math.ceil(one.decode_requests_per_s / one.prefill_requests_per_s - 1e-9))
    return pools(cfg, dev, sc, a, prefill_layout=prefill_layout, decode_layout=decode_layout,
                 decode_batch=decode_batch, prefill_batch=prefill_batch, prefill_instances=need,
                 decode_instances=decode_instances)
