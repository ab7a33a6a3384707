"""Rotary position embeddings: default, llama3 frequency scaling, YaRN; HF's half-rotation layout.

Legend: B batch, S sequence, H heads, Dr rotary dim.
"""

from __future__ import annotations

import math

import torch

from moebench.models.config import ArchConfig


def _llama3(inv_freq: torch.Tensor, rs: dict) -> torch.Tensor:
    factor = rs["factor"]
    low, high = rs.get("low_freq_factor", 1.0), rs.get("high_freq_factor", 4.0)
    old_ctx = rs["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_ctx / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


def _yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def _yarn(inv_freq: torch.Tensor, dim: int, base: float, rs: dict, max_pos: int) -> tuple[torch.Tensor, float]:
    """YaRN as transformers' `_compute_yarn_parameters` computes it (checked in tests/models/test_rope.py)."""
    old_ctx = rs.get("original_max_position_embeddings") or max_pos
    # DeepSeek-style configs may leave `factor` out and imply it by the context extension
    factor = rs.get("factor") or max_pos / old_ctx
    beta_fast, beta_slow = rs.get("beta_fast") or 32, rs.get("beta_slow") or 1
    mscale, mscale_all = rs.get("mscale"), rs.get("mscale_all_dim")
    attn_factor = rs.get("attention_factor")
    if attn_factor is None:  # an explicit attention_factor wins over the one implied by mscale
        if mscale and mscale_all:
            attn_factor = _yarn_mscale(factor, mscale) / _yarn_mscale(factor, mscale_all)
        else:
            attn_factor = _yarn_mscale(factor)

    def correction_dim(rot: float) -> float:
        return (dim * math.log(old_ctx / (rot * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if rs.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    extrapolation = 1 - ramp
    interp = inv_freq / factor
    return interp * (1 - extrapolation) + inv_freq * extrapolation, float(attn_factor)


def softmax_mscale(cfg: ArchConfig) -> float:
    """Extra factor on the softmax scale for YaRN with `mscale_all_dim` (DeepSeek-V3 / Kimi-K2): mscale².

    DeepSeek's reference code and transformers both apply it to q·k scores, not to cos/sin.
    """
    rs = cfg.rope_scaling or {}
    all_dim = rs.get("mscale_all_dim")
    if (rs.get("rope_type") or rs.get("type") or "default") == "default" or not all_dim:
        return 1.0
    factor = rs.get("factor") or cfg.max_position_embeddings / rs["original_max_position_embeddings"]
    m = _yarn_mscale(factor, all_dim)
    return m * m


def rope_frequencies(cfg: ArchConfig, dim: int) -> tuple[torch.Tensor, float]:
    """(inv_freq [dim/2] in fp32, attention scaling applied to cos/sin) for this config's RoPE variant."""
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    rs = cfg.rope_scaling or {}
    kind = rs.get("rope_type") or rs.get("type") or "default"
    if kind == "default":
        return inv_freq, 1.0
    if kind == "llama3":
        return _llama3(inv_freq, rs), 1.0
    if kind == "yarn":
        return _yarn(inv_freq, dim, cfg.rope_theta, rs, cfg.max_position_embeddings)
    raise ValueError(f"unsupported rope_scaling type {kind!r}")


class Rotary(torch.nn.Module):
    """cos/sin tables for positions; `apply_rotary` rotates q/k laid out [B, H, S, Dr]."""

    def __init__(self, cfg: ArchConfig, dim: int):
        super().__init__()
        self.cfg, self.dim = cfg, dim
        self.register_buffer("inv_freq", torch.empty(dim // 2, dtype=torch.float32), persistent=False)
        self.reset_buffers()

    def reset_buffers(self) -> None:
        inv_freq, self.scaling = rope_frequencies(self.cfg, self.dim)
        if self.inv_freq.device.type != "meta":
            self.inv_freq.copy_(inv_freq)

    def cos_sin(self, positions_S: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = torch.outer(positions_S.float(), self.inv_freq.to(positions_S.device))
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * self.scaling).to(dtype), (emb.sin() * self.scaling).to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x_BHSD: torch.Tensor, cos_SD: torch.Tensor, sin_SD: torch.Tensor) -> torch.Tensor:
    return x_BHSD * cos_SD + rotate_half(x_BHSD) * sin_SD
