"""FLOPs per token and bytes per decode step, against numbers derived by hand from the published configs.

Each derivation is written out as arithmetic on the config.json numbers, so a reader can check it line by line.
FLOPs = 2 × (matmul weights one token multiplies: attention projections + dense MLP or router + top-k routed +
shared experts, + LM head) + attention scores and values (2 · H · (Dqk + Dv) per attended token).
Decode bytes = (weights read: every non-expert tensor, norms included, + the experts B tokens touch under
uniform routing, E·(1 − (1 − K/E)^B)) + KV cache read (B · attended · cached elements per token) and written
(B · cached elements) + residual stream (4 · B · D per layer) + final norm + B · D + LM head; × bytes per element.
"""

from __future__ import annotations

import pytest

from moebench.models import resolve_name


def cfg(name):
    return resolve_name(name)[1]


def test_llama3_8b():
    # hidden 4096, 32 layers, 32 heads, 8 kv heads, head_dim 128, intermediate 14336, vocab 128256
    attn = 4096 * 32 * 128 + 2 * 4096 * 8 * 128 + 32 * 128 * 4096  # q, k+v, o = 41_943_040
    mlp = 3 * 4096 * 14336  # gate, up, down = 176_160_768
    lm_head = 128256 * 4096
    c = 1024
    flops = 32 * (2 * (attn + mlp) + 2 * 32 * (128 + 128) * c) + 2 * lm_head
    assert attn == 41_943_040 and flops == 15_546_187_776
    assert cfg("llama3:8b").flops_per_token(c) == flops

    b = 1
    kv = 2 * 8 * 128  # k and v per token per layer
    layer = attn + mlp + 2 * 4096  # + two norms
    elems = 32 * (layer + b * c * kv + b * kv + 4 * b * 4096) + b * 4096 + lm_head + 4096
    assert elems * 2 == 15_145_254_912  # bf16
    assert cfg("llama3:8b").decode_bytes(b, c, 2) == elems * 2


def test_mixtral_8x7b():
    # hidden 4096, 32 layers, 32/8 heads, head_dim 128, 8 experts of 14336, top-2, vocab 32000
    attn = 2 * 4096 * 32 * 128 + 2 * 4096 * 8 * 128
    expert = 3 * 4096 * 14336
    router = 4096 * 8
    c = 512
    flops = 32 * (2 * (attn + router + 2 * expert) + 2 * 32 * 256 * c) + 2 * 32000 * 4096
    assert cfg("mixtral:8x7b").flops_per_token(c) == flops == 25_765_609_472

    b = 4  # 4 tokens touch 8·(1 − (6/8)^4) = 5.46875 experts on average
    touched = 8 * (1 - (1 - 2 / 8) ** 4)
    assert touched == 5.46875
    kv = 2 * 8 * 128
    layer = attn + router + 2 * 4096 + touched * expert
    elems = 32 * (layer + b * c * kv + b * kv + 4 * b * 4096) + b * 4096 + 32000 * 4096 + 4096
    assert cfg("mixtral:8x7b").decode_bytes(b, c, 2) == pytest.approx(elems * 2, rel=1e-12)


def test_qwen3_30b_a3b():
    # hidden 2048, 48 layers, 32 heads / 4 kv heads of 128, QK-norm, 128 experts of 768, top-8, vocab 151936
    attn = 2 * 2048 * 32 * 128 + 2 * 2048 * 4 * 128  # 18_874_368 (q/k norms are not matmuls)
    moe = 2048 * 128 + 8 * 3 * 2048 * 768  # router + 8 experts = 38_010_880
    c = 2048
    flops = 48 * (2 * (attn + moe) + 2 * 32 * 256 * c) + 2 * 151936 * 2048
    assert cfg("qwen3-moe:30b-a3b").flops_per_token(c) == flops == 7_693_926_400

    b = 1
    kv = 2 * 4 * 128
    # + q/k norms, router, layer norms; one token touches exactly K = 8 experts
    layer = attn + 2 * 128 + 2048 * 128 + 2 * 2048 + 8 * 3 * 2048 * 768
    elems = 48 * (layer + b * c * kv + b * kv + 4 * b * 2048) + b * 2048 + 151936 * 2048 + 2048
    assert cfg("qwen3-moe:30b-a3b").decode_bytes(b, c, 2) == pytest.approx(elems * 2, rel=1e-12)


