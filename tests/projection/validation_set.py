"""The published validation set (tests/projection/data/published.yaml, read by published_set.py) as measurements the
projection can score: each point's throughput and TPOT under its conditions, or why the model cannot express it.
Used by benchmarks/projection_fit.py (fit and table) and test_validation.py (the held-out band holds)."""

from __future__ import annotations

from typing import Optional

from moebench.errors import MoebenchError
from moebench.projection import Layout, device_for, resolve_config
from moebench.projection.layout import check_runs
from moebench.projection.fit import Measurement
from tests.projection.published import H800
from tests.projection.published_set import PublishedPoint, load_published

# How much of HBM weights + KV may take, as each engine sizes its cache: vLLM's gpu_memory_utilization 0.9 of the
# total; SGLang's mem_fraction_static ~0.88; TensorRT-LLM's kv_cache_free_gpu_memory_fraction 0.9 of what the
# weights leave free (≈ 0.95 of the total for a model that fills most of it).
MEM_UTIL = {"vllm": 0.9, "sglang": 0.88, "trt-llm": 0.95}
# a point's headline (its error is the one summarised), in order of preference: a throughput, else a latency
HEADLINE = ("total_tok_s_per_gpu", "output_tok_s", "decode_tok_s_per_gpu", "output_tok_s_per_gpu", "request_latency_s")
NAMES = {"total_tok_s_per_gpu": "total_tokens_per_s_per_gpu", "output_tok_s": "output_tokens_per_s_per_gpu",
         "output_tok_s_per_gpu": "output_tokens_per_s_per_gpu", "decode_tok_s_per_gpu": "decode_tokens_per_s_per_gpu",
         "tpot_ms": "tpot_ms", "ttft_ms": "ttft_ms", "request_latency_s": "request_latency_s"}


def engine_of(name: str) -> Optional[str]:
    """The preset engine of a published engine name ("vLLM 0.9.0…", "TensorRT-LLM"); None: one without a preset."""
    n = name.lower()
    if "+" in n or "dynamo" in n:  # a disaggregating or AMD-specific stack around the engine
        return None
    for key, engine in (("vllm", "vllm"), ("tensorrt-llm", "trt-llm"), ("sglang", "sglang"), ("deepseek", "sglang")):
        if n.startswith(key):
            return engine
    return None


def measurements(p: PublishedPoint) -> tuple[list[Measurement], Optional[str]]:
    """The point's headline, TPOT and (under a concurrency) TTFT as measurements, or why the projection cannot
    express it."""
    if p.unsupported and p.hardware != "h800_sxm":
        return [], p.unsupported
    if p.input_tokens is None or p.output_tokens is None:
        return [], "input/output lengths not published"
    if p.precision.weights == "not published":
        return [], "weight precision not published"
    if p.engine.speculative:
        return [], f"speculative decoding ({p.engine.speculative})"
    headline = next((m for m in HEADLINE if p.metric(m) is not None), None)
    if headline is None:
        return [], "no throughput or request latency published"
    engine = engine_of(p.engine.name)
    if engine is None:
        return [], f"engine {p.engine.name!r} has no preset (only vLLM, SGLang and TensorRT-LLM have fitted efficiencies)"
    lo = p.layout
    if lo.disaggregated and p.load.kind not in ("batch", "interactivity"):
        return [], "disaggregated system measured end to end (the prefill/decode pool sizes are not published)"
    if lo.tp * lo.dp * lo.pp != p.n_gpus:
        return [], f"layout tp{lo.tp}·dp{lo.dp}·pp{lo.pp} is not the {p.n_gpus} GPUs"
    if p.load.value is None and p.load.kind != "offline":
        return [], f"{p.load.kind} load without its value"
    cfg = resolve_config(p.model)
    ep = p.n_gpus // lo.pp if lo.ep > 1 and cfg.is_moe else 1
    try:
        lay = Layout(p.n_gpus, lo.tp, ep, lo.pp)
        check_runs(cfg, p.model, lay, "layout", f"tp={lo.tp},dp={lo.dp},ep={lo.ep},pp={lo.pp}")
    except MoebenchError as e:
        return [], str(e)
    dev = H800 if p.hardware == "h800_sxm" else device_for(p.hardware)
    # the KV format where published; else TensorRT-LLM's fp8/fp4 checkpoints quantize it to fp8 and vLLM and SGLang
    # keep it in 16 bits unless told otherwise
    published_kv = p.precision.kv.split()[0]
    kv = {"fp8": "fp8", "fp16": "bf16", "bf16": "bf16"}.get(published_kv)
    if kv is None:
        kv = "fp8" if engine == "trt-llm" and p.precision.weights in ("fp8", "fp4") else "bf16"
    value = p.load.value
    if p.load.kind == "batch" and lo.disaggregated:
        load, value = "decode_batch_per_gpu", (value if p.load.per == "gpu" else value / p.n_gpus)
    elif p.load.kind == "interactivity":
        load = "decode_interactivity"
    elif p.load.kind == "batch":
        load, value = "static_batch", (value * p.n_gpus if p.load.per == "gpu" else value)
    elif p.load.kind == "concurrency":
        load, value = "concurrency", (value * p.n_gpus if p.load.per == "gpu" else value)
    else:
        load = {"request_rate": "rate", "offline": "offline"}[p.load.kind]
    overlap = 1.0 if lo.disaggregated and ep > 1 else 0.0  # wide-EP decode pools run two-batch overlap
    ln = p.lengths
    lengths = None if ln is None else ln.moments()
    out = []
    for name in (headline, "tpot_ms", "ttft_ms"):
        v = p.metric(name)
        if v is None:
            continue
        if name == "ttft_ms" and load != "concurrency":  # TTFT under load is compared where a concurrency was held
            continue
        metric = NAMES[name]
        out.append(Measurement(
            id=f"{p.id}/{metric}", model=p.model, device=dev, engine=engine, layout=lay, prompt=p.input_tokens,
            output=max(2, p.output_tokens), weight_dtype={"int4": "fp4", "fp16": "bf16"}.get(p.precision.weights,
                                                                                         p.precision.weights),
            kv_dtype=kv, load=load, load_value=value, metric=metric,
            value=v / (p.n_gpus * p.instances) if name == "output_tok_s" else v, split=p.split,
            source_group=p.source_group, lengths=lengths, comm_overlap=overlap,
            mem_util=p.engine.mem_util or MEM_UTIL[engine], max_seqs=p.engine.max_seqs,
            kind="moe" if cfg.is_moe else "dense", eager=not p.engine.graphs, headline=name == headline))
    return out, None


def load_set() -> tuple[list[Measurement], list[tuple[str, str]]]:
    """Every expressible point's measurements, and (point id, why) for the others."""
    pts, skipped = [], []
    for p in load_published().points:
        ms, why = measurements(p)
        if why:
            skipped.append((p.id, why))
        pts.extend(ms)
    return pts, skipped
