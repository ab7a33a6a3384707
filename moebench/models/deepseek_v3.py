"""DeepSeek-V3 / R1 and Kimi-K2 (same architecture): multi-head latent attention with YaRN, sigmoid-scored
grouped top-k routing with a selection-only bias (`e_score_correction_bias`, aux-loss-free balancing), weights
renormalised and scaled by `routed_scaling_factor`, one shared expert, the first `first_k_dense_replace`
layers dense. The multi-token-prediction module (layer 61 in the checkpoint) is not part of decoding and is
not built."""

from __future__ import annotations

from moebench.models.spec import HFNames, ModelSpec, build_decoder

DEBUG = {
    "model_type": "deepseek_v3",
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 8,
    "q_lora_rank": 96,
    "kv_lora_rank": 64,
    "qk_nope_head_dim": 32,
    "qk_rope_head_dim": 16,
    "v_head_dim": 32,
    "intermediate_size": 768,
    "moe_intermediate_size": 128,
    "n_routed_experts": 16,
    "n_shared_experts": 1,
    "num_experts_per_tok": 4,
    "first_k_dense_replace": 1,
    "n_group": 4,
    "topk_group": 2,
    "norm_topk_prob": True,
    "routed_scaling_factor": 2.5,
    "scoring_func": "sigmoid",
    "topk_method": "noaux_tc",
    "vocab_size": 2048,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000,
    "rope_scaling": {"type": "yarn", "factor": 40, "beta_fast": 32, "beta_slow": 1, "mscale": 1.0,
                     "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096},
    "max_position_embeddings": 163840,
    "tie_word_embeddings": False,
}

SPEC = ModelSpec(
    family="deepseek-v3",
    kind="moe",
    description="DeepSeek-V3 architecture (MLA, sigmoid grouped top-8 of 256 + 1 shared); also R1 and Kimi-K2",
    build=build_decoder,
    debug=DEBUG,
    hf_model_types=("deepseek_v3", "kimi_k2"),
    hf_names=HFNames(rope_interleave_default=True),
)
