"""Qwen3-MoE: GQA with per-head RMSNorm on q and k (QK-norm), softmax top-k routing with `norm_topk_prob`,
no shared experts, every layer sparse (decoder_sparse_step 1)."""

from __future__ import annotations

from typing import Any

from moebench.models.config import ArchConfig, hf_common, hf_get
from moebench.models.spec import ModelSpec, build_decoder

DEBUG = {
    "model_type": "qwen3_moe",
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "intermediate_size": 768,
    "moe_intermediate_size": 128,
    "num_experts": 16,
    "num_experts_per_tok": 4,
    "norm_topk_prob": True,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
    "vocab_size": 2048,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "max_position_embeddings": 40960,
    "tie_word_embeddings": False,
}

def parse_hf(d: dict[str, Any]) -> ArchConfig:
    sparse_step = d.get("decoder_sparse_step", 1)
    if sparse_step != 1 or d.get("mlp_only_layers"):
        raise ValueError("qwen3_moe with dense layers interleaved (decoder_sparse_step/mlp_only_layers) is not supported")
    # transformers applies `sliding_window` to every layer, and only when use_sliding_window is set
    window = d.get("sliding_window") if d.get("use_sliding_window") else None
    return ArchConfig(
        **hf_common(d),
        qk_norm=True,
        attention_bias=bool(d.get("attention_bias", False)),
        sliding_window=window,
        layer_types=("sliding_attention",) * d["num_hidden_layers"] if window else None,
        n_routed_experts=hf_get(d, "num_experts", "num_local_experts"),  # transformers 5 writes the latter
        top_k=d["num_experts_per_tok"],
        moe_intermediate_size=d["moe_intermediate_size"],
        router="softmax",
        norm_topk_prob=bool(d.get("norm_topk_prob", False)),
    )


SPEC = ModelSpec(
    family="qwen3-moe",
    kind="moe",
    description="Alibaba Qwen3 MoE (QK-norm, softmax top-8 of 128 with norm_topk_prob)",
    build=build_decoder,
    debug=DEBUG,
    parse_hf=parse_hf,
    hf_model_types=("qwen3_moe",),
)
