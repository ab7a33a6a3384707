"""Tokenomics as pure functions of measured numbers and catalog facts (definitions: docs/measure.md).

No torch, no I/O: every function here is a formula, unit-tested against hand-computed values.
"""

from __future__ import annotations

from typing import Any, Optional

SECONDS_PER_HOUR = 3600.0
INPUT_WEIGHT, OUTPUT_WEIGHT = 3.0, 1.0  # Artificial Analysis' 3:1 input:output blend


def usd_per_mtok(usd_per_gpu_hour: float, n_gpus: int, tokens_per_s: float) -> Optional[float]:
    """$ per million tokens = price × n_gpus / (tokens_per_s × 3600) × 1e6 (InferenceMAX's formula).

    `tokens_per_s` is the whole deployment's rate (all GPUs together), so every GPU's hours are paid for.
    """
    if tokens_per_s <= 0:
        return None
    return usd_per_gpu_hour * n_gpus / (tokens_per_s * SECONDS_PER_HOUR) * 1e6


def phase_usd_per_mtok(usd_per_gpu_hour: float, n_gpus: int, batch: int, prompt_tokens: int, output_tokens: int,
                       prefill_ms: float, step_ms: float) -> tuple[float, float]:
    """(input, output) USD per million tokens with each phase's time priced into its own tokens: the prefill into
    the B × prompt input tokens, the (output − 1) decode steps into the B × output output tokens (the first output
    token comes with the prefill). Unlike `usd_per_mtok` of input and output rates, which charge the whole run's
    time to each kind (the published convention), input × input tokens + output × output tokens is the run's cost.
    """
    usd_per_ms = usd_per_gpu_hour * n_gpus / (SECONDS_PER_HOUR * 1000.0)
    return (usd_per_ms * prefill_ms / (batch * prompt_tokens) * 1e6,
            usd_per_ms * (output_tokens - 1) * step_ms / (batch * output_tokens) * 1e6)


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


def intelligence_per_usd_samples(score: Optional[float], blended_usd: list[float]) -> Optional[list[float]]:
    """The score per $ of every repeat, or None where one has none (no score; price 0, a machine you own)."""
    xs = [intelligence_per_usd(score, b) for b in blended_usd]
    return None if not xs or None in xs else xs  # type: ignore[return-value]


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


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (higher x and higher y are better), by x."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1]))
    front, best_y = [], float("-inf")
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return sorted(front, key=lambda i: points[i][0])


def cost_at_interactivity(records: list[dict[str, Any]], target: float) -> Optional[tuple[float, str, str]]:
    """Blended $/M at `target` tokens/s per user, read off the load levels' Pareto front (interactivity up, $/M
    down; medians of each record's `interactivity_tokens_per_s_per_user` and `usd_per_mtok.blended`) by linear
    interpolation between the two front levels around it: ($/M, lower level, upper level), or None when no level
    reaches the target or none is priced. Below the front's least interactive level, that level's own $/M."""
    pts, labels = [], []
    for r in records:
        inter, usd = r["metrics"].get("interactivity_tokens_per_s_per_user"), r["metrics"].get("usd_per_mtok")
        if inter and usd:
            pts.append((inter["median"], -usd["blended"]["median"]))
            labels.append(r["load"]["label"])
    front = pareto_front(pts)  # by interactivity, ascending
    for lo, hi in zip([None] + front, front):
        x1, y1 = pts[hi]
        if x1 < target:
            continue
        if lo is None or x1 == target:
            return -y1, labels[hi], labels[hi]
        x0, y0 = pts[lo]
        return -(y0 + (y1 - y0) * (target - x0) / (x1 - x0)), labels[lo], labels[hi]
    return None
