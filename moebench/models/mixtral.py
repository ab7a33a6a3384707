"""Mixtral (MoE): GQA attention, softmax top-2 of 8 experts, renormalised."""

from __future__ import annotations

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

SPEC = ModelSpec(
    family="mixtral",
    kind="moe",
    description="Mistral Mixtral sparse MoE (softmax top-2 of 8, renormalised)",
    build=build_decoder,
    debug=DEBUG,
    hf_model_types=("mixtral",),
    hf_names=HFNames(moe=("block_sparse_moe", "mlp"), experts=("w1", "w3", "w2")),
)
