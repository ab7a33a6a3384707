"""MoE routers: logits_TE -> (weights_TK fp32, ids_TK int64), as the reference models compute them.

Legend: T tokens, E experts, K experts per token, G expert groups (DeepSeek's n_group), P experts per group.

  topk_softmax        Mixtral, Qwen3-MoE: softmax over all E (fp32), top-k, renormalise over the k when asked
                      (Mixtral always; Qwen3 when norm_topk_prob).
  topk_then_softmax   GPT-OSS: top-k on the logits, softmax over the k selected.
  grouped_topk_sigmoid DeepSeek-V3 / Kimi-K2 (transformers' DeepseekV3TopkRouter): scores = sigmoid(logits);
                      selection on scores + e_score_correction_bias: keep the topk_group groups whose two best
                      biased scores sum highest, then the top-k experts inside them; weights are the *unbiased*
                      scores, renormalised (+1e-20) when asked, then × routed_scaling_factor.

Ties: the kernels take the lowest index among equal values; torch.topk's choice among ties is unspecified, so
tests compare tied selections as sets. The order of the k columns carries no meaning.
"""

from __future__ import annotations

import torch

from moebench_kernels._jit import cdiv, next_pow2, triton_kernel

tl = None  # bound to triton.language at the first launch (see _jit.py)


