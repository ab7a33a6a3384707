"""Multi-head latent attention (DeepSeek-V2/V3, Kimi-K2) with the compressed KV cache the real model keeps.

Queries go through a low-rank bottleneck (wq_a -> RMSNorm -> wq_b) unless q_lora_rank is null. Keys and values
are one shared latent per token (wkv_a -> RMSNorm) plus one shared rope key; wkv_b expands the latent to
per-head no-rope keys and values. The cache holds only `[latent | rope key]` per token (R + Dr numbers,
576 for DeepSeek-V3, against 2·H·D = 32768 for plain MHA of the same shape).

Two ways to attend, equal up to rounding:
- expanded (prefill): wkv_b expands every cached latent, then ordinary attention with qk dim Dn + Dr.
- absorbed (decode): wkv_b's key half is folded into the query and its value half applied after attention, so
  attention runs directly on the latent as multi-query attention with one kv head of width R + Dr. This is what
  DeepSeek's inference code and FlashMLA do for decode: nothing per cached token is expanded.

RoPE layout: the rope dims use the half-rotation (rotate_half) layout. DeepSeek checkpoints store them
interleaved (x0, x1), (x2, x3)… (`rope_interleave`, default true); the checkpoint loader permutes those weight
rows once, which gives bit-identical scores (q and k are permuted alike).

Legend: B batch, S new tokens, T cached+new tokens, H heads, M model dim, R kv_lora_rank, Dn no-rope head dim,
Dr rope head dim, Dv value head dim.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from moebench.models.common.attention import positions, sdpa_mask, update_cache
from moebench.models.common.norm import RMSNorm
from moebench.models.common.rope import Rotary, apply_rotary, softmax_mscale
from moebench.models.config import ArchConfig

# Both reference implementations build the latent norms with RMSNorm's default eps, not rms_norm_eps.
LATENT_NORM_EPS = 1e-6


class MLAttention(nn.Module):
    def __init__(self, cfg: ArchConfig, layer: int):
        super().__init__()
        m, h = cfg.hidden_size, cfg.num_attention_heads
        self.n_heads = h
        self.nope_dim, self.rope_dim, self.v_dim = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
        self.kv_rank = cfg.kv_lora_rank
        qk = self.nope_dim + self.rope_dim
        bias = cfg.attention_bias
        if cfg.q_lora_rank:
            self.wq = None
            self.wq_a = nn.Linear(m, cfg.q_lora_rank, bias=bias)
            self.q_a_norm = RMSNorm(cfg.q_lora_rank, LATENT_NORM_EPS)
            self.wq_b = nn.Linear(cfg.q_lora_rank, h * qk, bias=False)
        else:
            self.wq = nn.Linear(m, h * qk, bias=False)
            self.wq_a = self.q_a_norm = self.wq_b = None
        self.wkv_a = nn.Linear(m, self.kv_rank + self.rope_dim, bias=bias)
        self.kv_a_norm = RMSNorm(self.kv_rank, LATENT_NORM_EPS)
        self.wkv_b = nn.Linear(self.kv_rank, h * (self.nope_dim + self.v_dim), bias=False)
        self.wo = nn.Linear(h * self.v_dim, m, bias=bias)
        self.rotary = Rotary(cfg, self.rope_dim)
        self.scale = qk**-0.5 * softmax_mscale(cfg)
        # None: absorbed when continuing from a cache (decode), expanded for a prefill from position 0.
        self.absorb: Optional[bool] = None

    def new_cache(self, batch: int, max_seq: int, device, dtype) -> dict[str, torch.Tensor]:
        """{"kv_latent": [B, max_seq, R + Dr]}: the normed latent, then the rotated rope key."""
        return {"kv_latent": torch.zeros(batch, max_seq, self.kv_rank + self.rope_dim, device=device, dtype=dtype)}

    def forward(self, x_BSM: torch.Tensor, start: int | torch.Tensor = 0, cache: dict | None = None) -> torch.Tensor:
        b, s, _ = x_BSM.shape
        q = self.wq(x_BSM) if self.wq is not None else self.wq_b(self.q_a_norm(self.wq_a(x_BSM)))
        q_BHSK = q.view(b, s, -1, self.nope_dim + self.rope_dim).transpose(1, 2)
        q_nope, q_rope = q_BHSK.split([self.nope_dim, self.rope_dim], dim=-1)
        latent_BSR, k_rope_BSD = self.wkv_a(x_BSM).split([self.kv_rank, self.rope_dim], dim=-1)
        latent_BSR = self.kv_a_norm(latent_BSR)
        cos, sin = self.rotary.cos_sin(positions(start, s, x_BSM.device), q.dtype)
        q_rope, k_rope_BSD = apply_rotary(q_rope, cos, sin), apply_rotary(k_rope_BSD, cos, sin)
        kv_BTC = torch.cat([latent_BSR, k_rope_BSD], dim=-1)
        if cache is not None:
            kv_BTC = update_cache(cache["kv_latent"], kv_BTC, start, 1)
        mask = sdpa_mask(start, s, kv_BTC.shape[1], None, x_BSM.device)
        absorb = self.absorb if self.absorb is not None else isinstance(start, torch.Tensor) or start > 0
        attend = self._attend_absorbed if absorb else self._attend_expanded
        o_BHSV = attend(q_nope, q_rope, kv_BTC, mask)
        return self.wo(o_BHSV.transpose(1, 2).reshape(b, s, -1))

    def _wkv_b_HCR(self) -> torch.Tensor:
        """wkv_b as [H, Dn + Dv, R]; the head count comes from the weight, so a tensor-parallel slice just works."""
        return self.wkv_b.weight.view(-1, self.nope_dim + self.v_dim, self.kv_rank)

    def _attend_expanded(self, q_nope, q_rope, kv_BTC, mask: dict) -> torch.Tensor:
        b, t = kv_BTC.shape[:2]
        latent, k_rope = kv_BTC.split([self.kv_rank, self.rope_dim], dim=-1)
        kv = self.wkv_b(latent).view(b, t, -1, self.nope_dim + self.v_dim).transpose(1, 2)
        k_nope, v_BHTV = kv.split([self.nope_dim, self.v_dim], dim=-1)
        k_BHTK = torch.cat([k_nope, k_rope[:, None].expand(-1, k_nope.shape[1], -1, -1)], dim=-1)
        q_BHSK = torch.cat([q_nope, q_rope], dim=-1)
        return F.scaled_dot_product_attention(q_BHSK, k_BHTK, v_BHTV, scale=self.scale, **mask)

    def _attend_absorbed(self, q_nope, q_rope, kv_BTC, mask: dict) -> torch.Tensor:
        w = self._wkv_b_HCR()
        w_uk_HNR, w_uv_HVR = w[:, : self.nope_dim], w[:, self.nope_dim :]
        q_lat_BHSR = torch.einsum("bhsn,hnr->bhsr", q_nope, w_uk_HNR)
        q_BHSC = torch.cat([q_lat_BHSR, q_rope], dim=-1)
        k_B1TC = kv_BTC[:, None]
        v_B1TR = k_B1TC[..., : self.kv_rank]
        o_lat = F.scaled_dot_product_attention(q_BHSC, k_B1TC, v_B1TR, scale=self.scale, enable_gqa=True, **mask)
        return torch.einsum("bhsr,hvr->bhsv", o_lat, w_uv_HVR)
