"""Tokenomics as pure functions of measured numbers and catalog facts (definitions: docs/measure.md).

No torch, no I/O: every function here is a formula, unit-tested against hand-computed values.
"""

from __future__ import annotations

from typing import Optional

SECONDS_PER_HOUR = 3600.0
INPUT_WEIGHT, OUTPUT_WEIGHT = 3.0, 1.0  # Artificial Analysis' 3:1 input:output blend


def usd_per_mtok(usd_per_gpu_hour: float, n_gpus: int, tokens_per_s: float) -> Optional[float]:
    """$ per million tokens = price × n_gpus / (tokens_per_s × 3600) × 1e6 (InferenceMAX's formula).

    `tokens_per_s` is the whole deployment's rate (all GPUs together), so every GPU's hours are paid for.
    """
    if tokens_per_s <= 0:
        return None
    return usd_per_gpu_hour * n_gpus / (tokens_per_s * SECONDS_PER_HOUR) * 1e6


def blended_usd_per_mtok(input_usd: float, output_usd: float) -> float:
    """(3 × input + 1 × output) / 4."""
    return (INPUT_WEIGHT * input_usd + OUTPUT_WEIGHT * output_usd) / (INPUT_WEIGHT + OUTPUT_WEIGHT)


def interactivity(tpot_ms: float) -> Optional[float]:
    """Tokens per second seen by one user: 1000 / TPOT_ms."""
    return 1000.0 / tpot_ms if tpot_ms > 0 else None


def per_gpu(tokens_per_s: float, n_gpus: int) -> float:
    return tokens_per_s / n_gpus


def joules_per_token(energy_j: Optional[float], tokens: int) -> Optional[float]:
    if energy_j is None or tokens <= 0:
        return None
    return energy_j / tokens


def tokens_per_mw(tokens_per_s: float, allin_kw_per_gpu: Optional[float], n_gpus: int) -> Optional[float]:
    """tokens/s per megawatt of all-in facility power: tokens_per_s / (kW per GPU × n_gpus / 1000)."""
    if not allin_kw_per_gpu:
        return None
    return tokens_per_s / (allin_kw_per_gpu * n_gpus / 1000.0)


def intelligence_per_usd(score: Optional[float], blended_usd: Optional[float]) -> Optional[float]:
    """Published quality score per blended $/M tokens (never mix index versions in one comparison)."""
    if score is None or not blended_usd:
        return None
    return score / blended_usd


def eval_cost_usd(eval_tokens: float, usd_per_mtok_: float) -> float:
    """Cost to run an eval that needs `eval_tokens` tokens at a measured $/M tokens."""
    return eval_tokens / 1e6 * usd_per_mtok_


def mfu(flops_per_s: float, peak_flops_per_s: Optional[float]) -> Optional[float]:
    return flops_per_s / peak_flops_per_s if peak_flops_per_s else None


def mbu(bytes_per_s: float, peak_bytes_per_s: Optional[float]) -> Optional[float]:
    return bytes_per_s / peak_bytes_per_s if peak_bytes_per_s else None


def active_ratio(active_params: int, total_params: int) -> float:
    return active_params / total_params


def request_rates(batch: int, prompt_tokens: int, output_tokens: int, ttft_ms: float, tpot_ms: float) -> dict[str, float]:
    """Input/output/total tokens per second of one batch of requests run end to end.

    Wall time = TTFT + (output_tokens − 1) × TPOT; the first output token comes with the prefill.
    """
    wall_s = (ttft_ms + (output_tokens - 1) * tpot_ms) / 1000.0
    return {
        "input": batch * prompt_tokens / wall_s,
        "output": batch * output_tokens / wall_s,
        "total": batch * (prompt_tokens + output_tokens) / wall_s,
    }
