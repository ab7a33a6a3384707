"""What is served: sequence lengths and number formats, and which weights each format applies to.

Lengths are fixed (every request `prompt_tokens` in, `output_tokens` out, as the random datasets of serving
benchmarks send them) or a workload's distribution. Most of a step's cost is linear in the lengths, so the means
are exact for it; attention and the KV cache are not, and for them a distribution is summarised by its second
moments (`LengthMoments`): a long-tailed output distribution decodes over much longer contexts than its mean says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional

from moebench.errors import BadInput
from moebench.arith import dtype_bytes
from moebench.projection.device import norm_dtype


@dataclass(frozen=True)
class LengthMoments:
    """A workload's prompt (P) and output (O) lengths per request, as the moments the costs need: E[P], E[O],
    E[P²], E[P·O], E[O²]."""

    prompt: float
    output: float
    prompt_sq: float
    prompt_output: float
    output_sq: float

    def __post_init__(self) -> None:
        if self.prompt < 1 or self.output < 2:
            raise BadInput(f"mean lengths must be ≥ 1 prompt and ≥ 2 output tokens "
                           f"(got {self.prompt:g}, {self.output:g})")
        # a variance cannot be negative; rounding in a recorded summary may leave a hair below
        if self.prompt_sq < self.prompt**2 * (1 - 1e-9) or self.output_sq < self.output**2 * (1 - 1e-9):
            raise BadInput("length moments are inconsistent: E[X²] must be ≥ E[X]²")
        if self.prompt_output**2 > self.prompt_sq * self.output_sq * (1 + 1e-9):
            raise BadInput("length moments are inconsistent: E[P·O]² must be ≤ E[P²]·E[O²]")

    @classmethod
    def of(cls, pairs: Iterable[tuple[float, float]]) -> "LengthMoments":
        """The moments of (prompt, output) token counts, one pair per request."""
        n = sp = so = spp = spo = soo = 0.0
        for pr, out in pairs:
            n, sp, so, spp, spo, soo = n + 1, sp + pr, so + out, spp + pr * pr, spo + pr * out, soo + out * out
        if n == 0:
            raise BadInput("no request lengths given")
        return cls(sp / n, so / n, spp / n, spo / n, soo / n)

    @classmethod
    def uniform(cls, prompt: int, output: int, range_ratio: float) -> "LengthMoments":
        """What a benchmark client's random dataset sends (moebench's endpoint `random` dataset, vLLM's and SGLang's
        --random-range-ratio): each request's prompt and output lengths drawn independently and uniformly from the
        integers in [max(1, int(range_ratio·n)), n] for the nominal n."""
        if not 0.0 < range_ratio <= 1.0:
            raise BadInput(f"range ratio {range_ratio:g} is not in (0, 1]")

        def moments(n: int) -> tuple[float, float]:
            a = max(1, int(n * range_ratio))
            return (a + n) / 2, (n * (n + 1) * (2 * n + 1) - (a - 1) * a * (2 * a - 1)) / 6 / (n - a + 1)

        (p1, p2), (o1, o2) = moments(prompt), moments(output)
        return cls(p1, o1, p2, p1 * o1, o2)


@dataclass(frozen=True)
class ServingScenario:
    prompt_tokens: int  # the mean, where `lengths` gives a distribution
    output_tokens: int
    weight_dtype: str = "bf16"  # bf16 | fp8 | fp4 (fp32/fp16 for calibration sources)
    kv_dtype: str = "bf16"
    act_dtype: str = "bf16"
    lengths: Optional[LengthMoments] = None  # None: every request has exactly these lengths

    def __post_init__(self) -> None:
        if self.prompt_tokens < 1:
            raise BadInput(f"prompt tokens must be ≥ 1 (got {self.prompt_tokens})")
        if self.output_tokens < 2:
            raise BadInput(f"output tokens must be ≥ 2 so that TPOT exists (got {self.output_tokens})")
        for f in ("weight_dtype", "kv_dtype", "act_dtype"):
            object.__setattr__(self, f, norm_dtype(getattr(self, f)))

    @classmethod
    def of_lengths(cls, m: LengthMoments, **formats: str) -> "ServingScenario":
        """A workload whose lengths vary: the means, carrying the moments for the costs that are not linear."""
        return cls(max(1, round(m.prompt)), max(2, round(m.output)), lengths=m, **formats)

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
        """Mean tokens attended per decode step (S+1 … S+O−1): KV reads are linear in it, so the mean is exact. Over
        a distribution each request attends O·P + O²/2 tokens in all over its O steps, so the mean per step is
        (E[P·O] + E[O²]/2) / E[O]: long outputs weigh more, having more steps."""
        m = self.lengths
        if m is None:
            return self.prompt_tokens + self.output_tokens / 2
        return (m.prompt_output + m.output_sq / 2) / m.output

    @property
    def prefill_attention_tokens(self) -> float:
        """The prompt length whose causal attention costs what the mean prompt's does: P fixed; √E[P²] over a
        distribution (a prompt's attention FLOPs grow as P²/2)."""
        m = self.lengths
        return float(self.prompt_tokens) if m is None else math.sqrt(m.prompt_sq)

    @property
    def kv_tokens_per_seq(self) -> float:
        """KV-cache tokens a sequence in flight is sized for: its prompt + output (the cache must hold it when it
        finishes). Over a distribution a sequence is in flight for O steps, so the sequences in flight are weighted
        by O: E[O·(P + O)] / E[O]."""
        m = self.lengths
        if m is None:
            return float(self.prompt_tokens + self.output_tokens)
        return (m.prompt_output + m.output_sq) / m.output
