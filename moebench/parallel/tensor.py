"""Tensor parallelism for attention heads and dense MLPs, applied from outside to a built single-device model
(as gpt-fast does): input projections are split by output rows (column parallel), the output projection by
input columns (row parallel), and the output projection's result is summed over the group by an all-reduce in a
forward hook. The modules read head counts from their weight shapes, so slicing the weights is enough; the
head-count attributes are updated for the KV cache layout and for sinks.

Row-parallel biases are kept on group rank 0 only, so the all-reduce adds them once. With more ranks than
key/value heads (a multiple of them), each rank keeps a copy of the kv head its query heads use.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from moebench.parallel.comm import all_reduce_, watched
from moebench.parallel.mesh import Group


def _rows(n: int, g: Group) -> tuple[int, int]:
    per = n // g.size
    return g.rank * per, (g.rank + 1) * per


def _slice_linear(lin: nn.Linear, dim: int, blocks: int, g: Group, keep_blocks: tuple[int, int] | None = None) -> None:
    """Keep this rank's share of `blocks` equal blocks along `dim` (0: output rows, 1: input columns), or the
    blocks [lo, hi) of `keep_blocks`."""
    lo, hi = keep_blocks or _rows(blocks, g)
    w = lin.weight.data
    size = w.shape[dim] // blocks
    keep = w.narrow(dim, lo * size, (hi - lo) * size).clone()
    lin.weight = nn.Parameter(keep, requires_grad=False)
    if lin.bias is not None:
        b = lin.bias.data
        b = b[lo * size : hi * size].clone() if dim == 0 else (b.clone() if g.rank == 0 else torch.zeros_like(b))
        lin.bias = nn.Parameter(b, requires_grad=False)
    lin.out_features, lin.in_features = lin.weight.shape


def _sum_output(lin: nn.Module, layer: int, g: Group) -> None:
    def hook(_mod: nn.Module, _args: Any, out: torch.Tensor) -> torch.Tensor:
        with watched(f"L{layer}/allreduce"):
            return all_reduce_(out, g.pg, g.size)

    lin.register_forward_hook(hook)


def shard_attention(attn: nn.Module, layer: int, g: Group) -> None:
    """Split attention heads over the group: GQA (queries and kv heads) or MLA (per-head up-projections)."""
    h = attn.n_heads
    if hasattr(attn, "wkv_b"):  # MLA: the latent (wq_a, wkv_a and their norms) is shared by every head
        if attn.wq is not None:
            _slice_linear(attn.wq, 0, h, g)
        else:
            _slice_linear(attn.wq_b, 0, h, g)
        _slice_linear(attn.wkv_b, 0, h, g)
    else:
        kv = attn.n_kv_heads
        _slice_linear(attn.wq, 0, h, g)
        # More ranks than kv heads: each rank keeps (a copy of) the one kv head its query heads share.
        mine = _rows(kv, g) if kv % g.size == 0 else (g.rank // (g.size // kv), g.rank // (g.size // kv) + 1)
        _slice_linear(attn.wk, 0, kv, g, mine)
        _slice_linear(attn.wv, 0, kv, g, mine)
        attn.n_kv_heads = mine[1] - mine[0]
        if getattr(attn, "sinks", None) is not None:
            lo, hi = _rows(h, g)
            attn.sinks = nn.Parameter(attn.sinks.data[lo:hi].clone(), requires_grad=False)
    _slice_linear(attn.wo, 1, h, g)
    attn.n_heads = h // g.size
    _sum_output(attn.wo, layer, g)


def shard_mlp(mlp: nn.Module, layer: int, g: Group) -> None:
    """SwiGLU: gate and up projections split by hidden rows, down projection by hidden columns."""
    f = mlp.w1.out_features
    _slice_linear(mlp.w1, 0, f, g)
    _slice_linear(mlp.w3, 0, f, g)
    _slice_linear(mlp.w2, 1, f, g)
    _sum_output(mlp.w2, layer, g)
