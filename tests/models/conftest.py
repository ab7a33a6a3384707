"""Tiny random transformers models for every family, saved with save_pretrained, for parity tests.

Widths, head counts and expert counts differ from each family's `debug` flavor on purpose, so a test cannot pass
by accident on shapes the module hard-codes. Every tensor (norm weights, biases, sinks, DeepSeek's selection
bias included) is randomized so that no term is silently zero.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

COMMON = dict(vocab_size=160, tie_word_embeddings=False, attn_implementation="eager")

# name -> (transformers config class, kwargs, save_pretrained kwargs)
HF_CASES: dict[str, tuple[str, dict, dict]] = {
    "llama3": ("LlamaConfig", dict(
        hidden_size=96, intermediate_size=160, num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=3,
        head_dim=16, rms_norm_eps=1e-5, max_position_embeddings=1024,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64}), {}),
    "mixtral": ("MixtralConfig", dict(
        hidden_size=80, intermediate_size=112, num_hidden_layers=2, num_attention_heads=5, num_key_value_heads=1,
        head_dim=16, num_local_experts=6, num_experts_per_tok=2), {}),
    "mixtral-fused": ("MixtralConfig", dict(
        hidden_size=80, intermediate_size=112, num_hidden_layers=2, num_attention_heads=5, num_key_value_heads=1,
        head_dim=16, num_local_experts=6, num_experts_per_tok=2), {"save_original_format": False}),
    "qwen3-moe": ("Qwen3MoeConfig", dict(
        hidden_size=96, intermediate_size=160, moe_intermediate_size=48, num_hidden_layers=2, num_attention_heads=6,
        num_key_value_heads=2, head_dim=16, num_experts=10, num_experts_per_tok=3, norm_topk_prob=True),
        {"max_shard_size": "150KB"}),  # sharded: exercises model.safetensors.index.json
    "qwen3-moe-fused": ("Qwen3MoeConfig", dict(
        hidden_size=96, intermediate_size=160, moe_intermediate_size=48, num_hidden_layers=2, num_attention_heads=6,
        num_key_value_heads=2, head_dim=16, num_experts=10, num_experts_per_tok=3, norm_topk_prob=False),
        {"save_original_format": False}),
    "deepseek-v3": ("DeepseekV3Config", dict(
        hidden_size=96, intermediate_size=160, moe_intermediate_size=40, num_hidden_layers=3, num_attention_heads=6,
        num_key_value_heads=6, q_lora_rank=48, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
        v_head_dim=12, n_routed_experts=12, n_shared_experts=2, num_experts_per_tok=3, first_k_dense_replace=1,
        n_group=4, topk_group=2, routed_scaling_factor=2.5, max_position_embeddings=2560,
        rope_scaling={"type": "yarn", "factor": 40, "beta_fast": 32, "beta_slow": 1, "mscale": 1.0,
                      "mscale_all_dim": 1.0, "original_max_position_embeddings": 64}, rope_theta=10000.0), {}),
    # Kimi-K2 shape: no q low-rank, one expert group; fused layout, config.json relabelled model_type kimi_k2;
    # rope_interleave false covers the other rope layout (deepseek-v3 above keeps the default, interleaved)
    "kimi-k2": ("DeepseekV3Config", dict(rope_interleave=False,
        hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, q_lora_rank=None, kv_lora_rank=24, qk_nope_head_dim=16, qk_rope_head_dim=8,
        v_head_dim=16, n_routed_experts=10, n_shared_experts=1, num_experts_per_tok=4, first_k_dense_replace=1,
        n_group=1, topk_group=1, routed_scaling_factor=2.827, max_position_embeddings=2048,
        rope_scaling={"type": "yarn", "factor": 32.0, "beta_fast": 1.0, "beta_slow": 1.0, "mscale": 1.0,
                      "mscale_all_dim": 1.0, "original_max_position_embeddings": 64}, rope_theta=50000.0),
        {"save_original_format": False}),
    "gpt-oss": ("GptOssConfig", dict(
        hidden_size=72, intermediate_size=40, num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=2,
        head_dim=12, num_local_experts=6, num_experts_per_tok=2, sliding_window=5,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0, "beta_fast": 32.0,
                         "beta_slow": 1.0, "truncate": False, "original_max_position_embeddings": 64}), {}),
}

# Only for the MXFP4 test: MXFP4 groups 32 input values, so D and F are multiples of 32.
EXTRA_CASES = {
    "gpt-oss-mxfp4": ("GptOssConfig", dict(
        hidden_size=64, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, num_local_experts=4, num_experts_per_tok=2, sliding_window=4,
        layer_types=["sliding_attention", "full_attention"]), {}),
}


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int) -> None:
    """Every parameter and float buffer random at scales that keep activations O(1); gpt-oss gate/up wide
    enough that its ±7 clamp engages."""
    g = torch.Generator().manual_seed(seed)
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if not t.is_floating_point() or "inv_freq" in name:
            continue
        if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
            t.copy_(torch.rand(t.shape, generator=g) + 0.5)
        elif "experts.gate_up_proj" in name and not name.endswith("bias"):
            std = 1.5 if model.config.model_type == "gpt_oss" else 0.15
            t.copy_(torch.randn(t.shape, generator=g) * std)
        elif name.endswith("embed_tokens.weight"):
            t.copy_(torch.randn(t.shape, generator=g))
        elif name.endswith("sinks"):
            t.copy_(torch.randn(t.shape, generator=g))
        elif name.endswith("e_score_correction_bias"):
            t.copy_(torch.randn(t.shape, generator=g) * 0.05)
        else:
            t.copy_(torch.randn(t.shape, generator=g) * (0.05 if t.ndim == 1 else 0.15))


def make_hf(case: str, directory: Path, seed: int = 0):
    """(transformers model in fp32 eval mode, checkpoint directory) for one HF_CASES entry."""
    cls_name, kwargs, save = {**HF_CASES, **EXTRA_CASES}[case]
    cfg = getattr(transformers, cls_name)(**COMMON, **kwargs)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    randomize(model, seed)
    model.save_pretrained(directory, **save)
    if case == "kimi-k2":
        path = directory / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "model_type": "kimi_k2"}))
    return model, directory


@pytest.fixture(autouse=True)
def one_thread(request):
    """Tiny models run on one intra-op thread: they gain nothing from two, and OpenMP's barriers make a
    multi-threaded forward 10-30× slower whenever other jobs share the cores. Real-width tests ask for
    `all_threads` instead."""
    if "all_threads" in request.fixturenames:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def all_threads():
    """Opt out of `one_thread`: this test runs a real-width model."""


@pytest.fixture(scope="session")
def hf_checkpoints(tmp_path_factory):
    """Lazily built {case: (hf_model, dir)} shared by the tests of one session."""
    cache: dict[str, tuple] = {}

    def get(case: str):
        if case not in cache:
            cache[case] = make_hf(case, tmp_path_factory.mktemp(case.replace("-", "_")))
        return cache[case]

    return get


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max |ours - ref| / max |ref|."""
    return ((ours.double() - ref.double()).abs().max() / ref.double().abs().max()).item()
