"""Time of one forward step (a batched prefill, or one decode step) on one GPU of a layout, layer by layer and
phase by phase.

Each op: compute = FLOPs / (peak × efficiency), memory = bytes / (HBM × efficiency), time = the larger +
launch latency. An eager framework's host issues ops ahead of the GPU, so the compute side of a step is the
larger of the GPU's Σ op times and the host's time to issue them: ops × `host_us` + routed experts run ×
`host_expert_us` (an eager per-expert loop issues one launch group per expert hit; both 0 for CUDA-graphed
servers). Collectives: alpha–beta (comm.py). Step = Σ compute-side ops + Σ collectives − the part of the
collectives hidden behind compute (`comm_overlap`) + host overhead. All quantities are for the busiest GPU:
the largest attention group (⌈B/dp⌉ sequences) and the EP rank with the most experts (⌈E/ep⌉).

Counting conventions match ArchConfig (2 FLOPs per multiply-add; only routed top-k + shared experts compute),
with two serving-specific choices:
- MLA decode runs "absorbed" (as FlashMLA and every DeepSeek server do): scores and values are taken against
  the 512-wide latent, so attention FLOPs per cached token are 2·heads·(2·kv_lora + rope), not the prefill form;
- prefill computes logits for the last position of each sequence only.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Iterable

from moebench.arith import experts_touched
from moebench.models.config import ArchConfig
from moebench.projection import comm
from moebench.projection.assumptions import COMM_PHASES, PHASES, Assumptions
from moebench.projection.device import Device
from moebench.projection.gemm import Gemm, op_efficiency
from moebench.projection.layout import Layout, kv_shard, stage_layers
from moebench.projection.scenario import ServingScenario


@dataclass(frozen=True)
class Op:
    """Work one GPU does for one op of one layer. Collectives carry `comm_ms` and no FLOPs or bytes."""

    phase: str
    flops: float = 0.0
    bytes: float = 0.0
    dtype: str = "bf16"  # weight format of the matmul (the device picks the tensor-core format)
    comm_ms: float = 0.0
    expert_runs: float = 0.0  # routed experts with rows this GPU runs (expected): an eager loop's launch groups
    gemms: tuple[Gemm, ...] = ()  # the matmuls behind `flops`, for tile and wave quantization (gemm.py)


@dataclass
class PhaseTime:
    compute_ms: float = 0.0  # FLOP-roof time
    memory_ms: float = 0.0  # HBM-roof time
    comm_ms: float = 0.0
    time_ms: float = 0.0  # what the phase costs on the step's critical path before overlap
    flops: float = 0.0
    bytes: float = 0.0

    def to_json(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class StepEstimate:
    stage: str
    time_ms: float
    compute_side_ms: float  # max(Σ GPU time of non-collective ops, host issue time)
    comm_ms: float
    hidden_comm_ms: float
    overhead_ms: float
    n_ops: int = 0  # non-collective ops with work (each pays a launch)
    expert_runs: float = 0.0  # routed experts run, summed over MoE layers (expected under uniform routing)
    host_syncs: int = 0  # MoE layers that wait for the host (`moe_host_sync`): each idles the GPU for one op's host time
    phases: dict[str, PhaseTime] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"time_ms": self.time_ms, "compute_side_ms": self.compute_side_ms, "comm_ms": self.comm_ms,
                "hidden_comm_ms": self.hidden_comm_ms, "overhead_ms": self.overhead_ms,
                "phases_ms": {p: t.time_ms for p, t in self.phases.items()}}


def op_time_ms(op: Op, dev: Device, a: Assumptions, stage: str) -> tuple[float, float, float]:
    """(time, compute-roof time, memory-roof time) of one op, in ms."""
    if op.phase in COMM_PHASES:
        return op.comm_ms, 0.0, 0.0
    if op.flops <= 0 and op.bytes <= 0:
        return 0.0, 0.0, 0.0
    eff_c, eff_m = a.efficiency.roofs(stage, op.phase)
    eff_c, eff_m = precision_efficiency(eff_c, eff_m, op.dtype, dev, a)
    eff_c *= op_efficiency(op.gemms, dev.sm_count, a.gemm_tile, grouped=a.expert_gemms == "grouped")
    compute = op.flops / (dev.peak_flops(op.dtype) * eff_c) * 1e3
    memory = op.bytes / (dev.hbm_bytes_per_s * eff_m) * 1e3
    return max(compute, memory) + a.launch_us / 1e3, compute, memory


def precision_efficiency(eff_c: float, eff_m: float, weight_dtype: str, dev: Device, a: Assumptions) -> tuple[float, float]:
    """(compute, memory) efficiency of a matmul with `weight_dtype` weights after `a.dtype_efficiency`, in (0, 1]."""
    if not a.dtype_efficiency:
        return eff_c, eff_m
    cd = dev.compute_dtype(weight_dtype)
    eff_c *= a.dtype_efficiency.get(cd, 1.0)
    if cd != weight_dtype and weight_dtype in ("fp8", "fp4"):  # dequantised in the kernel
        k = a.dtype_efficiency.get("weight_only", 1.0)
        eff_c, eff_m = eff_c * k, eff_m * k
    return min(1.0, eff_c), min(1.0, eff_m)


def _sum_attended(cfg: ArchConfig, layer: int, seq: float) -> float:
    """Σ over query positions 1..seq of the tokens each attends (causal, sliding window respected)."""
    w = cfg.sliding_window if cfg.is_sliding_layer(layer) else None
    if w is None or seq <= w:
        return seq * (seq + 1) / 2
    return w * (w + 1) / 2 + (seq - w) * w


def _attn_core_flops_per_ctx(cfg: ArchConfig, layer: int, stage: str) -> float:
    """Score + value FLOPs per query token per attended token."""
    if cfg.attention == "mla" and stage == "decode":
        return 2 * cfg.num_attention_heads * (2 * cfg.kv_lora_rank + cfg.qk_rope_head_dim)
    return cfg.attention_flops(layer, 1) / cfg.attended(layer, 1)


# GEMM shapes as moebench's modules hold their weights (HF layout): q, k, v, o separate; a dense or shared GLU
# as separate gate, up and down; routed experts with gate and up fused (w13, [2F, D]) as fused-MoE kernels do.
# Tensor parallelism splits heads and F. Only tile and wave quantization reads them (gemm.py); FLOPs and bytes
# come from the parameter counts.
def _attn_gemms(cfg: ArchConfig, tokens: int, tp: int) -> tuple[Gemm, ...]:
    h = cfg.hidden_size
    if cfg.attention == "mla":  # several low-rank projections: one GEMM of the same total width stands for them
        return (Gemm(math.ceil(cfg.attention_params() / h / tp), h, rows=tokens),)
    q = math.ceil(cfg.num_attention_heads / tp) * cfg.head_dim
    kv = math.ceil(cfg.num_key_value_heads / tp) * cfg.head_dim  # beyond its KV heads, TP replicates them
    return (Gemm(q, h, rows=tokens), Gemm(kv, h, rows=tokens, count=2), Gemm(h, q, rows=tokens))


def _glu_gemms(h: int, f: int, tokens: int, tp: int) -> tuple[Gemm, ...]:
    f_tp = math.ceil(f / tp)
    return (Gemm(f_tp, h, rows=tokens, count=2), Gemm(h, f_tp, rows=tokens))


def _expert_gemms(h: int, f: int, tokens: int, p: float, experts: int, tp: int) -> tuple[Gemm, ...]:
    """`experts` routed experts on this GPU, each picked by each of `tokens` tokens with probability p = K/E."""
    f_tp = math.ceil(f / tp)
    return (Gemm(2 * f_tp, h, tokens=tokens, p=p, count=experts), Gemm(h, f_tp, tokens=tokens, p=p, count=experts))


def layer_ops(cfg: ArchConfig, layer: int, lay: Layout, dev: Device, sc: ServingScenario, a: Assumptions,
              stage: str, batch: int) -> list[Op]:
    """The ops of one layer for `batch` sequences (decode: 1 new token each; prefill: the whole prompt)."""
    h, tp, n = cfg.hidden_size, lay.attn_tp, lay.n_gpus
    q = 1 + a.spec_tokens if stage == "decode" else sc.prompt_tokens  # decode verifies the drafted tokens too
    seqs_g = math.ceil(batch / lay.dp)
    t_g, t_all = seqs_g * q, batch * q  # tokens in the busiest attention group / in the whole instance
    ab, kvb = sc.act_bytes, sc.kv_bytes
    wa, wf = sc.bytes_of(sc.attn_dtype), sc.bytes_of(sc.ffn_dtype)
    kv_elems, shard = cfg.kv_elems_per_token(layer), kv_shard(cfg, tp)
    heads_tp = min(tp, cfg.num_attention_heads)
    ops: list[Op] = []

    # attention: projections (weights stream once per step) and the core (KV cache streams per sequence)
    p_attn = cfg.attention_params()
    ops.append(Op("attn", 2 * p_attn * t_g / tp, p_attn * wa / tp + 4 * t_g * h * ab, sc.attn_dtype,
                  gemms=_attn_gemms(cfg, t_g, tp)))
    per_ctx = _attn_core_flops_per_ctx(cfg, layer, stage)
    if stage == "decode":
        ctx = cfg.attended(layer, round(sc.decode_context))
        core_flops = seqs_g * q * per_ctx * ctx / heads_tp
        core_bytes = seqs_g * (ctx + 1) * kv_elems * kvb / shard
    else:
        core_flops = seqs_g * per_ctx * _sum_attended(cfg, layer, sc.prefill_attention_tokens) / heads_tp
        core_bytes = t_g * kv_elems * kvb / shard + 4 * t_g * h * ab / tp  # flash attention: KV written, Q/K/V/O once
    ops.append(Op("attn", core_flops, core_bytes, "bf16"))
    if tp > 1:
        ops.append(Op("allreduce", comm_ms=comm.all_reduce_ms(t_g * h * ab, tp, dev, a.comm)))

    if not cfg.is_moe_layer(layer):
        p = cfg.ffn_params(layer, active=False)
        ops.append(Op("mlp", 2 * p * t_g / tp, p * wf / tp + t_g * (2 * h + 3 * cfg.intermediate_size / tp) * ab, sc.ffn_dtype,
                      gemms=_glu_gemms(h, cfg.intermediate_size, t_g, tp)))
        if tp > 1:
            ops.append(Op("allreduce", comm_ms=comm.all_reduce_ms(t_g * h * ab, tp, dev, a.comm)))
        return ops

    e, k, f = cfg.n_routed_experts, cfg.top_k, cfg.moe_intermediate_size
    ops.append(Op("router", 2 * h * e * t_g / tp, cfg.router_params() * 2 + t_g * (h + e) * ab / tp, "bf16"))
    p_exp = cfg.expert_params()
    touched = cfg.experts_touched(t_all) / e  # share of experts that at least one token picks this step
    if lay.ep > 1:
        # Each token goes once to every EP rank holding one of its k experts: ep·(1 − (1 − 1/ep)^k) ranks.
        ranks = experts_touched(lay.ep, 1, k)
        disp_bytes = 1.0 if sc.weight_dtype in ("fp8", "fp4") and dev.compute_dtype("fp8") == "fp8" else ab
        sent = t_all / n * ranks * h
        ops.append(Op("dispatch", comm_ms=comm.all_to_all_ms(sent * disp_bytes, lay.ep, dev, a.comm)))
        rows = t_all * k / lay.ep * a.imbalance(lay.ep)
        local = math.ceil(e / lay.ep)
        w_bytes = local * touched * p_exp * wf
        ops.append(Op("experts", 2 * rows * p_exp, w_bytes + rows * (2 * h + 3 * f) * ab, sc.ffn_dtype,
                      expert_runs=local * touched, gemms=_expert_gemms(h, f, round(t_all * a.imbalance(lay.ep)), k / e, local, 1)))
        ops.append(Op("combine", comm_ms=comm.all_to_all_ms(sent * ab, lay.ep, dev, a.comm)))
        arrived = sent / h
    else:
        arrived, rows = t_all, t_all * k
        ops.append(Op("experts", 2 * rows * p_exp / n, e * touched * p_exp * wf / n + rows * (2 * h + 3 * f / n) * ab,
                      sc.ffn_dtype, expert_runs=e * touched, gemms=_expert_gemms(h, f, t_all, k / e, e, n)))
    # the local permutation around the expert GEMMs: each token's hidden state copied to its k rows in expert order,
    # the k results gathered back and summed; ∝ k·hidden per token whatever the expert width, so it weighs most on
    # small-expert MoEs (Qwen3-30B-A3B: 8 × 2,048 per token against 3 B active). Fused-MoE servers run it as kernels
    # of their own, a pass over HBM with no FLOPs to hide behind (TensorRT-LLM's expand / finalize routing, vLLM's
    # moe_sum); an eager per-expert loop slices and adds inside each expert's launch group, beside its GEMMs
    permute = 2 * (arrived + rows) * h * ab
    if a.expert_gemms == "per_expert":
        i = max(j for j, o in enumerate(ops) if o.phase == "experts")  # the routed experts' op
        ops[i] = dataclasses.replace(ops[i], bytes=ops[i].bytes + permute)
    else:
        ops.append(Op("experts", 0.0, permute, "bf16"))
    if cfg.n_shared_experts:
        p_sh = cfg.shared_expert_params()
        ops.append(Op("experts", 2 * p_sh * t_g / tp, p_sh * wf / tp + t_g * 2 * h * ab, sc.ffn_dtype,
                      gemms=_glu_gemms(h, cfg.n_shared_experts * f, t_g, tp)))
    if lay.ep == 1 and n > 1:
        # TP attention: the partial sums of the instance's tokens all-reduced; DP attention: the groups' tokens
        # gathered onto every GPU and the partial sums reduce-scattered back, the same bytes over the whole batch
        ops.append(Op("allreduce", comm_ms=comm.all_reduce_ms(t_all * h * ab, n, dev, a.comm)))
    elif lay.ep > 1 and tp > 1:  # the combined tokens are re-assembled across the TP group
        ops.append(Op("allreduce", comm_ms=comm.all_gather_ms(t_g * h * ab, tp, dev, a.comm)))
    return ops


def lm_head_op(cfg: ArchConfig, lay: Layout, sc: ServingScenario, batch: int, per_seq: int = 1) -> Op:
    rows = math.ceil(batch / lay.dp) * per_seq  # logit rows per sequence: prefill's last position, decode's drafts + 1
    p = cfg.lm_head_params() or cfg.embedding_params()
    vocab_rows = rows * cfg.vocab_size / lay.attn_tp
    return Op("lm_head", 2 * p * rows / lay.attn_tp, p * sc.bytes_of(sc.embed_dtype) / lay.attn_tp + vocab_rows * 4, "bf16",
              gemms=(Gemm(math.ceil(cfg.vocab_size / lay.attn_tp), cfg.hidden_size, rows=rows),))


def _layer_groups(cfg: ArchConfig) -> Iterable[tuple[int, int]]:
    """(representative layer, count): layers that cost the same (same FFN kind, same window) are costed once."""
    groups: dict[tuple[bool, bool], list[int]] = {}
    for i in range(cfg.num_hidden_layers):
        groups.setdefault((cfg.is_moe_layer(i), cfg.is_sliding_layer(i)), []).append(i)
    return [(ls[0], len(ls)) for ls in groups.values()]


def step(cfg: ArchConfig, lay: Layout, dev: Device, sc: ServingScenario, a: Assumptions, stage: str,
         batch: int) -> StepEstimate:
    """One forward of `batch` sequences: a prefill of the whole prompt, or one decode step at the mean context."""
    if lay.pp > 1:
        return _pipelined(cfg, lay, dev, sc, a, stage, batch)
    phases = {p: PhaseTime() for p in PHASES}
    compute_side = comm_total = 0.0
    n_ops, expert_runs, syncs = 0, 0.0, 0
    weighted = [(op, cnt) for layer, cnt in _layer_groups(cfg) for op in layer_ops(cfg, layer, lay, dev, sc, a, stage, batch)]
    weighted.append((lm_head_op(cfg, lay, sc, batch, 1 + a.spec_tokens if stage == "decode" else 1), 1))
    for op, cnt in weighted:
        t, c, m = op_time_ms(op, dev, a, stage)
        pt = phases[op.phase]
        pt.compute_ms += c * cnt
        pt.memory_ms += m * cnt
        pt.comm_ms += op.comm_ms * cnt
        pt.time_ms += t * cnt
        pt.flops += op.flops * cnt
        pt.bytes += op.bytes * cnt
        if op.phase in COMM_PHASES:
            comm_total += t * cnt
        else:
            compute_side += t * cnt
            n_ops += cnt if t > 0 else 0
            expert_runs += op.expert_runs * cnt
            syncs += cnt if op.expert_runs > 0 and a.moe_host_sync else 0
    compute_side = max(compute_side + syncs * a.host_ms(stage, 1), a.host_ms(stage, n_ops, expert_runs))
    hidden = min(a.comm_overlap * comm_total, compute_side)
    overhead = a.step_overhead_ms.get(stage, 0.0) + a.seq_overhead_us * batch / 1e3
    return StepEstimate(stage, compute_side + comm_total - hidden + overhead, compute_side, comm_total, hidden, overhead,
                        n_ops, expert_runs, syncs, {p: t for p, t in phases.items() if t.time_ms > 0})


def _stage_cfg(cfg: ArchConfig, layers: range) -> ArchConfig:
    """The layers of one pipeline stage as a model of their own (its dense-first layers and windows kept)."""
    return dataclasses.replace(
        cfg, num_hidden_layers=len(layers), full_num_layers=None,
        first_k_dense=max(0, min(cfg.first_k_dense - layers.start, len(layers))),
        layer_types=cfg.layer_types[layers.start:layers.stop] if cfg.layer_types else None)


def _pipelined(cfg: ArchConfig, lay: Layout, dev: Device, sc: ServingScenario, a: Assumptions, stage: str,
               batch: int) -> StepEstimate:
    """`pp` stages, the batch in m = min(B, pp) micro-batches of ⌈B/m⌉ sequences so that every stage has work.

    The slowest stage sets the pace. Decode: each micro-batch passes every stage once per token, so one step
    (every sequence one token further) takes pp stage times, while the other micro-batches fill the other
    stages. Prefill under continuous serving the same: newcomers' prompts ride a pipe the running sequences keep
    full; a static batch's prefill (nothing else in flight) fills and drains it, (m + pp − 1) stage times. Each
    stage time ends with the hand-off of the micro-batch's hidden states to the next stage (p2p, over the NIC
    across domains). Every stage is charged the LM head (only the last runs it: a small overestimate)."""
    m = min(batch, lay.pp)
    mb = math.ceil(batch / m)
    s = max((step(_stage_cfg(cfg, layers), lay.stage(), dev, sc, a, stage, mb)
             for layers in stage_layers(cfg, lay.pp) if len(layers)), key=lambda e: e.time_ms)
    q = 1 + a.spec_tokens if stage == "decode" else sc.prompt_tokens  # decode verifies the drafted tokens too
    hand = comm.p2p_ms(mb * q * cfg.hidden_size * sc.act_bytes, lay.n_gpus > max(dev.domain_size, 1), dev, a.comm)
    k = lay.pp if stage == "decode" or a.serving == "continuous" else m + lay.pp - 1
    phases = {p: PhaseTime(**{f: v * k for f, v in t.to_json().items()}) for p, t in s.phases.items()}
    phases["p2p"] = PhaseTime(comm_ms=k * hand, time_ms=k * hand)
    return StepEstimate(stage, k * (s.time_ms + hand), k * s.compute_side_ms, k * (s.comm_ms + hand),
                        k * s.hidden_comm_ms, k * s.overhead_ms, k * s.n_ops, k * s.expert_runs, k * s.host_syncs,
                        phases)
