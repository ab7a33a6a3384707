"""gpt-oss: GQA alternating sliding-window (128) and full attention, a learned attention sink per head, QKV/O
biases, YaRN RoPE; softmax over the top-4 biased router logits; experts with biases and the clamped SwiGLU
((up + 1) · gate · σ(1.702 · gate), gate ≤ 7, |up| ≤ 7)."""

from __future__ import annotations

from typing import Any

from moebench.models.config import ArchConfig, hf_common, hf_get
from moebench.models.spec import HFNames, ModelSpec, build_decoder

DEBUG = {
    "model_type": "gpt_oss",
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "intermediate_size": 128,
    "num_local_experts": 16,
    "num_experts_per_tok": 4,
    "vocab_size": 2048,
    "sliding_window": 16,
    "layer_types": ["sliding_attention", "full_attention"] * 2,
    "attention_bias": True,
    "swiglu_limit": 7.0,
    "rope_theta": 150000,
    "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                     "original_max_position_embeddings": 4096},
    "max_position_embeddings": 131072,
    "tie_word_embeddings": False,
}

# what transformers' GptOssConfig assumes for a config.json without rope scaling
_ROPE_SCALING = {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
                 "original_max_position_embeddings": 4096}


def parse_hf(d: dict[str, Any]) -> ArchConfig:
    lt = d.get("layer_types")
    if lt is None or isinstance(lt, str):
        lt = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(d["num_hidden_layers"])]
    return ArchConfig(
        **hf_common(d, rms_norm_eps=1e-5, rope_theta=150000.0, rope_scaling=_ROPE_SCALING, head_dim=64),
        attention_bias=bool(d.get("attention_bias", True)),
        attention_sinks=True,
        sliding_window=hf_get(d, "sliding_window", default=128),
        layer_types=tuple(lt),
        n_routed_experts=hf_get(d, "num_local_experts", "num_experts"),
        top_k=hf_get(d, "num_experts_per_tok", default=4),
        moe_intermediate_size=d["intermediate_size"],
        router="topk_softmax",
        expert_bias=True,
        activation="swiglu_oai",
        swiglu_limit=float(hf_get(d, "swiglu_limit", default=7.0)),
        swiglu_alpha=float(hf_get(d, "swiglu_alpha", default=1.702)),
        norm_scale_fp32=True,
    )


SPEC = ModelSpec(
    family="gpt-oss",
    kind="moe",
    description="OpenAI gpt-oss (sliding/full attention with sinks, top-4 softmax router, clamped SwiGLU experts)",
    build=build_decoder,
    debug=DEBUG,
    parse_hf=parse_hf,
    hf_model_types=("gpt_oss",),
    hf_names=HFNames(router="router", experts=None, fused="gpt_oss"),
)
