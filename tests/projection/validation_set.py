"""The published validation set (tests/projection/data/published.yaml, read by published_set.py) as measurements the
projection can score: each point's throughput and TPOT under its conditions, or why the model cannot express it.
Used by benchmarks/projection_fit.py (fit and table) and test_validation.py (the held-out band holds)."""

from __future__ import annotations

from typing import Optional

from moebench.projection import Layout, device_for, resolve_config
from moebench.projection.fit import Measurement
from tests.projection.published import H800
from tests.projection.published_set import PublishedPoint, load_published

ENGINES = {"vllm": "vllm", "sglang": "sglang", "tensorrt-llm": "trt-llm", "DeepSeek in-house": "sglang"}
# How much of HBM weights + KV may take, as each engine sizes its cache: vLLM's gpu_memory_utilization 0.9 of the
# total; SGLang's mem_fraction_static ~0.88; TensorRT-LLM's kv_cache_free_gpu_memory_fraction 0.9 of what the
# weights leave free (≈ 0.95 of the total for a model that fills most of it).
MEM_UTIL = {"vllm": 0.9, "sglang": 0.88, "trt-llm": 0.95}
THROUGHPUT = ("total_tok_s_per_gpu", "output_tok_s", "output_tok_s_per_gpu", "decode_tok_s_per_gpu")
SCORED = THROUGHPUT + ("tpot_ms",)


def _metric(p: PublishedPoint, name: str, value: float) -> tuple[str, float]:
    if name == "output_tok_s":
        return "output_tokens_per_s_per_gpu", value / p.n_gpus
    return {"total_tok_s_per_gpu": "total_tokens_per_s_per_gpu", "output_tok_s_per_gpu": "output_tokens_per_s_per_gpu",
            "decode_tok_s_per_gpu": "decode_tokens_per_s_per_gpu", "tpot_ms": "tpot_ms", "ttft_ms": "ttft_ms",
            "tok_s_per_user": "interactivity_tokens_per_s_per_user"}[name], value


def measurements(p: PublishedPoint) -> tuple[list[Measurement], Optional[str]]:
    """The point's scored metrics as measurements, or why the projection cannot express it."""
    if p.unsupported and p.hardware != "h800_sxm":
        return [], p.unsupported
    engine = ENGINES.get(p.engine.name)
    if engine is None:
        return [], f"engine {p.engine.name!r} has no preset (its efficiencies are not those of vLLM, SGLang or TRT-LLM)"
    lo = p.layout
    if lo.tp * lo.dp * lo.pp != p.n_gpus:
        return [], f"layout tp{lo.tp}·dp{lo.dp}·pp{lo.pp} is not the {p.n_gpus} GPUs (prefill/decode pools not published)"
    if lo.disaggregated and p.load.kind not in ("batch", "interactivity"):
        return [], "disaggregated system measured end to end; the prefill/decode pool sizes are not published"
    ep = p.n_gpus // lo.pp if lo.ep > 1 else 1
    lay = Layout(p.n_gpus, lo.tp, ep, lo.pp)
    dev = H800 if p.hardware == "h800_sxm" else device_for(p.hardware)
    cfg = resolve_config(p.model)
    # the KV format is seldom published: TensorRT-LLM's fp8/fp4 checkpoints quantize it to fp8; vLLM and SGLang keep
    # it in 16 bits unless told otherwise
    kv = "fp8" if engine == "trt-llm" and p.precision.weights in ("fp8", "fp4") else "bf16"
    load = {"concurrency": "concurrency", "request_rate": "rate", "offline": "offline"}.get(p.load.kind)
    value = p.load.value
    if p.load.kind == "batch" and lo.disaggregated:
        load, value = "decode_batch_per_gpu", (p.load.value if p.load.per == "gpu" else p.load.value / p.n_gpus)
    elif p.load.kind == "interactivity":
        load = "decode_interactivity"
    elif p.load.kind == "batch":
        load = "concurrency"
    if p.load.kind == "concurrency" and p.load.per == "gpu":
        value = p.load.value * p.n_gpus
    overlap = 1.0 if lo.disaggregated and ep > 1 else 0.0  # wide-EP decode pools run two-batch overlap
    out = []
    for m in p.metrics:
        if m.name not in SCORED:
            continue
        metric, val = _metric(p, m.name, m.value)
        out.append(Measurement(
            id=f"{p.id}/{metric}", model=p.model, device=dev, engine=engine, layout=lay, prompt=p.input_tokens,
            output=max(2, p.output_tokens), weight_dtype="fp4" if p.precision.weights == "int4" else p.precision.weights,
            kv_dtype=kv, load=load, load_value=value, metric=metric, value=val, split=p.split,
            source_group=p.source_group, comm_overlap=overlap, mem_util=MEM_UTIL[engine],
            kind="moe" if cfg.is_moe else "dense"))
    return out, None


def load_set() -> tuple[list[Measurement], list[tuple[str, str]]]:
    pts, skipped = [], []
    for p in load_published().points:
        ms, why = measurements(p)
        if why:
            skipped.append((p.id, why))
        pts.extend(ms)
    return pts, skipped
