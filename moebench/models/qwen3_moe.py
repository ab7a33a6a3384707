"""Qwen3-MoE: GQA with per-head RMSNorm on q and k (QK-norm), softmax top-k routing with `norm_topk_prob`,
no shared experts, every layer sparse (decoder_sparse_step 1)."""

from __future__ import annotations

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

SPEC = ModelSpec(
    family="qwen3-moe",
    kind="moe",
    description="Alibaba Qwen3 MoE (QK-norm, softmax top-8 of 128 with norm_topk_prob)",
    build=build_decoder,
    debug=DEBUG,
    hf_model_types=("qwen3_moe",),
)
