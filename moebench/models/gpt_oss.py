"""gpt-oss: GQA alternating sliding-window (128) and full attention, a learned attention sink per head, QKV/O
biases, YaRN RoPE; softmax over the top-4 biased router logits; experts with biases and the clamped SwiGLU
((up + 1) · gate · σ(1.702 · gate), gate ≤ 7, |up| ≤ 7)."""

from __future__ import annotations

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

SPEC = ModelSpec(
    family="gpt-oss",
    kind="moe",
    description="OpenAI gpt-oss (sliding/full attention with sinks, top-4 softmax router, clamped SwiGLU experts)",
    build=build_decoder,
    debug=DEBUG,
    hf_model_types=("gpt_oss",),
    hf_names=HFNames(router="router", experts=None, fused="gpt_oss"),
)
