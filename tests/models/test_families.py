"""Every family's debug flavor is CPU-fast and decodes through its cache exactly as a full forward computes.
(Real widths: test_run_real_width.py.)"""

from __future__ import annotations

import time

import pytest
import torch

import moebench.models as M
from moebench.models.common.mla import MLAttention
from moebench.models.common.moe import MoE

FAMILIES = ["llama3", "mixtral", "qwen3-moe", "deepseek-v3", "gpt-oss"]


def _cpu_seconds(fn) -> float:
    """CPU seconds `fn` costs on this (single, see conftest) thread: unlike wall time, this does not grow when
    other jobs share the machine."""
    assert torch.get_num_threads() == 1
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


@pytest.mark.parametrize("family", FAMILIES)
@torch.no_grad()
def test_debug_flavor_is_fast_and_cache_consistent(family):
    model = M.load(f"{family}:debug", seed=3)
    ids = torch.randint(0, model.cfg.vocab_size, (2, 40), generator=torch.Generator().manual_seed(0))
    model(ids)  # warm-up
    assert _cpu_seconds(lambda: model(ids)) < 1.0
    full = model(ids)
    assert full.shape == (2, 40, model.cfg.vocab_size) and torch.isfinite(full).all()

    cache = model.new_cache(2, 40)
    steps = [model(ids[:, :30], cache=cache, start=0)]
    steps += [model(ids[:, i : i + 1], cache=cache, start=i) for i in range(30, 40)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-5)
    last = model(ids[:, :30], cache=model.new_cache(2, 30), last_only=True)
    torch.testing.assert_close(last[:, 0], full[:, 29], rtol=1e-4, atol=1e-5)


def test_random_weights_are_deterministic_and_independent_of_depth():
    a, b = M.load("deepseek-v3:debug", seed=7), M.load("deepseek-v3:debug", seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = M.load("deepseek-v3:debug", seed=8)
    assert not torch.equal(a.layers[1].ffn.w13_E2FD, c.layers[1].ffn.w13_E2FD)
    two = M.load("deepseek-v3:debug", seed=7, layers=2)  # layer 1 of a 2-layer run is layer 1 of the model
    assert torch.equal(two.layers[1].ffn.w13_E2FD, a.layers[1].ffn.w13_E2FD)
    assert torch.equal(two.embed.weight, a.embed.weight)


def test_family_structure_follows_the_config():
    ds = M.load("deepseek-v3:debug")
    assert isinstance(ds.layers[0].attn, MLAttention)
    assert not isinstance(ds.layers[0].ffn, MoE) and isinstance(ds.layers[1].ffn, MoE)  # first_k_dense_replace 1
    assert ds.layers[1].ffn.shared is not None
    oss = M.load("gpt-oss:debug")
    assert [blk.attn.window for blk in oss.layers] == [16, None, 16, None]
    assert oss.layers[0].attn.sinks is not None and oss.layers[0].ffn.b13_E2F is not None
    qwen = M.load("qwen3-moe:debug")
    assert qwen.layers[0].attn.q_norm is not None and qwen.layers[0].ffn.shared is None


def test_each_family_parses_its_own_model_types():
    from moebench.models.config import from_hf

    parsers = M.hf_parsers()
    assert set(parsers) == {"llama", "mixtral", "qwen3_moe", "deepseek_v3", "kimi_k2", "gpt_oss"}
    for mt, spec in parsers.items():
        assert mt in spec.hf_model_types and spec.parse_hf is not None
    cfg = M.registry().load("mixtral").debug
    assert from_hf(cfg) == parsers["mixtral"].parse_hf(cfg)
    with pytest.raises(ValueError, match="unsupported model_type 'bert'"):
        from_hf({**cfg, "model_type": "bert"})
