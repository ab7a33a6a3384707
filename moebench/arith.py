"""The shape arithmetic every estimate shares: bytes per element, parameters of the FFN pieces, and how many
experts a batch touches.

Pure functions of whole numbers, importing neither torch nor any other moebench module, so that the models'
cost model (models/config.py), the projection (projection/cost.py, layout.py) and the kernel benchmarks
(bench/runner.py) count with the same formulas. Conventions: a GLU FFN is gate, up and down projections of
D×F each; a matmul costs 2 FLOPs per weight per row.
"""

from __future__ import annotations

# Bytes stored per element. fp4 is NVFP4: 4-bit values plus one fp8 scale per 16 (0.5 + 1/16); fp8 block scales
# (one fp32 per 128×128 tile) are under 0.03 % and left out.
BYTES_PER_ELEM = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "fp4": 0.5625}
# torch's spellings (what a run records) and the published format names, each to one key of BYTES_PER_ELEM
DTYPE_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "float8": "fp8", "fp8_e4m3": "fp8",
                 "nvfp4": "fp4", "mxfp4": "fp4"}


def dtype_key(name: str) -> str | None:
    """The BYTES_PER_ELEM key of a dtype written any of the ways moebench meets it (`bfloat16`, `torch.bfloat16`,
    `BF16`), or None when it is not one of them."""
    n = name.lower().removeprefix("torch.")
    n = DTYPE_ALIASES.get(n, n)
    return n if n in BYTES_PER_ELEM else None


def dtype_bytes(name: str) -> float:
    """Bytes per element of `name` (see dtype_key); a KeyError naming it when unknown."""
    key = dtype_key(name)
    if key is None:
        raise KeyError(name)
    return BYTES_PER_ELEM[key]


def glu_params(d: int, f: int) -> int:
    """Weights of one GLU FFN (gate, up, down) of model width `d` and hidden width `f`."""
    return 3 * d * f


def expert_params(d: int, f: int, bias: bool = False) -> int:
    """Weights of one routed expert: its GLU, plus the gate/up and down biases where the family has them."""
    return glu_params(d, f) + ((2 * f + d) if bias else 0)


def experts_touched(experts: int, top_k: int, tokens: int) -> float:
    """Expected distinct experts that `tokens` tokens, each picking `top_k` of `experts` uniformly, hit at least
    once: E·(1−(1−K/E)^T). 0.0 without experts."""
    if not experts:
        return 0.0
    return experts * (1 - (1 - top_k / experts) ** tokens)
