"""RMSNorm, alone or fused with the residual add, as transformers' LlamaRMSNorm computes it.

Legend: N rows (all leading dims flattened), D model dim.

  rmsnorm(x, w, eps)            y = w · (x · rsqrt(mean(x², fp32) + eps)).to(x.dtype)
  fused_add_rmsnorm(x, r, w, eps) -> (rmsnorm(x + r), x + r); the sum is rounded to x's dtype first, exactly
                                 as the model's `hidden = residual + hidden` (one rounding either way).

Statistics in fp32; the normalised value is cast back to x's dtype *before* the weight multiply (Llama, Qwen,
DeepSeek) and the output dtype is torch.result_type(weight, x), as that torch expression gives;
`scale_fp32=True` multiplies in fp32 and casts to x's dtype after (GPT-OSS).
"""

from __future__ import annotations

from typing import Optional

import torch

from moebench_kernels._jit import next_pow2, triton_kernel

tl = None  # bound to triton.language at the first launch (see _jit.py)


@triton_kernel
def _rmsnorm_kernel(x_ptr, r_ptr, w_ptr, y_ptr, r_out_ptr, D, stride_x, stride_r, stride_y, stride_ro, eps,
                    HAS_RESIDUAL: tl.constexpr, SCALE_FP32: tl.constexpr, BLOCK_D: tl.constexpr):
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK_D)
    ok = offs < D
    x = tl.load(x_ptr + row * stride_x + offs, mask=ok, other=0.0)
    if HAS_RESIDUAL:
        x = (x.to(tl.float32) + tl.load(r_ptr + row * stride_r + offs, mask=ok, other=0.0).to(tl.float32))
        x = x.to(x_ptr.dtype.element_ty)  # the residual stream is kept in the model dtype
        tl.store(r_out_ptr + row * stride_ro + offs, x, mask=ok)
    xf = x.to(tl.float32)
    n = xf * tl.rsqrt(tl.sum(xf * xf, axis=0) / D + eps)
    w = tl.load(w_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    if SCALE_FP32:
        y = w * n
    else:
        y = w * n.to(x_ptr.dtype.element_ty).to(tl.float32)
    tl.store(y_ptr + row * stride_y + offs, y.to(y_ptr.dtype.element_ty), mask=ok)


def _out_dtype(x: torch.Tensor, weight: torch.Tensor, scale_fp32: bool) -> torch.dtype:
    return x.dtype if scale_fp32 else torch.result_type(weight, x)


def _launch(x: torch.Tensor, residual: Optional[torch.Tensor], weight: torch.Tensor, eps: float, scale_fp32: bool):
    D = x.shape[-1]
    if weight.shape != (D,):
        raise ValueError(f"weight must be [{D}], got {tuple(weight.shape)}")
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"residual {tuple(residual.shape)} must match x {tuple(x.shape)}")
    x_ND = x.reshape(-1, D)
    if x_ND.stride(-1) != 1:
        x_ND = x_ND.contiguous()
    y_ND = torch.empty(x_ND.shape, dtype=_out_dtype(x, weight, scale_fp32), device=x.device)
    r_ND = residual.reshape(-1, D) if residual is not None else x_ND
    if r_ND.stride(-1) != 1:
        r_ND = r_ND.contiguous()
    r_out = torch.empty_like(x_ND) if residual is not None else x_ND
    block = next_pow2(D)
    if x_ND.shape[0]:
        _rmsnorm_kernel[(x_ND.shape[0],)](
            x_ND, r_ND, weight.contiguous(), y_ND, r_out, D, x_ND.stride(0), r_ND.stride(0), y_ND.stride(0),
            r_out.stride(0), float(eps), HAS_RESIDUAL=residual is not None, SCALE_FP32=scale_fp32,
            BLOCK_D=block, num_warps=max(1, min(16, block // 256)))
    return y_ND.view(x.shape), r_out.view(x.shape)


def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float, *, scale_fp32: bool = False) -> torch.Tensor:
    """RMSNorm over the last dim (Triton)."""
    return _launch(x, None, weight, eps, scale_fp32)[0]


def fused_add_rmsnorm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float, *,
                      scale_fp32: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(rmsnorm(x + residual), x + residual) in one pass (Triton)."""
    return _launch(x, residual, weight, eps, scale_fp32)


def rmsnorm_ref(x: torch.Tensor, weight: torch.Tensor, eps: float, *, scale_fp32: bool = False) -> torch.Tensor:
    """Plain torch; transformers' LlamaRMSNorm (or GPT-OSS's order with `scale_fp32`)."""
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    if scale_fp32:
        return (weight.float() * x32).to(x.dtype)
    return weight * x32.to(x.dtype)


def fused_add_rmsnorm_ref(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float, *,
                          scale_fp32: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain torch: the residual add in the model dtype, then `rmsnorm_ref`."""
    new_residual = residual + x
    return rmsnorm_ref(new_residual, weight, eps, scale_fp32=scale_fp32), new_residual
