"""The model zoo's MoE layer gives the same output on the Triton backend (interpreted) as on the torch path."""

import pytest
import torch

pytestmark = pytest.mark.usefixtures("interpreter")


@pytest.mark.parametrize("name", ["mixtral:debug", "gpt-oss:debug", "deepseek-v3:debug"])
def test_moe_layer_triton_matches_torch(name):
    from moebench.models import resolve_name
    from moebench.models.common.moe import MoE
    from moebench.models.common.ops import set_backend

    _, cfg = resolve_name(name)
    torch.manual_seed(0)
    moe = MoE(cfg, layer=0)
    with torch.no_grad():
        for p in moe.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
        if moe.router.e_score_correction_bias is not None:
            moe.router.e_score_correction_bias.copy_(0.01 * torch.randn_like(moe.router.e_score_correction_bias))
    x = torch.randn(1, 5, cfg.hidden_size)
    try:
        set_backend("torch", "cpu")
        with torch.no_grad():
            y_torch = moe(x)
        set_backend("triton", "cpu")
        with torch.no_grad():
            y_triton = moe(x)
    finally:
        set_backend("torch", "cpu")
    torch.testing.assert_close(y_triton, y_torch, atol=1e-5, rtol=1e-4)
