"""Our RoPE frequencies and attention scalings equal transformers' for the variants the families use, with the
published configs' numbers (llama3 scaling, gpt-oss YaRN with truncate=false, DeepSeek/Kimi YaRN with mscale)."""

from __future__ import annotations

import pytest
import torch

from moebench.models import resolve_name
from moebench.models.common.rope import rope_frequencies, softmax_mscale
from moebench.models.config import from_hf

transformers = pytest.importorskip("transformers")
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402


def _hf_config(model: str, **overrides):
    """The transformers config of a catalog flavor, built from the same published numbers."""
    _, cfg = resolve_name(model)
    raw = {k: v for k, v in cfg.raw.items() if k not in ("model_type", "architectures", "torch_dtype")}
    cls = {"llama": "LlamaConfig", "gpt_oss": "GptOssConfig", "deepseek_v3": "DeepseekV3Config",
           "kimi_k2": "DeepseekV3Config", "qwen3_moe": "Qwen3MoeConfig", "mixtral": "MixtralConfig"}[cfg.model_type]
    return getattr(transformers, cls)(**{**raw, **overrides})


@pytest.mark.parametrize("model", ["llama3:405b", "gpt-oss:120b", "deepseek-v3:671b", "deepseek-v3:kimi-k2",
                                   "qwen3-moe:235b-a22b", "mixtral:8x7b"])
def test_frequencies_match_transformers(model):
    hf = _hf_config(model)
    kind = hf.rope_parameters["rope_type"]
    init = ROPE_INIT_FUNCTIONS.get(kind)
    ref_freq, ref_scale = init(hf) if init else _default(hf)
    # both spellings: transformers 5's rope_parameters, and the Hub's rope_theta + rope_scaling (the catalog)
    for ours in (from_hf(hf.to_dict()), resolve_name(model)[1]):
        freq, scale = rope_frequencies(ours, ours.head_dim)
        torch.testing.assert_close(freq, ref_freq.float(), rtol=1e-6, atol=0)
        assert scale == pytest.approx(ref_scale, rel=1e-12)


def _default(hf):
    d = hf.head_dim
    return 1.0 / (hf.rope_parameters["rope_theta"] ** (torch.arange(0, d, 2).float() / d)), 1.0


def test_explicit_attention_factor_wins():
    hf = _hf_config("gpt-oss:20b")
    hf.rope_parameters["attention_factor"] = 0.75
    _, ref = ROPE_INIT_FUNCTIONS["yarn"](hf)
    ours = from_hf(hf.to_dict())
    assert rope_frequencies(ours, ours.head_dim)[1] == ref == 0.75


@pytest.mark.parametrize("model", ["deepseek-v3:671b", "deepseek-v3:kimi-k2"])
def test_mla_softmax_scale_matches_transformers(model):
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import yarn_apply_mscale

    hf = _hf_config(model)
    ours = from_hf(hf.to_dict())
    qk = ours.qk_nope_head_dim + ours.qk_rope_head_dim
    ref = yarn_apply_mscale(hf.rope_parameters, qk**-0.5)
    assert qk**-0.5 * softmax_mscale(ours) == pytest.approx(ref, rel=1e-12)
    # DeepSeek-V3: (0.1·ln 40 + 1)² ≈ 1.874; Kimi-K2: (0.1·ln 32 + 1)² ≈ 1.813
    assert softmax_mscale(ours) == pytest.approx({"deepseek-v3:671b": 1.8739, "deepseek-v3:kimi-k2": 1.8133}[model], abs=1e-4)
