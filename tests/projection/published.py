"""Published serving measurements the projection is validated against (docs/projection.md), with their sources
and the conditions we had to infer. Run `python -m tests.projection.published` to print the validation table.

InferenceX rows: "Throughput/GPU" is total (input + output) tokens/s per GPU; the GPUs per instance (TP) are not
in the table, so they are inferred from the row itself: n = B·(ISL+OSL) / (TTFT + (OSL−1)·TPOT) / throughput per GPU,
rounded to a power of two (every row below lands within 7 % of one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from moebench.catalog import get_hardware
from moebench.projection import Assumptions, Layout, ServingScenario, device_for, evaluate, resolve_config, step
from moebench.projection.device import Device

IX = "SemiAnalysisAI/InferenceX-app@{}:packages/app/content/blog/{}"
IX_LLAMA = IX.format("2d1d3d6", "best-gpu-for-llama70b-inference.mdx") + " (1k/1k table, runs of 2025-10-29)"
IX_GPTOSS = IX.format("aebe3e0", "best-gpu-for-gptoss120b-inference.mdx") + " (1k/1k table)"
DS_OVERVIEW = ("https://github.com/deepseek-ai/open-infra-index/blob/main/202502OpenSourceWeek/"
               "day_6_one_more_thing_deepseekV3R1_inference_system_overview.md")
LMSYS_H100 = "https://lmsys.org/blog/2025-05-05-large-scale-ep/"
LMSYS_GB200 = "https://lmsys.org/blog/2025-06-16-gb200-part-1/"


@dataclass(frozen=True)
class Anchor:
    label: str
    model: str
    hardware: str
    dtype: str
    layout: tuple[int, int, int]  # n_gpus, attn_tp, ep
    prompt: int
    output: int
    source: str
    conditions: str
    tpot_ms: Optional[float] = None  # measured median TPOT at `batch` (continuous serving)
    batch: Optional[int] = None  # concurrency per instance
    total_tokens_per_s_per_gpu: Optional[float] = None
    # decode-pool anchors: decode tokens/s/GPU measured at an interactivity (tok/s/user) or a per-GPU batch
    decode_tokens_per_s_per_gpu: Optional[float] = None
    at_interactivity: Optional[float] = None
    batch_per_gpu: Optional[int] = None
    comm_overlap: float = 0.0  # what the deployment did; the table shows the default (0) and this


H800 = Device(  # shared/reference/catalog.yaml reference_gpus.h800_sxm: H100 compute and HBM, NVLink cut to ~160 GB/s
    id="h800_sxm", name="NVIDIA H800 SXM", flops_per_s={"bf16": 989e12, "fp8": 1979e12}, hbm_bytes_per_s=3.35e12,
    hbm_capacity_bytes=80e9, scale_up_bytes_per_s=160e9, domain_size=8, scale_out_bytes_per_s=50e9,
    usd_per_gpu_hour=2.0, price_tier="lease assumption by DeepSeek", price_source=DS_OVERVIEW, vendor="nvidia",
    arch="hopper", sm_count=132,
    matmul_ceiling=get_hardware("h100_sxm").matmul_ceiling(),  # the H100's chip
)

ANCHORS = (
    Anchor("Llama-3.3-70B FP8, H100, vLLM", "llama3:70b", "h100_sxm", "fp8", (2, 2, 1), 1024, 1024, IX_LLAMA,
           "conc 64, TP2 inferred", tpot_ms=29.1, batch=64, total_tokens_per_s_per_gpu=2123.1),
    Anchor("Llama-3.3-70B FP8, H200, TRT-LLM", "llama3:70b", "h200_sxm", "fp8", (1, 1, 1), 1024, 1024, IX_LLAMA,
           "conc 128, TP1 inferred", tpot_ms=45.8, batch=128, total_tokens_per_s_per_gpu=5312.2),
    Anchor("Llama-3.3-70B FP4, B200, TRT-LLM", "llama3:70b", "b200", "fp4", (1, 1, 1), 1024, 1024, IX_LLAMA,
           "conc 128, TP1 inferred", tpot_ms=22.2, batch=128, total_tokens_per_s_per_gpu=10967.8),
    Anchor("Llama-3.3-70B FP8, MI300X, vLLM", "llama3:70b", "mi300x", "fp8", (1, 1, 1), 1024, 1024, IX_LLAMA,
           "conc 64, TP1 inferred", tpot_ms=50.9, batch=64, total_tokens_per_s_per_gpu=2443.2),
    Anchor("Llama-3.3-70B FP4, MI355X, vLLM", "llama3:70b", "mi355x", "fp4", (1, 1, 1), 1024, 1024, IX_LLAMA,
           "conc 64, TP1 inferred", tpot_ms=28.5, batch=64, total_tokens_per_s_per_gpu=4377.6),
    Anchor("gpt-oss-120b MXFP4, H100, vLLM", "gpt-oss:120b", "h100_sxm", "fp4", (2, 2, 1), 1024, 1024, IX_GPTOSS,
           "conc 64, TP2 inferred; fp4 weight-only on Hopper", tpot_ms=15.0, batch=64, total_tokens_per_s_per_gpu=4170.9),
    Anchor("gpt-oss-120b MXFP4, H200, TRT-LLM", "gpt-oss:120b", "h200_sxm", "fp4", (1, 1, 1), 1024, 1024, IX_GPTOSS,
           "conc 64, TP1 inferred; fp4 weight-only on Hopper", tpot_ms=20.6, batch=64, total_tokens_per_s_per_gpu=6063.8),
    Anchor("gpt-oss-120b FP4, B200, TRT-LLM", "gpt-oss:120b", "b200", "fp4", (1, 1, 1), 1024, 1024, IX_GPTOSS,
           "conc 256, TP1 inferred", tpot_ms=17.9, batch=256, total_tokens_per_s_per_gpu=28012.9),
    Anchor("DeepSeek-V3/R1 FP8, H800, DeepSeek production decode", "deepseek-v3:671b", "h800_sxm", "fp8", (144, 1, 144),
           4096, 1024, DS_OVERVIEW,
           "EP144 / DP144 decode pool, 14.8k output tok/s per node at 20–22 tok/s/user; context not published "
           "(4k prompt assumed); 5-stage pipeline overlap (comm_overlap 1); MTP not modelled",
           decode_tokens_per_s_per_gpu=14800 / 8, at_interactivity=21.0, comm_overlap=1.0),
    Anchor("DeepSeek-V3 FP8, 9×8 H100, SGLang decode", "deepseek-v3:671b", "h100_sxm", "fp8", (72, 1, 72), 2000, 200,
           LMSYS_H100, "EP72 / DP72 decode pool, 22.3k output tok/s per node, 2000-token inputs; decode batch assumed "
           "saturated at 256/GPU; two-batch overlap (comm_overlap 1)",
           decode_tokens_per_s_per_gpu=22300 / 8, batch_per_gpu=256, comm_overlap=1.0),
    Anchor("DeepSeek-V3 FP8, GB200 NVL72 (48 GPUs), SGLang decode", "deepseek-v3:671b", "gb200_nvl72", "fp8", (48, 1, 48),
           2000, 200, LMSYS_GB200, "EP48 decode pool on 12 trays, 7,583 tok/s/GPU, 2000-token inputs; decode batch "
           "assumed saturated at 256/GPU; two-batch overlap (comm_overlap 1)",
           decode_tokens_per_s_per_gpu=7583, batch_per_gpu=256, comm_overlap=1.0),
)


def _device(hid: str) -> Device:
    return H800 if hid == "h800_sxm" else device_for(hid)


def project_anchor(an: Anchor, base: Assumptions = Assumptions()) -> dict[str, Optional[float]]:
    """The projection under the anchor's conditions (with `base`'s assumptions): {metric: projected}."""
    cfg, dev = resolve_config(an.model), _device(an.hardware)
    lay = Layout(*an.layout)
    sc = ServingScenario(an.prompt, an.output, weight_dtype=an.dtype)
    out: dict[str, Optional[float]] = {}
    if an.batch is not None:
        p = evaluate(cfg, lay, dev, sc, base.replace(serving="continuous"), an.batch)
        out["tpot_ms"] = p.tpot_ms
        out["total_tokens_per_s_per_gpu"] = p.per_gpu("total")
        return out
    # decode pools (prefill runs elsewhere): TPOT is the decode step
    a = base.replace(serving="static")
    if an.batch_per_gpu is not None:
        p = evaluate(cfg, lay, dev, sc, a, an.batch_per_gpu * lay.n_gpus)
    else:  # the largest batch whose step still meets the interactivity (steps grow with the batch)
        lo, hi = 1, 4096
        target_ms = 1000 / an.at_interactivity
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if step(cfg, lay, dev, sc, a, "decode", mid * lay.n_gpus).time_ms <= target_ms:
                lo = mid
            else:
                hi = mid - 1
        p = evaluate(cfg, lay, dev, sc, a, lo * lay.n_gpus)
    out["decode_tokens_per_s_per_gpu"] = p.decode_tokens_per_s_per_gpu
    out["tpot_ms"] = p.decode.time_ms
    out["batch_per_gpu"] = p.batch / lay.n_gpus
    out["fits"] = float(p.memory.fits)
    return out


def errors(an: Anchor, base: Assumptions = Assumptions()) -> dict[str, tuple[float, float, float]]:
    """metric -> (measured, projected, relative error of the projection)."""
    proj = project_anchor(an, base)
    res = {}
    for metric in ("tpot_ms", "total_tokens_per_s_per_gpu", "decode_tokens_per_s_per_gpu"):
        meas = getattr(an, metric)
        if meas is not None and proj.get(metric) is not None:
            res[metric] = (meas, proj[metric], proj[metric] / meas - 1)
    return res


def table(base: Assumptions = Assumptions()) -> str:
    """Markdown rows: default assumptions (no overlap), and for the overlapped deployments also full overlap."""
    rows = ["| # | measurement | conditions | metric | measured | projected | error | projected, full overlap | error |",
            "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for i, an in enumerate(ANCHORS, 1):
        plain = errors(an, base)
        over = errors(an, base.replace(comm_overlap=1.0)) if an.comm_overlap else {}
        for metric, (m, p, e) in plain.items():
            o = f"{over[metric][1]:,.0f} | {over[metric][2]:+.0%}" if metric in over else "— | —"
            rows.append(f"| {i} | {an.label} | {an.conditions} | {metric} | {m:,.1f} | {p:,.1f} | {e:+.0%} | {o} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
    errs = [abs(e) for an in ANCHORS for (_, _, e) in errors(an).values()]
    print(f"\nmedian |error| {sorted(errs)[len(errs) // 2]:.0%}, geometric mean ratio "
          f"{math.exp(sum(math.log(1 + e) for an in ANCHORS for (_, _, e) in errors(an).values()) / len(errs)):.2f}")
