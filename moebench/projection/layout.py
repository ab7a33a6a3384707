"""Parallel layouts of one model instance, and what each GPU must hold (weights + KV cache).

A layout is `n_gpus` GPUs serving one copy of the model, in `pp` pipeline stages of `stage_gpus` GPUs, each
holding ⌈L/pp⌉ consecutive layers (pp = 1: one stage). Within a stage:
- attention (and dense FFN layers, shared experts, LM head) runs tensor-parallel over `attn_tp` GPUs, with
  `stage_gpus / attn_tp` data-parallel attention groups (DP attention) sharing the batch;
- routed experts run either expert-parallel over all the stage's GPUs (`ep = stage_gpus`: each holds ⌈E/ep⌉
  experts and tokens travel by all-to-all), or tensor-parallel over them (`ep = 1`: each holds 1/stage_gpus of
  every expert). With `attn_tp = stage_gpus` that is the vLLM/TRT-LLM TP layout; with fewer, the DP attention
  groups' tokens are gathered onto every GPU for the experts and their partial sums reduce-scattered back (SGLang's
  `--enable-dp-attention` without EP, vLLM's `--data-parallel-size` without `--enable-expert-parallel`, TRT-LLM's
  `enable_attention_dp` without an EP size). Pipeline stages are TP-only (TP within a domain × PP across domains, as
  vLLM serves Llama-3.1-405B or DeepSeek-V3 on two 8-GPU nodes); expert parallelism spans one stage.
Replicas of an instance (plain DP) do not change per-GPU throughput, so they are not modelled.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterator

from moebench.errors import BadInput
from moebench.models.config import ArchConfig
from moebench.projection.device import Device
from moebench.projection.scenario import ServingScenario


def gpus_text(n: int) -> str:
    """"1 GPU", "8 GPUs": what the tables and layout texts print."""
    return f"{n} GPU" if n == 1 else f"{n} GPUs"


@dataclass(frozen=True)
class Layout:
    n_gpus: int
    attn_tp: int
    ep: int  # 1 (experts tensor-parallel over a stage) or stage_gpus (expert parallel)
    pp: int = 1  # pipeline stages

    def __post_init__(self) -> None:
        n, tp, ep, pp = self.n_gpus, self.attn_tp, self.ep, self.pp
        if pp < 1 or n % pp:
            raise BadInput(f"layout: {pp} pipeline stages must divide the GPU count {n}")
        g = n // pp
        if n < 1 or tp < 1 or g % tp:
            raise BadInput(f"layout: attention TP {tp} must divide the GPUs of a stage ({g})")
        if ep not in (1, g):
            raise BadInput(f"layout: expert parallelism must be 1 or the GPUs of a stage ({g}; got {ep})")
        if pp > 1 and (ep > 1 or tp != g):
            raise BadInput("layout: pipeline stages are tensor-parallel only (expert parallelism and DP attention span one "
                           "stage)")

    @property
    def stage_gpus(self) -> int:
        return self.n_gpus // self.pp

    @property
    def dp(self) -> int:
        """Data-parallel attention groups (of one stage)."""
        return self.stage_gpus // self.attn_tp

    @property
    def expert_tp(self) -> int:
        return self.stage_gpus // self.ep

    def stage(self) -> "Layout":
        """One pipeline stage as a layout of its own."""
        return Layout(self.stage_gpus, self.attn_tp, self.ep)

    def describe(self, domain_size: int) -> str:
        nodes = math.ceil(self.n_gpus / max(domain_size, 1))
        span = f"{nodes} domains" if nodes > 1 else "1 domain"
        if self.ep > 1 or self.dp > 1:
            attn = f"DP{self.dp} attention" if self.attn_tp == 1 else f"TP{self.attn_tp}×DP{self.dp} attention"
            experts = f"EP{self.ep}" if self.ep > 1 else f"TP{self.stage_gpus}"
            return f"{gpus_text(self.n_gpus)} ({span}): {experts} experts, {attn}"
        return f"{gpus_text(self.n_gpus)} ({span}): TP{self.attn_tp}" + (f"×PP{self.pp}" if self.pp > 1 else "")

    def to_json(self, domain_size: int) -> dict[str, Any]:
        return {**asdict(self), "dp_attention": self.dp, "expert_tp": self.expert_tp,
                "domains": math.ceil(self.n_gpus / max(domain_size, 1)), "text": self.describe(domain_size)}


def kv_shard(cfg: ArchConfig, tp: int) -> int:
    """How many ways TP splits the KV cache: GQA by KV heads (beyond them, ranks hold copies); MLA's latent
    is one vector per token that every head reads, so TP replicates it (why DeepSeek serves with DP attention)."""
    return 1 if cfg.attention == "mla" else min(tp, cfg.num_key_value_heads)


def stage_layers(cfg: ArchConfig, pp: int) -> list[range]:
    """The layers of each pipeline stage: ⌈L/pp⌉ consecutive ones (the last stage may hold fewer)."""
    per = math.ceil(cfg.num_hidden_layers / pp)
    return [range(s * per, min((s + 1) * per, cfg.num_hidden_layers)) for s in range(pp)]


def _busiest_stage(cfg: ArchConfig, pp: int, per_layer) -> float:
    return max(sum(per_layer(i) for i in layers) for layers in stage_layers(cfg, pp))


def weight_bytes_per_gpu(cfg: ArchConfig, lay: Layout, sc: ServingScenario) -> float:
    """Bytes of weights on the busiest GPU (uneven expert splits count the GPU with ⌈E/ep⌉ experts; with
    pipeline stages, the stage with the most, charged the embedding and the LM head both)."""
    h, tp = cfg.hidden_size, lay.attn_tp
    wa, wf, we = sc.bytes_of(sc.attn_dtype), sc.bytes_of(sc.ffn_dtype), sc.bytes_of(sc.embed_dtype)

    def layer(i: int) -> float:
        b = cfg.attention_params() * wa / tp + 2 * h * we
        if cfg.is_moe_layer(i):
            local_experts = math.ceil(cfg.n_routed_experts / lay.ep)
            b += local_experts * cfg.expert_params() * wf / lay.expert_tp
            b += cfg.shared_expert_params() * wf / tp
            b += cfg.router_params() * we  # replicated: every rank routes its own tokens
        else:
            b += cfg.ffn_params(i, active=False) * wf / tp
        return b

    vocab = (cfg.embedding_params() + cfg.lm_head_params()) * we / tp + h * we  # vocab-parallel
    return _busiest_stage(cfg, lay.pp, layer) + vocab


def kv_bytes_per_seq(cfg: ArchConfig, lay: Layout, sc: ServingScenario) -> float:
    """KV-cache bytes one sequence of prompt + output tokens keeps on each GPU of its attention group (of the
    busiest pipeline stage)."""
    seq = round(sc.kv_tokens_per_seq)
    per_seq = _busiest_stage(cfg, lay.pp, lambda i: cfg.attended(i, seq) * cfg.kv_elems_per_token(i))
    return per_seq * sc.kv_bytes / kv_shard(cfg, lay.attn_tp)


@dataclass(frozen=True)
class Memory:
    weights_bytes: float
    kv_bytes: float
    capacity_bytes: float | None  # usable: HBM × mem_util

    @property
    def fits(self) -> bool:
        return self.capacity_bytes is None or self.weights_bytes + self.kv_bytes <= self.capacity_bytes

    def to_json(self) -> dict[str, Any]:
        gb = 1e9
        return {"weights_gb_per_gpu": self.weights_bytes / gb, "kv_gb_per_gpu": self.kv_bytes / gb,
                "usable_gb_per_gpu": None if self.capacity_bytes is None else self.capacity_bytes / gb, "fits": self.fits}


def memory(cfg: ArchConfig, lay: Layout, sc: ServingScenario, dev: Device, batch: int, mem_util: float) -> Memory:
    seqs = math.ceil(batch / lay.dp)  # the busiest attention group
    cap = None if dev.hbm_capacity_bytes is None else dev.hbm_capacity_bytes * mem_util
    return Memory(weight_bytes_per_gpu(cfg, lay, sc), seqs * kv_bytes_per_seq(cfg, lay, sc), cap)


def gpu_counts(dev: Device, max_gpus: int) -> list[int]:
    """Instance sizes worth trying: powers of two, the scale-up domain, and whole domains beyond it."""
    d = max(dev.domain_size, 1)
    counts = {2**k for k in range(0, 16) if 2**k <= max_gpus} | {d * k for k in range(1, max_gpus // d + 1)}
    return sorted(c for c in counts if c <= max_gpus)


def splits_heads(cfg: ArchConfig, tp: int) -> bool:
    """Whether serving engines can run attention `tp`-way tensor-parallel: every rank holds whole query heads
    (vLLM, SGLang and TRT-LLM assert that TP divides them), and the KV heads are either split evenly or, when TP
    exceeds them, replicated (TP a multiple of them, as vLLM does)."""
    kv = cfg.num_key_value_heads
    return cfg.num_attention_heads % tp == 0 and (kv % tp == 0 or tp % kv == 0)


def check_runs(cfg: ArchConfig, name: str, lay: Layout, option: str, text: str) -> None:
    """BadInput (naming `option` and its `text`) when a serving engine could not run `name` in `lay`: attention TP
    that splits the heads unevenly, expert parallelism or DP attention on a dense model, more pipeline stages than
    layers, more expert-parallel ranks than two copies of every routed expert (`max_ep`; a few more ranks than
    experts is how redundant experts run: DeepSeek's 320-GPU decode unit serves 256)."""
    if not splits_heads(cfg, lay.attn_tp):
        raise BadInput(f"{option} {text}: attention TP {lay.attn_tp} does not split {name}'s "
                       f"{cfg.num_attention_heads} query / {cfg.num_key_value_heads} KV heads evenly")
    if lay.ep > 1 and not cfg.is_moe:
        raise BadInput(f"{option} {text}: expert parallelism needs an MoE model; {name} is dense")
    if lay.dp > 1 and not cfg.is_moe:  # its attention groups would be whole replicas: serve them as instances
        raise BadInput(f"{option} {text}: DP attention needs an MoE model; {name} is dense (give one replica's layout)")
    if lay.pp > cfg.num_hidden_layers:
        raise BadInput(f"{option} {text}: {lay.pp} pipeline stages for {cfg.num_hidden_layers} layers")
    if lay.ep > max_ep(cfg):
        raise BadInput(f"{option} {text}: expert parallelism {lay.ep} for {name}'s {cfg.n_routed_experts} routed "
                       f"experts (at most {max_ep(cfg)}: two copies of each)")


def max_ep(cfg: ArchConfig) -> int:
    """The widest expert parallelism modelled: every rank holds at least one routed expert and no expert runs more
    than two copies (engines place redundant experts on spare ranks; a rank beyond them would hold nothing)."""
    return 2 * cfg.n_routed_experts if cfg.is_moe else 1


PIPELINE_STAGES = (2, 4, 8)


def layouts(cfg: ArchConfig, dev: Device, max_gpus: int) -> Iterator[Layout]:
    """Every layout this module models that a serving engine can run, up to `max_gpus` GPUs per instance.

    Attention TP stays inside one scale-up domain (its all-reduce runs twice a layer and is latency-bound; no
    engine stretches it over the NIC) and splits the heads evenly (`splits_heads`); so do tensor-parallel experts
    under DP attention. Beyond one domain: expert parallelism with DP attention (MoE), or pipeline stages of one
    domain's TP each (TP×PP, any model)."""
    for n in gpu_counts(dev, max_gpus):
        yield from instance_layouts(cfg, dev, n)


def instance_layouts(cfg: ArchConfig, dev: Device, n: int) -> Iterator[Layout]:
    """The layouts of exactly `n` GPUs (any count: a 48-GPU decode pool in a 72-GPU domain), by `layouts`' rules."""
    domain = max(dev.domain_size, 1)
    if n <= domain and splits_heads(cfg, n):
        yield Layout(n, n, 1)  # pure tensor parallel (dense models: the only choice inside one domain)
    if cfg.is_moe and n > 1:
        for tp in (1, 2, 4, 8):
            if tp <= min(n, domain) and n % tp == 0 and splits_heads(cfg, tp):
                if n <= max_ep(cfg):
                    yield Layout(n, tp, n)
                if tp < n <= domain:  # tensor-parallel experts: their gathers run twice a layer, inside one domain
                    yield Layout(n, tp, 1)
    if n > domain:  # pipeline stages only across domains: inside one, TP is faster per token
        for pp in PIPELINE_STAGES:
            tp = n // pp
            if n % pp == 0 and tp <= domain and splits_heads(cfg, tp) and pp <= cfg.num_hidden_layers:
                yield Layout(n, tp, 1, pp)


_LAYOUT_KEYS = ("tp", "dp", "ep", "pp")


def parse_layout(text: str, option: str = "--layout") -> Layout:
    """`tp=8,ep=8,dp=1,pp=1` (attention TP, attention DP groups, expert parallelism, pipeline stages; any omitted
    key is 1, except that `ep` alone sets `dp` to ep/tp) as a `Layout` of tp·dp·pp GPUs: `tp=1,dp=8` is DP attention
    with tensor-parallel experts. BadInput when the combination is not one this module models (ep must be 1 or
    tp·dp); its message names `option`."""
    vals: dict[str, int] = {}
    for part in text.split(","):
        key, sep, val = part.strip().partition("=")
        key = key.strip().lower()
        if not sep or key not in _LAYOUT_KEYS:
            raise BadInput(f"{option}: {part.strip()!r} is not one of {', '.join(k + '=N' for k in _LAYOUT_KEYS)}")
        if key in vals:
            raise BadInput(f"{option}: {key} given twice")
        try:
            vals[key] = int(val)
        except ValueError:
            raise BadInput(f"{option}: {key}={val.strip()!r} is not a whole number") from None
        if vals[key] < 1:
            raise BadInput(f"{option}: {key} must be ≥ 1 (got {vals[key]})")
    tp, ep, pp = vals.get("tp", 1), vals.get("ep", 1), vals.get("pp", 1)
    dp = vals.get("dp", ep // tp if ep > 1 and ep % tp == 0 else 1)
    try:
        return Layout(tp * dp * pp, tp, ep, pp)
    except BadInput as e:
        raise BadInput(f"{option} {text}: {str(e).removeprefix('layout: ')}") from None


def layout_text(lay: Layout) -> str:
    """The `--layout` spelling of `lay` (parse_layout's inverse)."""
    return f"tp={lay.attn_tp},dp={lay.dp},ep={lay.ep},pp={lay.pp}"
