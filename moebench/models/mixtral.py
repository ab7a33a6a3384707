"""Mixtral (MoE): GQA attention, softmax top-2 of 8 experts, renormalised."""

from __future__ import annotations

from typing import Any

from moebench.models.config import ArchConfig, hf_common, hf_get
from moebench.models.spec import HFNames, ModelSpec, build_decoder

DEBUG = {
    "model_type": "mixtral",
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "intermediate_size": 512,
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
    "vocab_size": 2048,
    "rms_norm_eps": 1e-5,
    "rope_theta": 1000000.0,
    "max_position_embeddings": 32768,
    "tie_word_embeddings": False,
}

def parse_hf(d: dict[str, Any]) -> ArchConfig:
    return ArchConfig(
        **hf_common(d, rms_norm_eps=1e-5, rope_theta=1e6),
        sliding_window=d.get("sliding_window"),
        layer_types=("sliding_attention",) * d["num_hidden_layers"] if d.get("sliding_window") else None,
        n_routed_experts=hf_get(d, "num_local_experts", "num_experts"),
        top_k=d["num_experts_per_tok"],
        moe_intermediate_size=d["intermediate_size"],
        router="softmax",
        norm_topk_prob=True,
    )


SPEC = ModelSpec(
    family="mixtral",
    kind="moe",
    description="Mistral Mixtral sparse MoE (softmax top-2 of 8, renormalised)",
    build=build_decoder,
    debug=DEBUG,
    parse_hf=parse_hf,
    hf_model_types=("mixtral",),
    hf_names=HFNames(moe=("block_sparse_moe", "mlp"), experts=("w1", "w3", "w2")),
)
