"""RMSNorm as Llama/Qwen/DeepSeek/gpt-oss compute it: statistics in fp32, then scale by the weight.

Llama, Qwen and DeepSeek cast back to the input dtype before scaling; gpt-oss scales in fp32 and casts after
(`scale_fp32`). The two agree in fp32 and differ by one rounding in bf16, so each family keeps its own order.
The arithmetic is the kernel backend's `rmsnorm` (Triton on GPU, its torch reference on CPU).
"""

from __future__ import annotations

import torch
from torch import nn

from moebench.models.common.ops import ops


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6, scale_fp32: bool = False):
        super().__init__()
        self.eps = eps
        self.scale_fp32 = scale_fp32
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops().rmsnorm(x, self.weight, self.eps, scale_fp32=self.scale_fp32)

    def add_forward(self, x: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(norm(residual + x), residual + x) in one pass: the residual add fused with the next norm."""
        return ops().fused_add_rmsnorm(x, residual, self.weight, self.eps, scale_fp32=self.scale_fp32)
