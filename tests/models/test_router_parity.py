"""Our routers pick the same experts, with the same weights, as transformers' for the same hidden states."""

from __future__ import annotations

import pytest
import torch

import moebench.models as M
from moebench.models.common.moe import MoE

CASES = ["mixtral", "qwen3-moe", "qwen3-moe-fused", "deepseek-v3", "kimi-k2", "gpt-oss"]


def _hf_router(hf, layer: int):
    mlp = hf.model.layers[layer].mlp
    return mlp.router if hasattr(mlp, "router") else mlp.gate


@pytest.mark.parametrize("case", CASES)
@torch.no_grad()
def test_router_matches_transformers(case, hf_checkpoints):
    hf, path = hf_checkpoints(case)
    model = M.load(str(path))
    moe_layers = [i for i, blk in enumerate(model.layers) if isinstance(blk.ffn, MoE)]
    assert moe_layers
    x_TD = torch.randn(97, hf.config.hidden_size, generator=torch.Generator().manual_seed(5))
    for i in moe_layers:
        _, ref_w, ref_ids = _hf_router(hf, i)(x_TD)
        _, w, ids = model.layers[i].ffn.router(x_TD)
        # Order within a token's k choices is not part of the contract: compare as sets, weights by expert.
        ref_ids_s, order_ref = ref_ids.sort(dim=-1)
        ids_s, order = ids.sort(dim=-1)
        assert torch.equal(ids_s, ref_ids_s), f"layer {i}: different experts"
        torch.testing.assert_close(w.gather(1, order).float(), ref_w.gather(1, order_ref).float(), rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_deepseek_selection_bias_changes_choice_but_not_weights(hf_checkpoints):
    """e_score_correction_bias steers which experts are picked; the weights come from the unbiased scores."""
    hf, path = hf_checkpoints("deepseek-v3")
    router = M.load(str(path)).layers[1].ffn.router
    x_TD = torch.randn(64, hf.config.hidden_size, generator=torch.Generator().manual_seed(6))
    _, w0, ids0 = router(x_TD)
    router.e_score_correction_bias[3] = 10.0  # expert 3 now always wins selection
    _, w1, ids1 = router(x_TD)
    assert (ids1 == 3).any(dim=-1).all() and not (ids0 == 3).any(dim=-1).all()
    scores = router.logits(x_TD).sigmoid()
    picked = scores.gather(1, ids1)
    torch.testing.assert_close(w1.float(), picked / picked.sum(-1, keepdim=True) * router.scaling)