@triton_kernel
def _topk_softmax_kernel(logits_ptr, w_ptr, ids_ptr, T, E, stride_t,
                         TOP_K: tl.constexpr, K_PAD: tl.constexpr, E_PAD: tl.constexpr, BLOCK_T: tl.constexpr,
                         SOFTMAX_FIRST: tl.constexpr, RENORMALIZE: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = tl.arange(0, E_PAD)
    # Rows past T re-read row T-1 (never stored): an all -inf row would turn the softmax into NaN.
    src = tl.minimum(rows, T - 1)
    ok = (src[:, None] >= 0) & (cols[None, :] < E)
    s = tl.load(logits_ptr + src[:, None] * stride_t + cols[None, :], mask=ok, other=float("-inf")).to(tl.float32)
    if SOFTMAX_FIRST:
        p = tl.exp(s - tl.max(s, axis=1)[:, None])
        s = p / tl.sum(p, axis=1)[:, None]
    kcol = tl.arange(0, K_PAD)
    vals = tl.zeros((BLOCK_T, K_PAD), dtype=tl.float32)
    ids = tl.zeros((BLOCK_T, K_PAD), dtype=tl.int32)
    for k in tl.static_range(TOP_K):
        best = tl.argmax(s, axis=1)
        vals = tl.where(kcol[None, :] == k, tl.max(s, axis=1)[:, None], vals)
        ids = tl.where(kcol[None, :] == k, best[:, None], ids)
        s = tl.where(cols[None, :] == best[:, None], float("-inf"), s)
    kok = kcol[None, :] < TOP_K
    if SOFTMAX_FIRST:
        if RENORMALIZE:
            vals = vals / tl.sum(tl.where(kok, vals, 0.0), axis=1)[:, None]
    else:
        # column 0 holds the largest logit
        p = tl.where(kok, tl.exp(vals - tl.max(tl.where(kok, vals, float("-inf")), axis=1)[:, None]), 0.0)
        vals = p / tl.sum(p, axis=1)[:, None]
    out = rows[:, None] * TOP_K + kcol[None, :]
    m = (rows[:, None] < T) & kok
    tl.store(w_ptr + out, vals, mask=m)
    tl.store(ids_ptr + out, ids.to(ids_ptr.dtype.element_ty), mask=m)


@triton_kernel
def _grouped_topk_sigmoid_kernel(logits_ptr, bias_ptr, w_ptr, ids_ptr, E, stride_t, scaling,
                                 TOP_K: tl.constexpr, K_PAD: tl.constexpr, N_GROUP: tl.constexpr,
                                 TOPK_GROUP: tl.constexpr, P: tl.constexpr, G_PAD: tl.constexpr,
                                 P_PAD: tl.constexpr, RENORMALIZE: tl.constexpr):
    t = tl.program_id(0)
    g = tl.arange(0, G_PAD)
    j = tl.arange(0, P_PAD)
    ok = (g[:, None] < N_GROUP) & (j[None, :] < P)
    col = g[:, None] * P + j[None, :]  # expert id
    logit = tl.load(logits_ptr + t * stride_t + col, mask=ok, other=0.0).to(tl.float32)
    score = tl.sigmoid(logit)
    choice = tl.where(ok, score + tl.load(bias_ptr + col, mask=ok, other=0.0).to(tl.float32), float("-inf"))
    # group score = sum of the group's two best biased scores (the first maximum removed once, like topk(2))
    best = tl.argmax(choice, axis=1)
    second = tl.max(tl.where(j[None, :] == best[:, None], float("-inf"), choice), axis=1)
    gscore = tl.where(g < N_GROUP, tl.max(choice, axis=1) + second, float("-inf"))
    keep = g < 0
    for _ in tl.static_range(TOPK_GROUP):
        gb = tl.argmax(gscore, axis=0)
        keep = keep | (g == gb)
        gscore = tl.where(g == gb, float("-inf"), gscore)
    choice = tl.where(keep[:, None], choice, float("-inf"))
    flat_choice = tl.reshape(choice, (G_PAD * P_PAD,))
    flat_score = tl.reshape(score, (G_PAD * P_PAD,))
    flat = tl.arange(0, G_PAD * P_PAD)
    kcol = tl.arange(0, K_PAD)
    vals = tl.zeros((K_PAD,), dtype=tl.float32)
    ids = tl.zeros((K_PAD,), dtype=tl.int32)
    for k in tl.static_range(TOP_K):
        b = tl.argmax(flat_choice, axis=0)
        vals = tl.where(kcol == k, tl.sum(tl.where(flat == b, flat_score, 0.0), axis=0), vals)
        ids = tl.where(kcol == k, (b // P_PAD) * P + b % P_PAD, ids)
        flat_choice = tl.where(flat == b, float("-inf"), flat_choice)
    kok = kcol < TOP_K
    if RENORMALIZE:
        vals = vals / (tl.sum(tl.where(kok, vals, 0.0), axis=0) + 1e-20)
    vals = vals * scaling
    tl.store(w_ptr + t * TOP_K + kcol, vals, mask=kok)
    tl.store(ids_ptr + t * TOP_K + kcol, ids.to(ids_ptr.dtype.element_ty), mask=kok)


def _launch_topk(logits_TE: torch.Tensor, k: int, softmax_first: bool, renormalize: bool):
    T, E = logits_TE.shape
    if not 1 <= k <= E:
        raise ValueError(f"top-k {k} must be in 1..E={E}")
    logits_TE = logits_TE if logits_TE.stride(1) == 1 else logits_TE.contiguous()
    w_TK = torch.empty(T, k, dtype=torch.float32, device=logits_TE.device)
    ids_TK = torch.empty(T, k, dtype=torch.int64, device=logits_TE.device)
    if T == 0:
        return w_TK, ids_TK
    e_pad = next_pow2(E)
    block_t = max(1, min(16, 4096 // e_pad))
    _topk_softmax_kernel[(cdiv(T, block_t),)](
        logits_TE, w_TK, ids_TK, T, E, logits_TE.stride(0),
        TOP_K=k, K_PAD=next_pow2(k), E_PAD=e_pad, BLOCK_T=block_t,
        SOFTMAX_FIRST=softmax_first, RENORMALIZE=renormalize, num_warps=4)
    return w_TK, ids_TK


def topk_softmax(logits_TE: torch.Tensor, k: int, renormalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax over E (fp32), top-k, optional renormalisation over the k (Triton)."""
    return _launch_topk(logits_TE, k, True, renormalize)


def topk_softmax_ref(logits_TE: torch.Tensor, k: int, renormalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain torch; the oracle for `topk_softmax` and the `kernels: torch` path (transformers' Mixtral/Qwen3)."""
    w_TK, ids_TK = torch.softmax(logits_TE.float(), dim=-1).topk(k, dim=-1)
    if renormalize:
        w_TK = w_TK / w_TK.sum(dim=-1, keepdim=True)
    return w_TK, ids_TK


def topk_then_softmax(logits_TE: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k on the logits, softmax over the k selected (GPT-OSS), fp32 weights (Triton)."""
    return _launch_topk(logits_TE, k, False, False)


def topk_then_softmax_ref(logits_TE: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain torch; transformers' GptOssTopKRouter (which returns the softmax in the logits' dtype)."""
    v_TK, ids_TK = logits_TE.topk(k, dim=-1)
    return torch.softmax(v_TK.float(), dim=-1), ids_TK


def _check_groups(E: int, k: int, n_group: int, topk_group: int) -> int:
    if n_group < 1 or E % n_group:
        raise ValueError(f"n_group {n_group} must divide the number of experts {E}")
    if not 1 <= topk_group <= n_group:
        raise ValueError(f"topk_group {topk_group} must be in 1..n_group={n_group}")
    per = E // n_group
    if per < 2:
        raise ValueError(f"each group needs at least 2 experts (group score = sum of the best two), got {per}")
    if not 1 <= k <= topk_group * per:
        raise ValueError(f"top-k {k} must be in 1..{topk_group * per} (experts in the kept groups)")
    return per


def grouped_topk_sigmoid(logits_TE: torch.Tensor, e_score_correction_bias_E: torch.Tensor, k: int, *,
                         n_group: int = 1, topk_group: int = 1, renormalize: bool = True,
                         routed_scaling_factor: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek-V3 routing (Triton); see the module docstring."""
    T, E = logits_TE.shape
    per = _check_groups(E, k, n_group, topk_group)
    logits_TE = logits_TE if logits_TE.stride(1) == 1 else logits_TE.contiguous()
    bias = e_score_correction_bias_E.contiguous()
    w_TK = torch.empty(T, k, dtype=torch.float32, device=logits_TE.device)
    ids_TK = torch.empty(T, k, dtype=torch.int64, device=logits_TE.device)
    if T == 0:
        return w_TK, ids_TK
    _grouped_topk_sigmoid_kernel[(T,)](
        logits_TE, bias, w_TK, ids_TK, E, logits_TE.stride(0), float(routed_scaling_factor),
        TOP_K=k, K_PAD=next_pow2(k), N_GROUP=n_group, TOPK_GROUP=topk_group, P=per,
        G_PAD=next_pow2(n_group), P_PAD=next_pow2(per), RENORMALIZE=renormalize, num_warps=4)
    return w_TK, ids_TK


def grouped_topk_sigmoid_ref(logits_TE: torch.Tensor, e_score_correction_bias_E: torch.Tensor, k: int, *,
                             n_group: int = 1, topk_group: int = 1, renormalize: bool = True,
                             routed_scaling_factor: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain torch, step for step as transformers' DeepseekV3TopkRouter.forward (fp32)."""
    T, E = logits_TE.shape
    per = _check_groups(E, k, n_group, topk_group)
    scores = logits_TE.float().sigmoid()
    choice = scores + e_score_correction_bias_E.float()
    group_scores = choice.view(T, n_group, per).topk(2, dim=-1)[0].sum(dim=-1)
    group_idx = group_scores.topk(topk_group, dim=-1, sorted=False)[1]
    group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
    score_mask = group_mask.unsqueeze(-1).expand(T, n_group, per).reshape(T, E)
    choice = choice.masked_fill(~score_mask.bool(), float("-inf"))
    ids_TK = choice.topk(k, dim=-1, sorted=False)[1]
    w_TK = scores.gather(1, ids_TK)
    if renormalize:
        w_TK = w_TK / (w_TK.sum(dim=-1, keepdim=True) + 1e-20)
    return w_TK * routed_scaling_factor, ids_TK
