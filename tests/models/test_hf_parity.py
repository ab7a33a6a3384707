"""Each family, loaded from a transformers save_pretrained directory, computes what transformers computes:
prefill logits and ≥ 8 incremental decode steps through our KV cache, max relative error ≤ 1e-4 in fp32."""

from __future__ import annotations

import inspect

import pytest
import torch

import moebench.models as M
from tests.models.conftest import HF_CASES, rel_err

TOL = 1e-4
PROMPT, DECODE, BATCH = 11, 9, 2


@pytest.mark.parametrize("case", list(HF_CASES))
@torch.no_grad()
def test_prefill_and_decode_match_transformers(case, hf_checkpoints):
    hf, path = hf_checkpoints(case)
    model = M.load(str(path))
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, hf.config.vocab_size, (BATCH, PROMPT + DECODE), generator=g)
    ref = hf(ids).logits  # full-sequence forward: the oracle for every position

    cache = model.new_cache(BATCH, PROMPT + DECODE)
    prefill = model(ids[:, :PROMPT], cache=cache, start=0)
    assert prefill.shape == (BATCH, PROMPT, hf.config.vocab_size)
    assert rel_err(prefill, ref[:, :PROMPT]) <= TOL

    for step in range(DECODE):
        pos = PROMPT + step
        logits = model(ids[:, pos : pos + 1], cache=cache, start=pos)
        assert rel_err(logits[:, 0], ref[:, pos]) <= TOL, f"decode step {step}"


@pytest.mark.parametrize("case", ["gpt-oss", "deepseek-v3"])
@torch.no_grad()
def test_decode_matches_transformers_own_cache(case, hf_checkpoints):
    """Greedy generation step by step: ours with our cache, transformers with its DynamicCache."""
    from transformers import DynamicCache

    hf, path = hf_checkpoints(case)
    model = M.load(str(path))
    ids = torch.randint(0, hf.config.vocab_size, (1, PROMPT), generator=torch.Generator().manual_seed(2))
    hf_cache = DynamicCache(config=hf.config)
    ours_cache = model.new_cache(1, PROMPT + DECODE)
    # transformers 5.24 renamed the argument `cache` (the old name warns, and goes in 5.40)
    cache_kw = "cache" if "cache" in inspect.signature(hf.forward).parameters else "past_key_values"
    ref = hf(ids, **{cache_kw: hf_cache}, use_cache=True).logits[:, -1]
    out = model(ids, cache=ours_cache, start=0, last_only=True)[:, -1]
    for step in range(DECODE):
        assert rel_err(out, ref) <= TOL, f"step {step}"
        nxt = ref.argmax(-1, keepdim=True)
        ref = hf(nxt, **{cache_kw: hf_cache}, use_cache=True).logits[:, -1]
        out = model(nxt, cache=ours_cache, start=PROMPT + step, last_only=True)[:, -1]


@torch.no_grad()
def test_layers_loads_only_the_first_layers(hf_checkpoints):
    hf, path = hf_checkpoints("deepseek-v3")
    model = M.load(str(path), layers=2)
    assert len(model.layers) == 2 and model.cfg.layers_total == 3
    short = type(hf)(hf.config.__class__(**{**hf.config.to_dict(), "num_hidden_layers": 2})).eval()
    short.load_state_dict({k: v for k, v in hf.state_dict().items() if ".layers.2." not in k})
    ids = torch.randint(0, hf.config.vocab_size, (1, 7), generator=torch.Generator().manual_seed(3))
    assert rel_err(model(ids), short(ids).logits) <= TOL


@torch.no_grad()
def test_mla_absorbed_and_expanded_attention_agree(hf_checkpoints):
    _, path = hf_checkpoints("deepseek-v3")
    model = M.load(str(path))
    ids = torch.randint(0, 160, (2, 9), generator=torch.Generator().manual_seed(4))
    outs = []
    for absorb in (False, True):
        for blk in model.layers:
            blk.attn.absorb = absorb
        outs.append(model(ids))
    assert rel_err(outs[1], outs[0]) <= 1e-5


def test_mla_cache_holds_the_compressed_latent(hf_checkpoints):
    hf, path = hf_checkpoints("deepseek-v3")
    model = M.load(str(path))
    cache = model.new_cache(3, 17)
    c = hf.config
    assert set(cache[0]) == {"kv_latent"}
    assert cache[0]["kv_latent"].shape == (3, 17, c.kv_lora_rank + c.qk_rope_head_dim)