def test_deepseek_v3_671b():
    # hidden 7168, 61 layers (first 3 dense, 18432 wide), 128 heads, q_lora 1536, kv_lora 512,
    # nope 128 + rope 64, v 128; 256 experts of 2048, top-8, 1 shared; vocab 129280
    q = 7168 * 1536 + 1536 * 128 * (128 + 64)
    kv = 7168 * (512 + 64) + 512 * 128 * (128 + 128)
    o = 128 * 128 * 7168
    attn = q + kv + o
    assert attn == 187_105_280
    dense = 3 * 7168 * 18432
    moe = 7168 * 256 + (8 + 1) * 3 * 7168 * 2048  # router + 8 routed + 1 shared
    c = 4096
    per_ctx = 2 * 128 * (192 + 128) * c
    flops = 3 * (2 * (attn + dense) + per_ctx) + 58 * (2 * (attn + moe) + per_ctx) + 2 * 129280 * 7168
    assert cfg("deepseek-v3:671b").flops_per_token(c) == flops == 93_717_397_504
    # at no context, the familiar 2N: N ≈ 37.6 B active − 0.93 B input embedding (a gather) ≈ 36.6 B
    assert (flops - 61 * per_ctx) / 2 / 1e9 == pytest.approx(36.62, abs=0.01)

    b, cached = 1, 512 + 64  # MLA caches the latent and the rope key
    norms = 2 * 7168 + 1536 + 512  # layer norms + q and kv latent norms
    mla = attn + norms
    expert = 3 * 7168 * 2048
    dense_layer = mla + dense
    moe_layer = mla + 7168 * 256 + 256 + 1 * expert + 8 * expert  # router + its bias + shared + 8 touched
    kv_io = b * c * cached + b * cached + 4 * b * 7168
    elems = 3 * (dense_layer + kv_io) + 58 * (moe_layer + kv_io) + b * 7168 + 129280 * 7168 + 7168
    assert cfg("deepseek-v3:671b").decode_bytes(b, c, 1) == pytest.approx(elems, rel=1e-12)  # fp8: 1 byte


def test_gpt_oss_120b():
    # hidden 2880, 36 layers alternating sliding (128) / full, 64 heads / 8 kv heads of 64, 128 experts of 2880,
    # top-4, biases everywhere, vocab 201088
    attn = 2 * 2880 * 64 * 64 + 2 * 2880 * 8 * 64
    moe = 2880 * 128 + 4 * 3 * 2880 * 2880
    c = 1000
    # 18 sliding layers see min(c, 128) tokens, 18 full layers see c
    scores = 2 * 64 * (64 + 64) * (18 * 128 + 18 * c)
    flops = 36 * 2 * (attn + moe) + scores + 2 * 201088 * 2880
    assert cfg("gpt-oss:120b").flops_per_token(c) == flops == 10_594_861_056

    b = 2  # 2 tokens touch 128·(1 − (124/128)^2) = 7.875 experts
    touched = 128 * (1 - (1 - 4 / 128) ** 2)
    assert touched == 7.875
    attn_all = attn + (64 * 64 + 2 * 8 * 64 + 2880) + 64  # + q/k/v/o biases + sinks
    expert = 3 * 2880 * 2880 + 2 * 2880 + 2880  # + gate_up and down biases
    layer = attn_all + 2880 * 128 + 128 + 2 * 2880 + touched * expert  # + router (+bias), norms
    kv = 2 * 8 * 64
    per_layer_io = [b * (128 if i % 2 == 0 else c) * kv + b * kv + 4 * b * 2880 for i in range(36)]
    elems = 36 * layer + sum(per_layer_io) + b * 2880 + 201088 * 2880 + 2880
    assert cfg("gpt-oss:120b").decode_bytes(b, c, 2) == pytest.approx(elems * 2, rel=1e-12)


def test_layers_subset_counts_only_the_layers_built():
    full = cfg("deepseek-v3:671b")
    four = full.with_layers(4)
    assert four.num_hidden_layers == 4 and four.layers_total == 61
    head = 2 * 129280 * 7168
    per_layer = [full.flops_per_token(0, layers=n + 1) - full.flops_per_token(0, layers=n) for n in range(4)]
    assert four.flops_per_token(0) == head + sum(per_layer)
    assert four.full().flops_per_token(0) == full.flops_per_token(0)
