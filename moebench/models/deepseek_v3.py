"""DeepSeek-V3 / R1 and Kimi-K2 (same architecture): multi-head latent attention with YaRN, sigmoid-scored
grouped top-k routing with a selection-only bias (`e_score_correction_bias`, aux-loss-free balancing), weights
renormalised and scaled by `routed_scaling_factor`, one shared expert, the first `first_k_dense_replace`
layers dense. The multi-token-prediction module (layer 61 in the checkpoint) is not part of decoding and is
not built."""

from __future__ import annotations

from typing import Any

from moebench.models.config import ArchConfig, hf_common, hf_get
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

def parse_hf(d: dict[str, Any]) -> ArchConfig:
    """deepseek_v3 and kimi_k2 (the DeepseekV3 architecture under another model_type)."""
    if d.get("scoring_func", "sigmoid") != "sigmoid" or d.get("topk_method", "noaux_tc") != "noaux_tc":
        raise ValueError("deepseek_v3 routing other than scoring_func=sigmoid, topk_method=noaux_tc is not supported")
    if d.get("moe_layer_freq", 1) != 1:
        raise ValueError("deepseek_v3 with moe_layer_freq != 1 is not supported")
    common = hf_common(d)
    common["head_dim"] = hf_get(d, "qk_rope_head_dim", default=64)
    return ArchConfig(
        **common,
        attention="mla",
        attention_bias=bool(d.get("attention_bias", False)),
        q_lora_rank=d.get("q_lora_rank"),
        kv_lora_rank=hf_get(d, "kv_lora_rank", default=512),
        qk_nope_head_dim=hf_get(d, "qk_nope_head_dim", default=128),
        qk_rope_head_dim=hf_get(d, "qk_rope_head_dim", default=64),
        v_head_dim=hf_get(d, "v_head_dim", default=128),
        n_routed_experts=hf_get(d, "n_routed_experts", "num_local_experts"),
        top_k=hf_get(d, "num_experts_per_tok", default=8),
        moe_intermediate_size=hf_get(d, "moe_intermediate_size", default=2048),
        n_shared_experts=hf_get(d, "n_shared_experts", default=0),
        first_k_dense=hf_get(d, "first_k_dense_replace", default=3),
        router="sigmoid_grouped",
        norm_topk_prob=bool(d.get("norm_topk_prob", True)),
        routed_scaling_factor=float(hf_get(d, "routed_scaling_factor", default=2.5)),
        n_group=hf_get(d, "n_group", default=1),
        topk_group=hf_get(d, "topk_group", default=1),
    )


SPEC = ModelSpec(
    family="deepseek-v3",
    kind="moe",
    description="DeepSeek-V3 architecture (MLA, sigmoid grouped top-8 of 256 + 1 shared); also R1 and Kimi-K2",
    build=build_decoder,
    debug=DEBUG,
    parse_hf=parse_hf,
    hf_model_types=("deepseek_v3", "kimi_k2"),
    hf_names=HFNames(rope_interleave_default=True),
)
