"""Grouped-query attention with a KV cache, and the variants the families need:
QK-norm (Qwen3), projection biases, attention sinks and sliding windows (gpt-oss).

Legend: B batch, S new tokens, T cached+new tokens, H query heads, G kv heads, D head dim, M model dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from moebench.models.common.norm import RMSNorm
from moebench.models.common.rope import Rotary, apply_rotary
from moebench.models.config import ArchConfig


def positions(start: int | torch.Tensor, s: int, device: torch.device) -> torch.Tensor:
    """Positions of the S new tokens. `start` is an int, or a 0-d device tensor for static-shape decode
    (CUDA-graph replay: the position changes between replays, the shapes do not)."""
    if isinstance(start, torch.Tensor):
        return start.to(device) + torch.arange(s, device=device)
    return torch.arange(start, start + s, device=device)


def causal_mask(start: int | torch.Tensor, s: int, t: int, window: int | None, device: torch.device) -> torch.Tensor:
    """[S, T] boolean, True where query (at start+i) may attend key j."""
    q = positions(start, s, device)[:, None]
    k = torch.arange(t, device=device)[None, :]
    m = k <= q
    if window:
        m &= (q - k) < window
    return m


def sdpa_mask(start: int | torch.Tensor, s: int, t: int, window: int | None, device: torch.device) -> dict:
    """SDPA's mask arguments: none where the pattern needs none, so the fused (flash / memory-efficient)
    kernels can run — a prefill from position 0 is plain causal, a single decode token inside the window sees
    every cached key. Otherwise the explicit [S, T] mask (always for static-shape decode, where the whole
    cache buffer is visible and the mask hides the part not yet written)."""
    if isinstance(start, torch.Tensor):
        return {"attn_mask": causal_mask(start, s, t, window, device), "is_causal": False}
    in_window = window is None or t <= window
    if s == 1 and in_window:
        return {"attn_mask": None, "is_causal": False}
    if start == 0 and s == t and in_window:
        return {"attn_mask": None, "is_causal": True}
    return {"attn_mask": causal_mask(start, s, t, window, device), "is_causal": False}


def update_cache(buf: torch.Tensor, new: torch.Tensor, start: int | torch.Tensor, dim: int) -> torch.Tensor:
    """Write `new` into `buf` at positions start.. along `dim`; return what attention may read: the filled
    prefix for an int start, the whole buffer (masked by `sdpa_mask`) for a device-tensor start."""
    s = new.shape[dim]
    if isinstance(start, torch.Tensor):
        buf.index_copy_(dim, positions(start, s, buf.device), new)
        return buf
    buf.narrow(dim, start, s).copy_(new)
    return buf.narrow(dim, 0, start + s)


class GQAttention(nn.Module):
    def __init__(self, cfg: ArchConfig, layer: int):
        super().__init__()
        m, h, g, d = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.n_heads, self.n_kv_heads, self.head_dim = h, g, d
        self.window = cfg.sliding_window if cfg.is_sliding_layer(layer) else None
        bias = cfg.attention_bias
        self.wq = nn.Linear(m, h * d, bias=bias)
        self.wk = nn.Linear(m, g * d, bias=bias)
        self.wv = nn.Linear(m, g * d, bias=bias)
        self.wo = nn.Linear(h * d, m, bias=bias)
        self.q_norm = RMSNorm(d, cfg.rms_norm_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(d, cfg.rms_norm_eps) if cfg.qk_norm else None
        # gpt-oss: one learned logit per head that joins the softmax denominator but attends to nothing
        self.sinks = nn.Parameter(torch.zeros(h)) if cfg.attention_sinks else None
        self.rotary = Rotary(cfg, d)
        self.scale = d**-0.5

    def new_cache(self, batch: int, max_seq: int, device, dtype) -> dict[str, torch.Tensor]:
        shape = (batch, self.n_kv_heads, max_seq, self.head_dim)
        return {"k": torch.zeros(shape, device=device, dtype=dtype), "v": torch.zeros(shape, device=device, dtype=dtype)}

    def forward(self, x_BSM: torch.Tensor, start: int | torch.Tensor = 0, cache: dict | None = None) -> torch.Tensor:
        b, s, _ = x_BSM.shape
        q = self.wq(x_BSM).view(b, s, -1, self.head_dim).transpose(1, 2)
        k = self.wk(x_BSM).view(b, s, -1, self.head_dim).transpose(1, 2)
        v = self.wv(x_BSM).view(b, s, -1, self.head_dim).transpose(1, 2)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        cos, sin = self.rotary.cos_sin(positions(start, s, x_BSM.device), q.dtype)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = update_cache(cache["k"], k, start, 2), update_cache(cache["v"], v, start, 2)
        if self.sinks is None:
            mask = sdpa_mask(start, s, k.shape[2], self.window, x_BSM.device)
            o = F.scaled_dot_product_attention(q, k, v, scale=self.scale, enable_gqa=True, **mask)
        else:
            o = self._attend_with_sinks(q, k, v, causal_mask(start, s, k.shape[2], self.window, x_BSM.device))
        return self.wo(o.transpose(1, 2).reshape(b, s, -1))

    def _attend_with_sinks(self, q_BHSD, k_BGTD, v_BGTD, mask_ST) -> torch.Tensor:
        # Sinks add one learned logit per head to the softmax denominator (gpt-oss); SDPA has no hook for it.
        rep = q_BHSD.shape[1] // k_BGTD.shape[1]  # from the shapes: tensor parallelism slices heads
        k, v = k_BGTD.repeat_interleave(rep, dim=1), v_BGTD.repeat_interleave(rep, dim=1)
        scores = (q_BHSD @ k.transpose(-1, -2)) * self.scale
        scores = scores.masked_fill(~mask_ST, float("-inf"))
        sink = self.sinks.to(scores.dtype).view(1, -1, 1, 1).expand(*scores.shape[:-1], 1)
        probs = torch.cat([scores, sink], dim=-1).float().softmax(dim=-1)[..., :-1].to(v.dtype)
        return probs @ v
