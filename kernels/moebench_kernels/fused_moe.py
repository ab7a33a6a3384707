"""Fused MoE experts: y[t] = Σ_k w[t,k] · W2[e] · act(W13[e] · x[t]),  e = ids[t,k].

Legend: T tokens, D model dim, F expert hidden dim, E experts, K experts per token, R = T·K routed rows
(row r = t·K + k), `w13_E2FD` stacks gate (rows 0..F-1) then up (rows F..2F-1), `w2_EDF` is the down projection.

Activations: "silu" -> silu(gate) · up (Mixtral, Qwen3, DeepSeek); "swiglu_oai" -> GPT-OSS's clamped variant:
gate = min(gate, 7), up = clamp(up, -7, 7), out = (up + 1) · gate · sigmoid(1.702 · gate). (GPT-OSS checkpoints
interleave gate/up columns; the model code de-interleaves into this stacked layout.) Optional biases b13_E2F and
b2_ED are added before the activation and before the routing weight. Ids of -1 (expert parallelism: "not on
this rank") contribute zero.

Triton path (`fused_moe`): moe_align groups rows by expert -> GEMM 1 (gate and up tiles of the same F columns,
activation in the epilogue, h_RF written in sorted order so GEMM 2 reads it contiguously) -> GEMM 2 (routing
weight in the epilogue, rows scattered back to r = t·K + k) -> combine over K in fp32. A GEMM whose config
sets USE_TMA loads both operands through tensor descriptors (TMA on sm90+; for GEMM 1, x is first gathered
into sorted order so that each tile's rows are contiguous); the tuner decides per shape and token bucket.
Torch paths: `fused_moe_ref` (argsort rows by expert, one matmul pair per expert that has rows; the engine's
CPU path; on CPU in fp32 it is one call into the C kernel of cpu_moe.py) and `fused_moe_grouped_mm`
(torch._grouped_mm over the same sorted rows).
"""

from __future__ import annotations

import sys
from typing import Any, Optional

import torch
import torch.nn.functional as F

from moebench_kernels import cpu_gemm, cpu_moe
from moebench_kernels._jit import cdiv, import_triton, next_pow2, triton_helper, triton_kernel
from moebench_kernels.configs import get_configs
from moebench_kernels.moe_align import moe_align

tl = None  # bound to triton.language at the first launch (see _jit.py)

SWIGLU_OAI_ALPHA = 1.702
SWIGLU_OAI_LIMIT = 7.0
ACTIVATIONS = ("silu", "swiglu_oai")


