"""Routing-aligned token order: which routed rows each expert owns, contiguous per expert.

Legend: T tokens, K experts per token, E experts, R = T·K routed rows (row r = t·K + k), P chunks of rows.

`moe_align(topk_ids_TK, E)` returns
  sorted_ids_R  int32: routed-row ids grouped by expert (expert 0's rows first, each group in row order);
                only the first `counts_E.sum()` entries are meaningful (rows with id -1 are left out),
  counts_E      int32: rows per expert,
  row_start_E   int32: where each expert's group starts in sorted_ids_R (exclusive cumsum of counts_E).

The layout is compact; the GEMMs tile each expert's group in blocks of BLOCK_M rows and mask the last, partial
block, deriving "which expert owns M-block b" from counts_E (cumsum of ceil(count / BLOCK_M)). That is the
block-padded layout of vLLM's moe_align_block_size without materialising the padding, so the two GEMMs may use
different BLOCK_M and no sentinel fill is needed. Ids < 0 (expert parallelism: "not on this rank") and ids >= E
are skipped.

Two launch shapes:
  R <= SMALL_R (decode): one program sorts all keys (expert·R_pad + row) in registers with `tl.sort`.
  larger: chunks of CHUNK rows: per-chunk histograms -> one program turns them into per-(chunk, expert)
  offsets -> each chunk sorts its own keys and scatters. Deterministic (no atomics): rows keep their order.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from moebench_kernels._jit import cdiv, next_pow2, triton_kernel

tl = None  # bound to triton.language at the first launch (see _jit.py)

SMALL_R = 1024
CHUNK = 1024


class MoeAlignment(NamedTuple):
    sorted_ids_R: torch.Tensor
    counts_E: torch.Tensor
    row_start_E: torch.Tensor


@triton_kernel
def _moe_align_small_kernel(ids_ptr, sorted_ids_ptr, counts_ptr, row_start_ptr, R, E,
                            R_PAD: tl.constexpr, E_PAD: tl.constexpr):
    offs = tl.arange(0, R_PAD)
    ids = tl.load(ids_ptr + offs, mask=offs < R, other=-1).to(tl.int32)
    # Skipped rows go to bin E (E_PAD > E): they sort last and are never stored.
    bucket = tl.where((ids >= 0) & (ids < E), ids, E)
    keys = tl.sort(bucket * R_PAD + offs)
    n_valid = tl.sum((bucket < E).to(tl.int32), axis=0)
    tl.store(sorted_ids_ptr + offs, keys % R_PAD, mask=offs < n_valid)
    e = tl.arange(0, E_PAD)
    counts = tl.where(e < E, tl.histogram(bucket, E_PAD), 0)
    tl.store(counts_ptr + e, counts, mask=e < E)
    tl.store(row_start_ptr + e, tl.cumsum(counts, 0) - counts, mask=e < E)


@triton_kernel
def _moe_chunk_hist_kernel(ids_ptr, hist_ptr, R, E, CHUNK: tl.constexpr, E_PAD: tl.constexpr):
    p = tl.program_id(0)
    offs = p * CHUNK + tl.arange(0, CHUNK)
    ids = tl.load(ids_ptr + offs, mask=offs < R, other=-1).to(tl.int32)
    bucket = tl.where((ids >= 0) & (ids < E), ids, E)
    tl.store(hist_ptr + p * E_PAD + tl.arange(0, E_PAD), tl.histogram(bucket, E_PAD))


@triton_kernel
def _moe_chunk_offsets_kernel(hist_ptr, off_ptr, counts_ptr, row_start_ptr, P, E, E_PAD: tl.constexpr):
    # One program, P sequential steps over [E_PAD] vectors: P <= R / CHUNK stays small.
    e = tl.arange(0, E_PAD)
    running = tl.zeros((E_PAD,), dtype=tl.int32)
    for p in range(0, P):
        running += tl.load(hist_ptr + p * E_PAD + e)
    counts = tl.where(e < E, running, 0)
    row_start = tl.cumsum(counts, 0) - counts
    tl.store(counts_ptr + e, counts, mask=e < E)
    tl.store(row_start_ptr + e, row_start, mask=e < E)
    # off[p, e] = where chunk p's rows of expert e go, minus their position in the chunk's own sorted order,
    # so the scatter kernel computes dest = off[p, e] + (index in the sorted chunk). Recomputed, not re-read:
    # a load after a store in one program would need a barrier.
    running = tl.zeros((E_PAD,), dtype=tl.int32)
    for p in range(0, P):
        h = tl.load(hist_ptr + p * E_PAD + e)
        tl.store(off_ptr + p * E_PAD + e, row_start + running - (tl.cumsum(h, 0) - h))
        running += h


@triton_kernel
def _moe_chunk_scatter_kernel(ids_ptr, off_ptr, sorted_ids_ptr, R, E, CHUNK: tl.constexpr, E_PAD: tl.constexpr):
    p = tl.program_id(0)
    j = tl.arange(0, CHUNK)
    ids = tl.load(ids_ptr + p * CHUNK + j, mask=p * CHUNK + j < R, other=-1).to(tl.int32)
    bucket = tl.where((ids >= 0) & (ids < E), ids, E)
    keys = tl.sort(bucket * CHUNK + j)
    e_sorted = keys // CHUNK
    ok = e_sorted < E
    dest = tl.load(off_ptr + p * E_PAD + e_sorted, mask=ok, other=0) + j
    tl.store(sorted_ids_ptr + dest, p * CHUNK + keys % CHUNK, mask=ok)


def moe_align(topk_ids_TK: torch.Tensor, num_experts: int) -> MoeAlignment:
    """Group routed rows by expert (Triton). See the module docstring for the layout."""
    ids_R = topk_ids_TK.reshape(-1)
    if not ids_R.is_contiguous():
        ids_R = ids_R.contiguous()
    R, E, dev = ids_R.numel(), int(num_experts), ids_R.device
    e_pad = next_pow2(E + 1)
    sorted_ids = torch.empty(max(R, 1), dtype=torch.int32, device=dev)
    counts = torch.empty(E, dtype=torch.int32, device=dev)
    row_start = torch.empty(E, dtype=torch.int32, device=dev)
    if R <= SMALL_R:
        r_pad = max(16, next_pow2(R))
        _moe_align_small_kernel[(1,)](ids_R, sorted_ids, counts, row_start, R, E, R_PAD=r_pad, E_PAD=e_pad,
                                      num_warps=4 if r_pad <= 256 else 8)
        return MoeAlignment(sorted_ids, counts, row_start)
    P = cdiv(R, CHUNK)
    hist = torch.empty(P, e_pad, dtype=torch.int32, device=dev)
    off = torch.empty(P, e_pad, dtype=torch.int32, device=dev)
    _moe_chunk_hist_kernel[(P,)](ids_R, hist, R, E, CHUNK=CHUNK, E_PAD=e_pad, num_warps=8)
    _moe_chunk_offsets_kernel[(1,)](hist, off, counts, row_start, P, E, E_PAD=e_pad, num_warps=4)
    _moe_chunk_scatter_kernel[(P,)](ids_R, off, sorted_ids, R, E, CHUNK=CHUNK, E_PAD=e_pad, num_warps=8)
    return MoeAlignment(sorted_ids, counts, row_start)


def moe_align_ref(topk_ids_TK: torch.Tensor, num_experts: int) -> MoeAlignment:
    """Plain torch; the oracle for `moe_align` (same layout, same order)."""
    ids_R = topk_ids_TK.reshape(-1).long()
    E = int(num_experts)
    bucket = torch.where((ids_R >= 0) & (ids_R < E), ids_R, torch.full_like(ids_R, E))
    order = torch.argsort(bucket, stable=True)
    counts = torch.bincount(bucket, minlength=E + 1)[:E]
    row_start = torch.cumsum(counts, 0) - counts
    return MoeAlignment(order.to(torch.int32), counts.to(torch.int32), row_start.to(torch.int32))
