"""The implementations a kernel workload compares, each as `(inputs) -> y_TD` over one shared set of weights.

Legend: T tokens, D model dim, F expert hidden dim, E experts, K experts per token, R = T·K routed rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as Fn

from moebench_kernels.fused_moe import apply_activation_, fused_moe_grouped_mm, fused_moe_ref, grouped_mm_support

# providers with no host sync, so a CUDA graph can capture them
GRAPHABLE = {"triton", "torch-grouped", "dense-equiv"}


class Unsupported(Exception):
    """This provider cannot run here; the message says why (recorded as a skipped point)."""


@dataclass
class Layer:
    """One MoE layer's weights (random, fixed seed), shared by every provider."""

    w13_E2FD: torch.Tensor
    w2_EDF: torch.Tensor
    b13_E2F: Optional[torch.Tensor]
    b2_ED: Optional[torch.Tensor]
    activation: str
    top_k: int
    transformers_block: Optional[str]
    _blocks: dict[str, Any] = field(default_factory=dict)

    @property
    def E(self) -> int:
        return self.w13_E2FD.shape[0]

    @property
    def D(self) -> int:
        return self.w13_E2FD.shape[2]

    @property
    def F(self) -> int:
        return self.w2_EDF.shape[2]


def make_layer(shape: Any, dtype: torch.dtype, device: str, seed: int) -> Layer:
    """N(0, 1/fan_in) weights so activations stay O(1) (never zeros: they hide indexing bugs and run faster)."""
    g = torch.Generator(device=device).manual_seed(seed)
    E, D, F = shape.experts, shape.hidden, shape.ffn
    w13 = torch.empty(E, 2 * F, D, dtype=dtype, device=device)
    w2 = torch.empty(E, D, F, dtype=dtype, device=device)
    for e in range(E):  # per expert: no fp32 temporary of the whole layer
        w13[e].normal_(0.0, D**-0.5, generator=g)
        w2[e].normal_(0.0, F**-0.5, generator=g)
    b13 = b2 = None
    if shape.bias:
        b13 = torch.empty(E, 2 * F, dtype=dtype, device=device).normal_(0.0, 0.1, generator=g)
        b2 = torch.empty(E, D, dtype=dtype, device=device).normal_(0.0, 0.1, generator=g)
    return Layer(w13, w2, b13, b2, shape.activation, shape.top_k, shape.transformers_block)


def uniform_routing(T: int, K: int, E: int, seed: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """K distinct experts per token, uniformly at random (fixed seed); weights = softmax of random logits."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.rand(T, E, generator=g).argsort(dim=1)[:, :K].contiguous()
    w = torch.softmax(torch.randn(T, K, generator=g), dim=-1)
    return w.to(device), ids.to(device)


def fused_moe_loop(x_TD, w13_E2FD, w2_EDF, topk_weights_TK, topk_ids_TK, activation="silu", b13_E2F=None,
                   b2_ED=None) -> torch.Tensor:
    """The textbook loop: every expert in turn, its tokens found with a boolean mask (one host sync each)."""
    y = torch.zeros(x_TD.shape, dtype=torch.float32, device=x_TD.device)
    for e in range(w13_E2FD.shape[0]):
        tok, slot = torch.where(topk_ids_TK == e)
        if tok.numel() == 0:
            continue
        h = Fn.linear(x_TD[tok], w13_E2FD[e], None if b13_E2F is None else b13_E2F[e])
        o = Fn.linear(apply_activation_(h, activation), w2_EDF[e], None if b2_ED is None else b2_ED[e])
        y.index_add_(0, tok, o.float() * topk_weights_TK[tok, slot, None].float())
    return y.to(x_TD.dtype)


class _FixedRouter(torch.nn.Module):
    """Stands in for a transformers block's router so every provider computes the same routing."""

    weights_TK: torch.Tensor
    ids_TK: torch.Tensor

    def forward(self, hidden: torch.Tensor):
        return None, self.weights_TK.to(hidden.dtype), self.ids_TK


def _transformers_block(layer: Layer, impl: str) -> torch.nn.Module:
    if impl in layer._blocks:
        return layer._blocks[impl]
    try:
        import transformers  # noqa: F401
    except ImportError as exc:
        raise Unsupported(f"transformers is not installed ({exc})") from None
    if layer.transformers_block == "mixtral":
        from transformers import MixtralConfig
        from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock as Block

        cfg = MixtralConfig(hidden_size=layer.D, intermediate_size=layer.F, num_local_experts=layer.E,
                            num_experts_per_tok=layer.top_k)
    else:
        from transformers import Qwen3MoeConfig
        from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock as Block

        cfg = Qwen3MoeConfig(hidden_size=layer.D, moe_intermediate_size=layer.F, num_experts=layer.E,
                             num_experts_per_tok=layer.top_k, norm_topk_prob=True)
    cfg._experts_implementation = impl
    with torch.device("meta"):  # the block's own random weights are replaced by the layer's, never allocated
        block = Block(cfg)
    # transformers stores experts exactly as we do: gate_up_proj [E, 2F, D] (gate rows first), down_proj [E, D, F]
    block.experts.gate_up_proj = torch.nn.Parameter(layer.w13_E2FD, requires_grad=False)
    block.experts.down_proj = torch.nn.Parameter(layer.w2_EDF, requires_grad=False)
    block.gate = _FixedRouter()
    block.eval()
    layer._blocks[impl] = block
    return block


def make_runner(provider: str, layer: Layer, x_TD: torch.Tensor, w_TK: torch.Tensor,
                ids_TK: torch.Tensor) -> Callable[[], torch.Tensor]:
    """A no-argument callable computing y_TD with `provider`, or Unsupported."""
    args = (x_TD, layer.w13_E2FD, layer.w2_EDF, w_TK, ids_TK, layer.activation, layer.b13_E2F, layer.b2_ED)
    dev = x_TD.device.type
    if provider == "triton":
        if dev != "cuda":
            raise Unsupported("triton is timed on CUDA only (on CPU it would run the interpreter)")
        from moebench_kernels import get_backend

        fused = get_backend("triton", "cuda").fused_moe
        return lambda: fused(*args)
    if provider == "torch-ref":
        return lambda: fused_moe_ref(*args)
    if provider == "torch-grouped":
        ok, why = grouped_mm_support(x_TD, layer.w13_E2FD)
        if not ok:
            raise Unsupported(why)
        return lambda: fused_moe_grouped_mm(*args)
    if provider == "torch-loop":
        return lambda: fused_moe_loop(*args)
    if provider in ("transformers-eager", "transformers-grouped"):
        if layer.b13_E2F is not None or layer.activation != "silu":
            raise Unsupported("the transformers blocks compared here (Mixtral, Qwen3-MoE) have no biases, SiLU only")
        block = _transformers_block(layer, "eager" if provider.endswith("eager") else "grouped_mm")
        block.gate.weights_TK, block.gate.ids_TK = w_TK, ids_TK
        x_1TD = x_TD[None]
        return lambda: block(x_1TD)[0]
    if provider == "dense-equiv":
        R = ids_TK.numel()
        xr = x_TD.repeat_interleave(ids_TK.shape[1], dim=0) if R else x_TD[:0]
        w13, w2 = layer.w13_E2FD[0], layer.w2_EDF[0]
        return lambda: Fn.linear(apply_activation_(Fn.linear(xr, w13), layer.activation), w2)
    raise Unsupported(f"unknown provider {provider!r}")