@triton_helper
def _block_of_expert(counts_ptr, row_start_ptr, E, num_m_blocks, num_n, E_PAD: tl.constexpr,
                     BLOCK_SIZE_M: tl.constexpr, GROUP_SIZE_M: tl.constexpr):
    """This program's (expert, first sorted row, rows left in the expert, N-block); expert >= E: no work."""
    # Grouped launch order: neighbouring programs share a weight tile (L2 reuse once an expert has several
    # M-blocks).
    pid = tl.program_id(0)
    per_group = GROUP_SIZE_M * num_n
    first_m = (pid // per_group) * GROUP_SIZE_M
    group_m = min(num_m_blocks - first_m, GROUP_SIZE_M)
    pid_m = first_m + (pid % per_group) % group_m
    pid_n = (pid % per_group) // group_m
    # Experts lie back to back in ceil(count / BLOCK_M) blocks each; the owner of block pid_m is the number
    # of experts that end at or before it.
    ex = tl.arange(0, E_PAD)
    cnt = tl.load(counts_ptr + ex, mask=ex < E, other=0)
    nblk = (cnt + BLOCK_SIZE_M - 1) // BLOCK_SIZE_M
    blk_end = tl.cumsum(nblk, 0)
    e = tl.sum((blk_end <= pid_m).to(tl.int32), axis=0)
    first_blk = tl.sum(tl.where(ex == e, blk_end - nblk, 0), axis=0)
    rows_left = tl.sum(tl.where(ex == e, cnt, 0), axis=0) - (pid_m - first_blk) * BLOCK_SIZE_M
    row0 = tl.load(row_start_ptr + tl.minimum(e, E - 1)) + (pid_m - first_blk) * BLOCK_SIZE_M
    return e, row0, rows_left, pid_n


@triton_kernel
def _moe_gate_up_kernel(
    x_ptr, w_ptr, b_ptr, h_ptr, sorted_ids_ptr, counts_ptr, row_start_ptr,
    R, D, F, E, num_m_blocks,
    stride_xt, stride_we, stride_wn, stride_be, stride_hr,
    TOP_K: tl.constexpr, E_PAD: tl.constexpr, ACTIVATION: tl.constexpr, HAS_BIAS: tl.constexpr,
    EVEN_K: tl.constexpr, PRECISION: tl.constexpr, USE_TMA: tl.constexpr,
    BLOCK_SIZE_M: tl.constexpr, BLOCK_SIZE_N: tl.constexpr, BLOCK_SIZE_K: tl.constexpr, GROUP_SIZE_M: tl.constexpr,
):
    """USE_TMA: x_ptr holds x already in sorted row order ([R, D], see _moe_gather_kernel), so a tile's rows
    are contiguous and both operands load through tensor descriptors (TMA on sm90+); otherwise x is [T, D]
    and its rows are gathered through sorted_ids."""
    e, row0, rows_left, pid_n = _block_of_expert(counts_ptr, row_start_ptr, E, num_m_blocks, tl.cdiv(F, BLOCK_SIZE_N),
                                                 E_PAD, BLOCK_SIZE_M, GROUP_SIZE_M)
    if e >= E:  # the grid is an upper bound on the number of M-blocks
        return
    offs_m = tl.arange(0, BLOCK_SIZE_M)
    m_ok = offs_m < rows_left
    offs_n = pid_n * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N)
    n_ok = offs_n < F
    offs_nw = offs_n % F  # wrap instead of masking the weight loads; wrapped columns are never stored
    acc_g = tl.zeros((BLOCK_SIZE_M, BLOCK_SIZE_N), dtype=tl.float32)
    acc_u = tl.zeros((BLOCK_SIZE_M, BLOCK_SIZE_N), dtype=tl.float32)
    if USE_TMA:
        # Out-of-bounds parts of a box read as zero (the K tail, rows past R). Rows past this expert's end
        # belong to the next expert and gate rows past F are up rows: read, never stored.
        a_desc = tl.make_tensor_descriptor(x_ptr, shape=[R, D], strides=[stride_xt, 1],
                                           block_shape=[BLOCK_SIZE_M, BLOCK_SIZE_K])
        w_desc = tl.make_tensor_descriptor(w_ptr, shape=[E * 2 * F, D], strides=[stride_wn, 1],
                                           block_shape=[BLOCK_SIZE_N, BLOCK_SIZE_K])
        wg_row = e * 2 * F + pid_n * BLOCK_SIZE_N
        for k0 in range(0, D, BLOCK_SIZE_K):
            a = a_desc.load([row0, k0])
            acc_g = tl.dot(a, w_desc.load([wg_row, k0]).T, acc_g, input_precision=PRECISION)
            acc_u = tl.dot(a, w_desc.load([wg_row + F, k0]).T, acc_u, input_precision=PRECISION)
    else:
        # Masked rows read token 0: valid memory, results never stored, so the A loads need no row mask.
        tok = (tl.load(sorted_ids_ptr + row0 + offs_m, mask=m_ok, other=0) // TOP_K).to(tl.int64)
        offs_k = tl.arange(0, BLOCK_SIZE_K)
        a_ptrs = x_ptr + tok[:, None] * stride_xt + offs_k[None, :]
        # int64: E·2F·D exceeds 2^31 elements for DeepSeek-V3-sized layers.
        wg_ptrs = w_ptr + e.to(tl.int64) * stride_we + offs_nw[None, :] * stride_wn + offs_k[:, None]
        wu_ptrs = wg_ptrs + F * stride_wn
        for k0 in range(0, D, BLOCK_SIZE_K):
            if EVEN_K:
                a = tl.load(a_ptrs)
                wg = tl.load(wg_ptrs)
                wu = tl.load(wu_ptrs)
            else:
                k_ok = offs_k < D - k0
                a = tl.load(a_ptrs, mask=k_ok[None, :], other=0.0)
                wg = tl.load(wg_ptrs, mask=k_ok[:, None], other=0.0)
                wu = tl.load(wu_ptrs, mask=k_ok[:, None], other=0.0)
            acc_g = tl.dot(a, wg, acc_g, input_precision=PRECISION)
            acc_u = tl.dot(a, wu, acc_u, input_precision=PRECISION)
            a_ptrs += BLOCK_SIZE_K
            wg_ptrs += BLOCK_SIZE_K
            wu_ptrs += BLOCK_SIZE_K

    if HAS_BIAS:
        b_base = b_ptr + e.to(tl.int64) * stride_be
        acc_g += tl.load(b_base + offs_nw).to(tl.float32)[None, :]
        acc_u += tl.load(b_base + F + offs_nw).to(tl.float32)[None, :]
    if ACTIVATION == "swiglu_oai":
        g = tl.minimum(acc_g, 7.0)
        u = tl.minimum(tl.maximum(acc_u, -7.0), 7.0)
        h = (u + 1.0) * (g * tl.sigmoid(1.702 * g))
    else:
        h = acc_g * tl.sigmoid(acc_g) * acc_u
    # int64 row offsets here and below: T·K·D passes 2^31 elements from ~37k tokens at DeepSeek-V3's widths
    h_ptrs = h_ptr + (row0 + offs_m).to(tl.int64)[:, None] * stride_hr + offs_n[None, :]
    tl.store(h_ptrs, h.to(h_ptr.dtype.element_ty), mask=m_ok[:, None] & n_ok[None, :])


@triton_kernel
def _moe_down_kernel(
    h_ptr, w_ptr, b_ptr, topk_w_ptr, out_ptr, sorted_ids_ptr, counts_ptr, row_start_ptr,
    R, D, F, E, num_m_blocks,
    stride_hr, stride_we, stride_wn, stride_be, stride_or,
    E_PAD: tl.constexpr, HAS_BIAS: tl.constexpr, EVEN_K: tl.constexpr, PRECISION: tl.constexpr,
    USE_TMA: tl.constexpr,
    BLOCK_SIZE_M: tl.constexpr, BLOCK_SIZE_N: tl.constexpr, BLOCK_SIZE_K: tl.constexpr, GROUP_SIZE_M: tl.constexpr,
):
    e, row0, rows_left, pid_n = _block_of_expert(counts_ptr, row_start_ptr, E, num_m_blocks, tl.cdiv(D, BLOCK_SIZE_N),
                                                 E_PAD, BLOCK_SIZE_M, GROUP_SIZE_M)
    if e >= E:
        return
    offs_m = tl.arange(0, BLOCK_SIZE_M)
    m_ok = offs_m < rows_left
    rows = tl.where(m_ok, row0 + offs_m, row0).to(tl.int64)  # h_RF is in sorted order: this expert's rows
    dest = tl.load(sorted_ids_ptr + rows, mask=m_ok, other=0).to(tl.int64)

    offs_n = pid_n * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N)
    n_ok = offs_n < D
    offs_nw = offs_n % D
    acc = tl.zeros((BLOCK_SIZE_M, BLOCK_SIZE_N), dtype=tl.float32)
    if USE_TMA:
        # As in the gate-up kernel: zero-filled tails; rows past the expert or past D are read, never stored.
        a_desc = tl.make_tensor_descriptor(h_ptr, shape=[R, F], strides=[stride_hr, 1],
                                           block_shape=[BLOCK_SIZE_M, BLOCK_SIZE_K])
        w_desc = tl.make_tensor_descriptor(w_ptr, shape=[E * D, F], strides=[stride_wn, 1],
                                           block_shape=[BLOCK_SIZE_N, BLOCK_SIZE_K])
        w_row = e * D + pid_n * BLOCK_SIZE_N
        for k0 in range(0, F, BLOCK_SIZE_K):
            acc = tl.dot(a_desc.load([row0, k0]), w_desc.load([w_row, k0]).T, acc, input_precision=PRECISION)
    else:
        offs_k = tl.arange(0, BLOCK_SIZE_K)
        a_ptrs = h_ptr + rows[:, None] * stride_hr + offs_k[None, :]
        w_ptrs = w_ptr + e.to(tl.int64) * stride_we + offs_nw[None, :] * stride_wn + offs_k[:, None]
        for k0 in range(0, F, BLOCK_SIZE_K):
            if EVEN_K:
                a = tl.load(a_ptrs)
                w = tl.load(w_ptrs)
            else:
                k_ok = offs_k < F - k0
                a = tl.load(a_ptrs, mask=k_ok[None, :], other=0.0)
                w = tl.load(w_ptrs, mask=k_ok[:, None], other=0.0)
            acc = tl.dot(a, w, acc, input_precision=PRECISION)
            a_ptrs += BLOCK_SIZE_K
            w_ptrs += BLOCK_SIZE_K

    if HAS_BIAS:
        acc += tl.load(b_ptr + e.to(tl.int64) * stride_be + offs_nw).to(tl.float32)[None, :]
    acc = acc * tl.load(topk_w_ptr + dest, mask=m_ok, other=0.0).to(tl.float32)[:, None]
    out_ptrs = out_ptr + dest[:, None] * stride_or + offs_n[None, :]
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=m_ok[:, None] & n_ok[None, :])


