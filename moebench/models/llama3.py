"""Llama 3 / 3.1 (dense): GQA, RoPE with llama3 frequency scaling, SwiGLU MLP."""

from __future__ import annotations

from typing import Any

from moebench.models.config import ArchConfig, hf_common
from moebench.models.spec import ModelSpec, build_decoder

DEBUG = {
    "model_type": "llama",
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "intermediate_size": 704,
    "vocab_size": 2048,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192},
    "max_position_embeddings": 131072,
    "tie_word_embeddings": False,
}

def parse_hf(d: dict[str, Any]) -> ArchConfig:
    if d.get("mlp_bias"):
        raise ValueError("llama with mlp_bias is not supported")
    return ArchConfig(**hf_common(d), attention_bias=bool(d.get("attention_bias", False)))


SPEC = ModelSpec(
    family="llama3",
    kind="dense",
    description="Meta Llama 3.1 dense decoder (GQA, llama3 RoPE scaling, SwiGLU)",
    build=build_decoder,
    debug=DEBUG,
    parse_hf=parse_hf,
    hf_model_types=("llama",),
)
