"""`kind: kernel` workloads: one kernel op over a layer shape and a sweep of token counts, several providers.

    kind: kernel
    name: mixtral-8x7b
    op: fused_moe
    shape: {experts: 8, top_k: 2, hidden: 4096, ffn: 14336, activation: silu, transformers_block: mixtral}
    tokens: [1, 8, 64, 512, 4096]
    providers: [triton, torch-grouped, torch-ref]
    dtype: auto          # bf16 on CUDA, fp32 on CPU
    device: auto
    timing: {warmup: 3, repeats: 20}
    cpu: {tokens: [1, 16, 256], providers: [torch-ref, transformers-eager]}   # used when the device is a CPU

Providers (each point is checked against `fused_moe_ref` before it is timed):
  triton                 moebench_kernels.fused_moe (CUDA only: the interpreter is not timed)
  torch-ref              moebench_kernels.fused_moe_ref: rows sorted by expert, one matmul pair per expert
  torch-grouped          moebench_kernels.fused_moe_grouped_mm: torch._grouped_mm over the sorted rows
  torch-loop             the textbook loop over all E experts with boolean masks (no sorting)
  transformers-eager     transformers' SparseMoeBlock (shape.transformers_block), experts_implementation eager
  transformers-grouped   the same block with experts_implementation grouped_mm (transformers' default)
  dense-equiv            not an MoE: one dense GEMM pair with the same FLOPs (T·K rows), the cuBLAS/BLAS bar
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from moebench.strict import Strict as _Strict

Provider = Literal["triton", "torch-ref", "torch-grouped", "torch-loop", "transformers-eager",
                   "transformers-grouped", "dense-equiv"]
PROVIDERS: tuple[str, ...] = Provider.__args__  # type: ignore[attr-defined]


class KernelShape(_Strict):
    """One MoE layer's expert shape, as the published config.json gives it."""

    experts: int = Field(ge=1, le=1024)
    top_k: int = Field(ge=1, le=16)
    hidden: int = Field(ge=1, description="model dim D")
    ffn: int = Field(ge=1, description="expert hidden dim F (moe_intermediate_size)")
    activation: Literal["silu", "swiglu_oai"] = "silu"
    bias: bool = Field(default=False, description="expert biases b13/b2 (GPT-OSS)")
    transformers_block: Optional[Literal["mixtral", "qwen3_moe"]] = Field(
        default=None, description="transformers class for the transformers-* providers")

    @model_validator(mode="after")
    def _k_le_e(self) -> "KernelShape":
        if self.top_k > self.experts:
            raise ValueError(f"top_k ({self.top_k}) must not exceed experts ({self.experts})")
        return self


class KernelTiming(_Strict):
    warmup: int = Field(default=2, ge=0)
    repeats: int = Field(default=10, ge=1)


class CpuOverride(_Strict):
    """What runs instead when the device resolves to a CPU (fp32 on a few cores: the big points take hours)."""

    tokens: Optional[list[Annotated[int, Field(ge=1, le=65536)]]] = Field(default=None, min_length=1)
    providers: Optional[list[Provider]] = Field(default=None, min_length=1)
    timing: Optional[KernelTiming] = None


class KernelWorkload(_Strict):
    kind: Literal["kernel"]
    name: str
    description: str = ""
    op: Literal["fused_moe"] = "fused_moe"
    shape: KernelShape
    tokens: list[Annotated[int, Field(ge=1, le=65536)]] = Field(min_length=1)
    providers: list[Provider] = Field(min_length=1)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    timing: KernelTiming = KernelTiming()
    hardware: str = "auto"
    seed: int = 0
    cpu: Optional[CpuOverride] = None

    @model_validator(mode="after")
    def _providers(self) -> "KernelWorkload":
        for provs in (self.providers, (self.cpu.providers if self.cpu else None) or []):
            if len(set(provs)) != len(provs):
                raise ValueError("providers must not repeat")
            if any(p.startswith("transformers-") for p in provs) and self.shape.transformers_block is None:
                raise ValueError("transformers-* providers need shape.transformers_block (mixtral | qwen3_moe)")
        return self

    def for_device(self, device: str) -> "KernelWorkload":
        """This workload with the `cpu:` overrides applied when `device` is a CPU."""
        if device != "cpu" or self.cpu is None:
            return self
        upd = {k: v for k, v in (("tokens", self.cpu.tokens), ("providers", self.cpu.providers),
                                 ("timing", self.cpu.timing)) if v is not None}
        return self.model_copy(update=upd)
