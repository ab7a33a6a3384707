"""RMSNorm as Llama/Qwen/DeepSeek/gpt-oss compute it: statistics in fp32, then scale by the weight.

Llama, Qwen and DeepSeek cast back to the input dtype before scaling; gpt-oss scales in fp32 and casts after
(`scale_fp32`). The two agree in fp32 and differ by one rounding in bf16, so each family keeps its own order.
"""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6, scale_fp32: bool = False):
        super().__init__()
        self.eps = eps
        self.scale_fp32 = scale_fp32
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.scale_fp32:
            return (self.weight.float() * x32).to(dtype)
        return self.weight * x32.to(dtype)
