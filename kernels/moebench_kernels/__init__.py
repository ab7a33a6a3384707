"""moebench_kernels: Triton kernels for the MoE hot path, each with its launch wrapper and plain-torch `*_ref`.

  fused_moe.py   fused MoE experts (+ moe_align.py: routing-aligned token order), torch reference and
                 torch._grouped_mm paths
  router.py      softmax top-k, top-k-then-softmax (GPT-OSS), grouped sigmoid top-k (DeepSeek-V3)
  rmsnorm.py     RMSNorm, and RMSNorm fused with the residual add
  configs.py     tuned launch configs (configs/*.json, vLLM's naming); `python -m moebench_kernels.tune`
  backends.py    get_backend("auto" | "torch" | "triton", device)

Importing this package imports neither torch nor Triton.
"""

from __future__ import annotations

from typing import Any

__all__ = ["get_backend"]


def get_backend(name: str = "auto", device: Any = "cpu") -> Any:
    """The backend `name` for `device`: an object with fused_moe, topk_softmax, grouped_topk_sigmoid,
    topk_then_softmax, rmsnorm and fused_add_rmsnorm. See `moebench_kernels.backends`."""
    from moebench_kernels.backends import get_backend as _get

    return _get(name, device)