@triton_kernel
def _moe_gather_kernel(x_ptr, sorted_ids_ptr, counts_ptr, row_start_ptr, xs_ptr, E, D, stride_xt, stride_xs,
                       TOP_K: tl.constexpr, BLOCK_D: tl.constexpr):
    """xs[r] = x[sorted_ids[r] // K]: x in the GEMMs' row order. Rows past the routed ones (ids -1) are zero;
    their sorted_ids entries were never written."""
    r = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    ok = offs < D
    n_live = tl.load(row_start_ptr + E - 1) + tl.load(counts_ptr + E - 1)
    # Entry r of sorted_ids is read unconditionally (it exists: the buffer has R entries) and discarded when
    # dead; the mask is a vector because the interpreter rejects scalar masks.
    tok = tl.where(r < n_live, tl.load(sorted_ids_ptr + r) // TOP_K, 0)
    live = (tl.zeros((BLOCK_D,), dtype=tl.int32) + r) < n_live
    v = tl.load(x_ptr + tok.to(tl.int64) * stride_xt + offs, mask=ok & live, other=0.0)
    tl.store(xs_ptr + r.to(tl.int64) * stride_xs + offs, v, mask=ok)


@triton_kernel
def _moe_combine_kernel(out_ptr, ids_ptr, y_ptr, D, E, stride_or, stride_yt,
                        TOP_K: tl.constexpr, BLOCK_D: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    ok = offs < D
    acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for k in tl.static_range(TOP_K):
        # Rows routed to an id outside [0, E) (-1: expert parallelism's "not on this rank") were never
        # written by the down GEMM (moe_align skips them): skip them, do not read garbage.
        e = tl.zeros((BLOCK_D,), dtype=tl.int32) + tl.load(ids_ptr + t * TOP_K + k).to(tl.int32)
        live = (e >= 0) & (e < E)
        acc += tl.load(out_ptr + (t * TOP_K + k) * stride_or + offs, mask=ok & live, other=0.0).to(tl.float32)
    tl.store(y_ptr + t * stride_yt + offs, acc.to(y_ptr.dtype.element_ty), mask=ok)


def _check_args(x_TD, w13_E2FD, w2_EDF, topk_weights_TK, topk_ids_TK, activation, b13_E2F, b2_ED) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    T, D = x_TD.shape
    E, F2, D1 = w13_E2FD.shape
    if D1 != D or F2 % 2 or w2_EDF.shape != (E, D, F2 // 2):
        raise ValueError(f"shape mismatch: x {tuple(x_TD.shape)}, w13 {tuple(w13_E2FD.shape)}, "
                         f"w2 {tuple(w2_EDF.shape)}; expected w13 [E, 2F, D] and w2 [E, D, F]")
    if topk_ids_TK.shape != topk_weights_TK.shape or topk_ids_TK.shape[0] != T:
        raise ValueError(f"topk ids {tuple(topk_ids_TK.shape)} and weights {tuple(topk_weights_TK.shape)} "
                         f"must both be [T={T}, K]")
    if b13_E2F is not None and b13_E2F.shape != (E, F2):
        raise ValueError(f"b13 must be [E, 2F] = {(E, F2)}, got {tuple(b13_E2F.shape)}")
    if b2_ED is not None and b2_ED.shape != (E, D):
        raise ValueError(f"b2 must be [E, D] = {(E, D)}, got {tuple(b2_ED.shape)}")


def _device_name(device: torch.device) -> Optional[str]:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else None


def _tma_ok(cfg: dict[str, int], a: torch.Tensor, w: torch.Tensor) -> bool:
    """Whether a GEMM runs its tensor-descriptor path: asked for by its config, and both operands meet TMA's
    rules (16-byte aligned base and row stride). A config that asks where they are not met runs the pointer
    path, so one tuned file serves every layer of a shape."""
    if not cfg.get("USE_TMA"):
        return False
    return all(t.data_ptr() % 16 == 0 and (t.stride(-2) * t.element_size()) % 16 == 0 for t in (a, w))


def _set_tma_allocator() -> None:
    """Device-side tensor descriptors need global scratch; Triton asks its allocator for it at launch. Set at
    every TMA launch: Triton keeps the allocator per thread (a ContextVar), so a once-per-process flag would
    leave other threads with none."""
    import_triton().set_allocator(_tma_scratch)


def _tma_scratch(size: int, alignment: int, stream: Any) -> torch.Tensor:
    return torch.empty(size, dtype=torch.int8, device="cuda")


def fused_moe(x_TD: torch.Tensor, w13_E2FD: torch.Tensor, w2_EDF: torch.Tensor, topk_weights_TK: torch.Tensor,
              topk_ids_TK: torch.Tensor, activation: str = "silu", b13_E2F: Optional[torch.Tensor] = None,
              b2_ED: Optional[torch.Tensor] = None, *, configs: Optional[dict[str, dict[str, int]]] = None,
              ) -> torch.Tensor:
    """Triton fused MoE; returns y_TD in x's dtype. `configs` ({"gate_up": ..., "down": ...}) overrides the
    tuned/default launch configs (the tuner uses it)."""
    _check_args(x_TD, w13_E2FD, w2_EDF, topk_weights_TK, topk_ids_TK, activation, b13_E2F, b2_ED)
    T, D = x_TD.shape
    E, F2, _ = w13_E2FD.shape
    Fh, K = F2 // 2, topk_ids_TK.shape[1]
    R = T * K
    y_TD = torch.empty_like(x_TD)
    if R == 0:
        return y_TD.zero_()
    x_TD = x_TD.contiguous()
    w13_E2FD, w2_EDF = w13_E2FD.contiguous(), w2_EDF.contiguous()
    ids_TK = topk_ids_TK.contiguous()
    weights_R = topk_weights_TK.reshape(-1).contiguous()
    cfg = configs or get_configs(T, K, E, Fh, D, x_TD.dtype, _device_name(x_TD.device))
    precision = "ieee" if x_TD.dtype == torch.float32 else "tf32"
    e_pad = next_pow2(E)

    align = moe_align(ids_TK, E)
    h_RF = torch.empty(R, Fh, dtype=x_TD.dtype, device=x_TD.device)
    out_RD = torch.empty(R, D, dtype=x_TD.dtype, device=x_TD.device)
    b13 = b13_E2F.contiguous() if b13_E2F is not None else w13_E2FD  # dummy pointer when HAS_BIAS is off
    b2 = b2_ED.contiguous() if b2_ED is not None else w2_EDF

    c1, c2 = cfg["gate_up"], cfg["down"]
    tma1, tma2 = _tma_ok(c1, x_TD, w13_E2FD), _tma_ok(c2, h_RF, w2_EDF)
    if (tma1 or tma2) and x_TD.device.type == "cuda":
        _set_tma_allocator()
    x_in = x_TD
    if tma1:  # GEMM 1 reads x in sorted row order, contiguous per expert
        x_in = torch.empty(R, D, dtype=x_TD.dtype, device=x_TD.device)
        block_d = min(1024, next_pow2(D))
        _moe_gather_kernel[(R, cdiv(D, block_d))](x_TD, align.sorted_ids_R, align.counts_E, align.row_start_E,
                                                  x_in, E, D, x_TD.stride(0), x_in.stride(0),
                                                  TOP_K=K, BLOCK_D=block_d, num_warps=4)
    bm1 = c1["BLOCK_SIZE_M"]
    # Upper bound on M-blocks: Σ_e ceil(c_e / BM) <= ceil(R / BM) + (number of non-empty experts).
    m1 = cdiv(R, bm1) + min(E, R)
    _moe_gate_up_kernel[(m1 * cdiv(Fh, c1["BLOCK_SIZE_N"]),)](
        x_in, w13_E2FD, b13, h_RF, align.sorted_ids_R, align.counts_E, align.row_start_E,
        R, D, Fh, E, m1,
        x_in.stride(0), w13_E2FD.stride(0), w13_E2FD.stride(1), b13.stride(0), h_RF.stride(0),
        TOP_K=K, E_PAD=e_pad, ACTIVATION=activation, HAS_BIAS=b13_E2F is not None,
        EVEN_K=D % c1["BLOCK_SIZE_K"] == 0, PRECISION=precision, USE_TMA=tma1,
        BLOCK_SIZE_M=bm1, BLOCK_SIZE_N=c1["BLOCK_SIZE_N"], BLOCK_SIZE_K=c1["BLOCK_SIZE_K"],
        GROUP_SIZE_M=c1["GROUP_SIZE_M"], num_warps=c1["num_warps"], num_stages=c1["num_stages"],
    )
    bm2 = c2["BLOCK_SIZE_M"]
    m2 = cdiv(R, bm2) + min(E, R)
    _moe_down_kernel[(m2 * cdiv(D, c2["BLOCK_SIZE_N"]),)](
        h_RF, w2_EDF, b2, weights_R, out_RD, align.sorted_ids_R, align.counts_E, align.row_start_E,
        R, D, Fh, E, m2,
        h_RF.stride(0), w2_EDF.stride(0), w2_EDF.stride(1), b2.stride(0), out_RD.stride(0),
        E_PAD=e_pad, HAS_BIAS=b2_ED is not None, EVEN_K=Fh % c2["BLOCK_SIZE_K"] == 0, PRECISION=precision,
        USE_TMA=tma2,
        BLOCK_SIZE_M=bm2, BLOCK_SIZE_N=c2["BLOCK_SIZE_N"], BLOCK_SIZE_K=c2["BLOCK_SIZE_K"],
        GROUP_SIZE_M=c2["GROUP_SIZE_M"], num_warps=c2["num_warps"], num_stages=c2["num_stages"],
    )
    block_d = min(1024, next_pow2(D))
    _moe_combine_kernel[(T, cdiv(D, block_d))](out_RD, ids_TK, y_TD, D, E, out_RD.stride(0), y_TD.stride(0),
                                               TOP_K=K, BLOCK_D=block_d, num_warps=4)
    return y_TD


# ---------------------------------------------------------------------------------------------- torch paths


def apply_activation_(h_R2F: torch.Tensor, activation: str) -> torch.Tensor:
    """act(gate, up) of [rows, 2F] -> [rows, F]; reuses the gate half's storage."""
    f = h_R2F.shape[-1] // 2
    gate, up = h_R2F[..., :f], h_R2F[..., f:]
    if activation == "silu":
        return F.silu(gate, inplace=True).mul_(up)
    gate = gate.clamp_(max=SWIGLU_OAI_LIMIT)
    up = up.clamp(-SWIGLU_OAI_LIMIT, SWIGLU_OAI_LIMIT).add_(1.0)
    return torch.sigmoid(gate * SWIGLU_OAI_ALPHA).mul_(gate).mul_(up)


def _sort_rows(topk_ids_TK: torch.Tensor, E: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(order_R: routed rows grouped by expert, skipped rows last; counts_E)."""
    ids_R = topk_ids_TK.reshape(-1)
    bucket = torch.where((ids_R >= 0) & (ids_R < E), ids_R, E).long()
    # scatter_add, not bincount: bincount syncs with the host on CUDA (and would break graph capture)
    counts = torch.zeros(E + 1, dtype=torch.long, device=ids_R.device).scatter_add_(0, bucket, torch.ones_like(bucket))
    return torch.argsort(bucket, stable=True), counts[:E]


CPU_SMALL_M = 24  # on CPU in fp32, products with at most this many rows go to cpu_gemm (see there why)


def _onednn_linear_ok() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _linear(a: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor]) -> torch.Tensor:
    """a · w^T (+ b). On CPU in fp32 this picks the GEMM that streams the weights once: the small-M kernel
    for a few rows, oneDNN above that (MKL's sgemm runs at half oneDNN's speed at M = 32-128 on the AMD
    host measured; see benchmarks/cpu_small_m_gemm.py)."""
    if a.device.type == "cpu" and a.dtype == torch.float32:
        if a.shape[0] <= CPU_SMALL_M and cpu_gemm.supports(a, w) and cpu_gemm.available():
            out = cpu_gemm.linear_small_m(a, w)
            return out if b is None else out.add_(b)
        if _onednn_linear_ok():
            return torch.ops.mkldnn._linear_pointwise(a.contiguous(), w, b, "none", [], "")
    return F.linear(a, w, b)


def fused_moe_ref(x_TD: torch.Tensor, w13_E2FD: torch.Tensor, w2_EDF: torch.Tensor, topk_weights_TK: torch.Tensor,
                  topk_ids_TK: torch.Tensor, activation: str = "silu", b13_E2F: Optional[torch.Tensor] = None,
                  b2_ED: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Torch, grouped by expert: the oracle for `fused_moe` and the engine's CPU path.

    On CPU in fp32 (contiguous weights) the whole layer is one call into the C kernel `cpu_moe.fused_moe_cpu`
    (the same function; tests/kernels/test_cpu_moe.py checks it against this torch code). Everywhere else,
    or with MOEBENCH_CPU_GEMM=0: rows are argsorted by expert once; each expert with rows runs one
    [n, D] x [D, 2F] and one [n, F] x [F, D] matmul on its contiguous slice; activation, routing weights and
    the scatter back are one op each over all rows. One host sync (the per-expert counts). Matmuls run in x's
    dtype; the sum over K accumulates in fp32. On CPU in fp32 the matmuls go through `_linear`, which picks a
    GEMM that reads each expert's weights once (cpu_gemm for a few rows); elsewhere they are F.linear.
    """
    _check_args(x_TD, w13_E2FD, w2_EDF, topk_weights_TK, topk_ids_TK, activation, b13_E2F, b2_ED)
    if (cpu_moe.supports(x_TD, w13_E2FD, w2_EDF, topk_weights_TK, activation, b13_E2F, b2_ED)
            and cpu_moe.available()):
        return cpu_moe.fused_moe_cpu(x_TD, w13_E2FD, w2_EDF, topk_weights_TK, topk_ids_TK, activation, b13_E2F,
                                     b2_ED)
    T, D = x_TD.shape
    E, K = w13_E2FD.shape[0], topk_ids_TK.shape[1]
    order_R, counts_E = _sort_rows(topk_ids_TK, E)
    counts = counts_E.tolist()  # host sync: the loop below needs the group sizes
    n_live = sum(counts)
    rows = order_R[:n_live]
    tok = torch.div(rows, K, rounding_mode="floor")
    xs = x_TD.index_select(0, tok)
    outs = []
    start = 0
    for e, n in enumerate(counts):
        if n == 0:
            continue
        sl = slice(start, start + n)
        start += n
        h = _linear(xs[sl], w13_E2FD[e], None if b13_E2F is None else b13_E2F[e])
        outs.append(_linear(apply_activation_(h, activation), w2_EDF[e], None if b2_ED is None else b2_ED[e]))
    acc_dtype = torch.float32 if x_TD.dtype in (torch.float16, torch.bfloat16) else x_TD.dtype
    y = torch.zeros(T, D, dtype=acc_dtype, device=x_TD.device)
    if outs:
        o = torch.cat(outs) if len(outs) > 1 else outs[0]
        w = topk_weights_TK.reshape(-1).index_select(0, rows).to(acc_dtype)
        y.index_add_(0, tok, o.to(acc_dtype).mul_(w[:, None]))
    return y.to(x_TD.dtype)


def grouped_mm_support(x_TD: torch.Tensor, w13_E2FD: torch.Tensor) -> tuple[bool, str]:
    """Whether `torch._grouped_mm` can run these tensors here, and if not, why."""
    if not hasattr(torch, "_grouped_mm"):
        return False, f"torch {torch.__version__} has no torch._grouped_mm"
    if x_TD.device.type == "cuda":
        if torch.cuda.get_device_capability(x_TD.device) < (8, 0):
            return False, "torch._grouped_mm needs an sm80+ GPU"
        if x_TD.dtype != torch.bfloat16:
            return False, f"torch._grouped_mm on CUDA takes bf16 only, got {x_TD.dtype}"
        D, F2 = w13_E2FD.shape[2], w13_E2FD.shape[1]
        if D % 8 or F2 % 16:
            return False, "torch._grouped_mm on CUDA needs 16-byte aligned rows (D % 8 == 0, F % 8 == 0)"
    elif x_TD.device.type != "cpu":
        return False, f"torch._grouped_mm is not checked on {x_TD.device.type}"
    return True, ""


_warned: set[str] = set()


def fused_moe_grouped_mm(x_TD: torch.Tensor, w13_E2FD: torch.Tensor, w2_EDF: torch.Tensor,
                         topk_weights_TK: torch.Tensor, topk_ids_TK: torch.Tensor, activation: str = "silu",
                         b13_E2F: Optional[torch.Tensor] = None, b2_ED: Optional[torch.Tensor] = None) -> torch.Tensor:
    """torch._grouped_mm over the expert-sorted rows (no host sync). Where grouped_mm cannot run these tensors
    (see `grouped_mm_support`) it falls back to `fused_moe_ref` and says so once on stderr."""
    _check_args(x_TD, w13_E2FD, w2_EDF, topk_weights_TK, topk_ids_TK, activation, b13_E2F, b2_ED)
    ok, why = grouped_mm_support(x_TD, w13_E2FD)
    if not ok:
        if why not in _warned:
            _warned.add(why)
            print(f"moebench_kernels: fused_moe_grouped_mm falls back to fused_moe_ref: {why}", file=sys.stderr)
        return fused_moe_ref(x_TD, w13_E2FD, w2_EDF, topk_weights_TK, topk_ids_TK, activation, b13_E2F, b2_ED)
    T, D = x_TD.shape
    E, K = w13_E2FD.shape[0], topk_ids_TK.shape[1]
    order_R, counts_E = _sort_rows(topk_ids_TK, E)
    offs_E = torch.cumsum(counts_E, 0).to(torch.int32)  # rows past offs[-1] (skipped ids) are not computed
    tok = torch.div(order_R, K, rounding_mode="floor")
    xs = x_TD.index_select(0, tok)
    h = torch._grouped_mm(xs, w13_E2FD.transpose(1, 2), offs=offs_E)
    ids_sorted = topk_ids_TK.reshape(-1).index_select(0, order_R).clamp(0, E - 1)
    if b13_E2F is not None:
        h = h + b13_E2F.index_select(0, ids_sorted)
    o = torch._grouped_mm(apply_activation_(h, activation).contiguous(), w2_EDF.transpose(1, 2), offs=offs_E)
    if b2_ED is not None:
        o = o + b2_ED.index_select(0, ids_sorted)
    live = (topk_ids_TK.reshape(-1).index_select(0, order_R) >= 0) & (
        topk_ids_TK.reshape(-1).index_select(0, order_R) < E)
    # Skipped rows hold uninitialised output: zero them with where(), not a multiply (NaN · 0 = NaN).
    w = topk_weights_TK.reshape(-1).index_select(0, order_R).float()
    contrib = torch.where(live[:, None], o.float() * w[:, None], 0.0)
    y = torch.zeros(T, D, dtype=torch.float32, device=x_TD.device).index_add_(0, tok, contrib)
    return y.to(x_TD.dtype)


def fused_moe_naive_ref(x_TD: torch.Tensor, w13_E2FD: torch.Tensor, w2_EDF: torch.Tensor,
                        topk_weights_TK: torch.Tensor, topk_ids_TK: torch.Tensor, activation: str = "silu",
                        b13_E2F: Optional[torch.Tensor] = None, b2_ED: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The formula token by token (a python loop over T·K): only for tests on tiny shapes."""
    T, D = x_TD.shape
    Fh = w2_EDF.shape[2]
    y = torch.zeros(T, D, dtype=x_TD.dtype, device=x_TD.device)
    for t in range(T):
        for k in range(topk_ids_TK.shape[1]):
            e = int(topk_ids_TK[t, k])
            if e < 0:
                continue
            h = w13_E2FD[e] @ x_TD[t]
            if b13_E2F is not None:
                h = h + b13_E2F[e]
            g, u = h[:Fh], h[Fh:]
            if activation == "silu":
                a = g * torch.sigmoid(g) * u
            else:
                g = g.clamp(max=SWIGLU_OAI_LIMIT)
                a = (u.clamp(-SWIGLU_OAI_LIMIT, SWIGLU_OAI_LIMIT) + 1) * g * torch.sigmoid(SWIGLU_OAI_ALPHA * g)
            o = w2_EDF[e] @ a
            if b2_ED is not None:
                o = o + b2_ED[e]
            y[t] += topk_weights_TK[t, k] * o
    return y

