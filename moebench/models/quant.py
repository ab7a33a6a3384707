"""Dequantizers for the formats the published checkpoints ship in, so the loader can read them as they are:

- block FP8 (DeepSeek-V3/R1, Kimi-K2): `weight` in float8_e4m3fn with `weight_scale_inv`, one fp32 factor per
  128×128 block (config.json `quantization_config.weight_block_size`).
- MXFP4 (gpt-oss experts): `*_blocks` uint8 [..., G, 16] holding two 4-bit E2M1 codes per byte (low nibble
  first) and `*_scales` uint8 [..., G], a power-of-two exponent biased by 127 for each group of 32 values.

moebench runs the dequantized weights in the run dtype; the formats only matter on the way in.
"""

from __future__ import annotations

import torch

# E2M1 code -> value (sign bit, 2 exponent bits, 1 mantissa bit)
FP4_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)


def fp8_block_dequant(
    w_OI: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int], dtype: torch.dtype
) -> torch.Tensor:
    """w [O, I] fp8 × its per-block factor scale_inv [ceil(O/bo), ceil(I/bi)] -> [O, I] in `dtype`."""
    o, i = w_OI.shape
    s = scale_inv.float().repeat_interleave(block[0], 0)[:o].repeat_interleave(block[1], 1)[:, :i]
    return (w_OI.float() * s).to(dtype)


def mxfp4_dequant(blocks: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """blocks [..., G, B] uint8 and scales [..., G] uint8 -> [..., G·2B] in `dtype` (values in storage order)."""
    if blocks.shape[:-1] != scales.shape:
        raise ValueError(f"MXFP4 blocks {list(blocks.shape)} do not match scales {list(scales.shape)}")
    lut = torch.tensor(FP4_VALUES, dtype=torch.float32, device=blocks.device)
    b = blocks.to(torch.uint8)
    lo, hi = lut[(b & 0x0F).long()], lut[(b >> 4).long()]
    vals = torch.stack([lo, hi], dim=-1).flatten(-2)  # [..., G, 2B]: low nibble is the earlier value
    vals = torch.ldexp(vals, scales.to(torch.int32).sub(127).unsqueeze(-1).float())
    return vals.flatten(-2).to(dtype)
