"""Mixture-of-Experts feed-forward: router -> (dispatch) -> grouped experts -> (combine), plus shared experts.

Router variants: `softmax` (Mixtral, Qwen3-MoE: softmax over E, top-k, optional renormalise), `topk_softmax`
(gpt-oss: top-k on biased logits, softmax over the k), `sigmoid_grouped` (DeepSeek-V3 / Kimi-K2: sigmoid scores,
selection on scores + e_score_correction_bias within the best groups, weights from unbiased scores,
renormalised, × routed_scaling_factor).

Experts are stacked tensors `w13_E2FD` (gate rows then up rows) and `w2_EDF`, computed by the kernel
backend's `fused_moe`; expert parallelism swaps in a `dispatcher` (moebench.parallel) without touching this file.

Legend: T tokens, D model dim, F expert hidden dim, E experts, K experts per token.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from moebench.models.common.mlp import SwiGLU
from moebench.models.common.ops import ops
from moebench.models.config import ArchConfig
from moebench.profile.regions import region

# (x_TD, weights_TK, ids_TK, moe) -> y_TD ; installed by expert parallelism
Dispatcher = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "MoE"], torch.Tensor]
# (logits_TE, weights_TK, ids_TK) -> (weights_TK, ids_TK) ; installed by routing studies (profile)
RouteOverride = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class Router(nn.Module):
    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.kind, self.k = cfg.router, cfg.top_k
        self.renormalize, self.scaling = cfg.norm_topk_prob, cfg.routed_scaling_factor
        self.n_group, self.topk_group = cfg.n_group, cfg.topk_group
        e = cfg.n_routed_experts
        self.weight = nn.Parameter(torch.empty(e, cfg.hidden_size))
        self.bias = nn.Parameter(torch.zeros(e)) if cfg.router == "topk_softmax" else None
        # DeepSeek's selection bias is a buffer in the checkpoint (e_score_correction_bias), not trained by SGD;
        # it stays fp32 whatever the model dtype, as transformers keeps it (scores are compared in fp32).
        bias = torch.zeros(e, dtype=torch.float32) if cfg.router == "sigmoid_grouped" else None
        self.register_buffer("e_score_correction_bias", bias)

    def reset_buffers(self) -> None:
        if self.e_score_correction_bias is not None and self.e_score_correction_bias.device.type != "meta":
            self.e_score_correction_bias.zero_()

    def logits(self, x_TD: torch.Tensor) -> torch.Tensor:
        if self.kind == "sigmoid_grouped":  # DeepSeek scores in fp32
            return torch.nn.functional.linear(x_TD.float(), self.weight.float())
        return torch.nn.functional.linear(x_TD, self.weight, self.bias)

    def forward(self, x_TD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits_TE, weights_TK, ids_TK)."""
        logits = self.logits(x_TD)
        o = ops()
        if self.kind == "softmax":
            w, ids = o.topk_softmax(logits, self.k, renormalize=self.renormalize)
        elif self.kind == "topk_softmax":
            w, ids = o.topk_then_softmax(logits, self.k)
        elif self.kind == "sigmoid_grouped":
            w, ids = o.grouped_topk_sigmoid(
                logits, self.e_score_correction_bias, self.k, n_group=self.n_group, topk_group=self.topk_group,
                renormalize=self.renormalize, routed_scaling_factor=self.scaling,
            )
        else:
            raise ValueError(f"unknown router {self.kind!r}")
        return logits, w.to(x_TD.dtype), ids


class MoE(nn.Module):
    def __init__(self, cfg: ArchConfig, layer: int):
        super().__init__()
        self.layer = layer
        e, d, f = cfg.n_routed_experts, cfg.hidden_size, cfg.moe_intermediate_size
        self.n_experts, self.activation = e, cfg.activation
        self.router = Router(cfg)
        self.w13_E2FD = nn.Parameter(torch.empty(e, 2 * f, d))
        self.w2_EDF = nn.Parameter(torch.empty(e, d, f))
        self.b13_E2F = nn.Parameter(torch.zeros(e, 2 * f)) if cfg.expert_bias else None
        self.b2_ED = nn.Parameter(torch.zeros(e, d)) if cfg.expert_bias else None
        self.shared = SwiGLU(d, cfg.n_shared_experts * f) if cfg.n_shared_experts else None
        # Which global expert ids this module holds: all of them, unless expert parallelism sharded it.
        self.expert_offset = 0
        self.dispatcher: Optional[Dispatcher] = None
        self.route_override: Optional[RouteOverride] = None
        self.load_observer: Optional[Callable[[int, torch.Tensor], None]] = None

    def experts(self, x_TD: torch.Tensor, weights_TK: torch.Tensor, ids_TK: torch.Tensor) -> torch.Tensor:
        """Local experts on ids relative to this shard; ids of -1 contribute nothing."""
        return ops().fused_moe(
            x_TD, self.w13_E2FD, self.w2_EDF, weights_TK, ids_TK, activation=self.activation,
            b13_E2F=self.b13_E2F, b2_ED=self.b2_ED,
        )

    def forward(self, x_BSD: torch.Tensor) -> torch.Tensor:
        shape = x_BSD.shape
        x_TD = x_BSD.reshape(-1, shape[-1])
        with region(f"L{self.layer}/router"):
            logits, weights, ids = self.router(x_TD)
            if self.route_override is not None:
                weights, ids = self.route_override(logits, weights, ids)
        if self.load_observer is not None:
            self.load_observer(self.layer, ids)
        if self.dispatcher is not None:
            y = self.dispatcher(x_TD, weights, ids, self)
        else:
            with region(f"L{self.layer}/experts"):
                y = self.experts(x_TD, weights, ids)
        if self.shared is not None:
            with region(f"L{self.layer}/experts"):
                y = y + self.shared(x_TD)
        return y.view(shape)
