"""What is served: sequence lengths and number formats, and which weights each format applies to."""

from __future__ import annotations

from dataclasses import dataclass

from moebench.errors import BadInput
from moebench.arith import dtype_bytes
from moebench.projection.device import norm_dtype


@dataclass(frozen=True)
class ServingScenario:
    prompt_tokens: int
    output_tokens: int
    weight_dtype: str = "bf16"  # bf16 | fp8 | fp4 (fp32/fp16 for calibration sources)
    kv_dtype: str = "bf16"
    act_dtype: str = "bf16"

    def __post_init__(self) -> None:
        if self.prompt_tokens < 1:
            raise BadInput(f"prompt tokens must be ≥ 1 (got {self.prompt_tokens})")
        if self.output_tokens < 2:
            raise BadInput(f"output tokens must be ≥ 2 so that TPOT exists (got {self.output_tokens})")
        for f in ("weight_dtype", "kv_dtype", "act_dtype"):
            object.__setattr__(self, f, norm_dtype(getattr(self, f)))

    # Which weights a format covers, as deployed checkpoints do it: fp8 (DeepSeek-V3, Llama FP8) quantizes every
    # linear layer of the blocks; fp4 (NVFP4 / MXFP4: DeepSeek-R1-FP4, gpt-oss) quantizes the FFN/expert weights
    # and keeps attention in fp8. Embeddings and the LM head stay in 16 bits in all of them.
    @property
    def ffn_dtype(self) -> str:
        return self.weight_dtype

    @property
    def attn_dtype(self) -> str:
        return "fp8" if self.weight_dtype == "fp4" else self.weight_dtype

    @property
    def embed_dtype(self) -> str:
        return "fp32" if self.weight_dtype == "fp32" else "bf16"

    def bytes_of(self, dtype: str) -> float:
        return float(dtype_bytes(dtype))

    @property
    def act_bytes(self) -> float:
        return self.bytes_of(self.act_dtype)

    @property
    def kv_bytes(self) -> float:
        return self.bytes_of(self.kv_dtype)

    @property
    def decode_context(self) -> float:
        """Mean tokens attended over the decode steps (S+1 … S+O−1): KV reads are linear in it, so the mean is exact."""
        return self.prompt_tokens + self.output_tokens / 2
