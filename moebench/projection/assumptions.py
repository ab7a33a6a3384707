"""Everything the projection assumes about software and serving, in one frozen place, so each is explicit,
switchable and recorded next to the numbers it produced (`asdict(assumptions)` goes into the JSON)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Optional

from moebench.projection.comm import CommModel

Stage = Literal["prefill", "decode"]
STAGES: tuple[Stage, ...] = ("prefill", "decode")
PHASES = ("attn", "router", "dispatch", "experts", "combine", "mlp", "allreduce", "lm_head", "p2p")
COMM_PHASES = frozenset({"dispatch", "combine", "allreduce", "p2p"})  # p2p: pipeline stages handing on activations


@dataclass(frozen=True)
class Efficiency:
    """Fractions of the roofs that kernels reach. Never above 1: a projection may not beat a roofline.

    `by_stage[stage]` overrides `compute`/`memory` for one stage; `by_phase["decode/experts"]` multiplies both
    for one phase, `by_phase["decode/experts/memory"]` only one roof (what a per-phase profile fits).
    """

    compute: float = 0.7  # best cuBLAS bf16 GEMM reaches ~0.80 of H100 peak (catalog measured_matmul); serving less
    memory: float = 0.8  # streaming weights/KV in decode GEMMs reaches ~0.75–0.9 of HBM peak
    by_stage: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    by_phase: Mapping[str, float] = field(default_factory=dict)

    def roofs(self, stage: str, phase: str) -> tuple[float, float]:
        """(compute, memory) efficiency for one phase of one stage, clamped to (0, 1]."""
        s = self.by_stage.get(stage, {})
        c, m = s.get("compute", self.compute), s.get("memory", self.memory)
        k = self.by_phase.get(f"{stage}/{phase}", 1.0)
        kc = self.by_phase.get(f"{stage}/{phase}/compute", 1.0)
        km = self.by_phase.get(f"{stage}/{phase}/memory", 1.0)
        return _clamp(c * k * kc), _clamp(m * k * km)


def _clamp(x: float) -> float:
    return min(1.0, max(1e-6, x))


@dataclass(frozen=True)
class Assumptions:
    efficiency: Efficiency = Efficiency()
    comm: CommModel = CommModel()
    launch_us: float = 5.0  # per op (≈ 1–3 kernels under CUDA graphs): the floor of every small op
    # stage -> CPU time to issue one op (eager PyTorch: ~100s of µs). The host runs ahead of the GPU, so a step's
    # compute side is max(GPU time, host time): it shows only when ops are small. 0 = a CUDA-graphed server.
    host_us: Mapping[str, float] = field(default_factory=dict)
    # stage -> CPU time per routed expert run, per MoE layer: an eager per-expert loop (moebench's plain-torch
    # path: slice, two matmuls, activation for each expert that has rows) issues one launch group per expert hit,
    # so its host time grows with the experts a step touches. 0 = one fused/grouped kernel for all experts.
    host_expert_us: Mapping[str, float] = field(default_factory=dict)
    # The MoE layer reads its per-expert row counts back to the host (a per-expert loop needs them to slice): the
    # GPU drains, then idles while the host issues the next kernels, so each MoE layer adds one op's host time to
    # the GPU side even where the GPU is the bottleneck. False = routing stays on the GPU (fused kernels, graphs).
    moe_host_sync: bool = False
    # Output tile (rows × columns) of the tensor-core GEMMs, for tile and wave quantization (gemm.py): a GEMM takes
    # ⌈tiles / SMs⌉ waves of one tile per SM. 128×128 is the basic Hopper-class cuBLAS/CUTLASS tile; None = off (as
    # on hardware whose catalog entry has no SM count).
    gemm_tile: Optional[tuple[int, int]] = (128, 128)
    # How routed experts' GEMMs launch: "grouped" (one kernel for all experts, whose tiles share waves: fused MoE
    # kernels) or "per_expert" (an eager loop, one GEMM per expert, each quantized on its own: moebench's torch path).
    expert_gemms: Literal["grouped", "per_expert"] = "grouped"
    comm_overlap: float = 0.0  # fraction of communication hidden behind compute (1.0 = two-batch overlap, perfectly)
    expert_imbalance: float = 1.0  # routed rows on the busiest EP rank / the mean (1.0 = uniform routing)
    # The same from a measured run's expert load, per EP rank count (imbalance.by_ep); where given it wins
    expert_imbalance_by_ep: Mapping[int, float] = field(default_factory=dict)
    mem_util: float = 0.9  # HBM share for weights + KV (the rest: activations, CUDA graphs, fragmentation)
    serving: Literal["continuous", "static"] = "continuous"  # static = one batch prefilled, then decoded (moebench run)
    step_overhead_ms: Mapping[str, float] = field(default_factory=dict)  # stage -> host overhead per forward (scheduler)
    # Host time per sequence per forward that a serving engine's scheduler, sampler and detokeniser add (grows with
    # the batch, so it shows at the thousands of sequences an offline run keeps in flight)
    seq_overhead_us: float = 0.0
    # The most sequences the engine keeps in flight per attention-DP group, the whole instance without DP attention
    # (vLLM's max_num_seqs, TensorRT-LLM's max_batch_size); None = only the KV cache limits it. More requests wait
    # for a slot (load.py).
    max_seqs: Optional[int] = None
    # Low-precision matmuls: tensor-core format ("fp8", "fp4") -> factor on the compute efficiency (their kernels
    # reach less of a higher peak), and "weight_only" -> factor on both roofs of a matmul whose weights the tensor
    # cores cannot run (MXFP4 on Hopper / MI300: dequantised in the kernel). Per architecture in presets.yaml.
    dtype_efficiency: Mapping[str, float] = field(default_factory=dict)
    # Speculative decoding / MTP: each decode step verifies `spec_tokens` drafted tokens per sequence, each accepted
    # with probability `spec_accept` given its predecessors were, so a step yields 1 + Σ accept^i tokens.
    spec_tokens: int = 0
    spec_accept: float = 0.0

    @property
    def tokens_per_step(self) -> float:
        """Tokens a decode step yields per sequence (1 without speculation)."""
        return 1.0 + sum(self.spec_accept**i for i in range(1, self.spec_tokens + 1))

    def imbalance(self, ep: int) -> float:
        """Routed rows on the busiest of `ep` expert-parallel ranks / the mean."""
        return self.expert_imbalance_by_ep.get(ep, self.expert_imbalance)

    def host_ms(self, stage: str, ops: float, expert_runs: float = 0.0) -> float:
        """CPU time (ms) to issue a step of `ops` ops that runs `expert_runs` routed experts (summed over layers)."""
        return (ops * self.host_us.get(stage, 0.0) + expert_runs * self.host_expert_us.get(stage, 0.0)) / 1e3

    def replace(self, **kw: Any) -> "Assumptions":
        return dataclasses.replace(self, **kw)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
