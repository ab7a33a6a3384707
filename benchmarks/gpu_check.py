"""Check every Triton kernel against its torch reference on a GPU, compiled (bf16, fp16, fp32), before tuning.

    python benchmarks/gpu_check.py        # exit 1 on any mismatch; prints one line per check

The interpreter tests (tests/kernels) cover the awkward shapes on CPU; this covers what only compiled code on a
GPU can get wrong (layouts, bf16 rounding, the multi-program alignment path, int64 offsets on big layers).
"""

from __future__ import annotations

import sys

import torch

from moebench_kernels import get_backend
from moebench_kernels.configs import get_configs
from moebench_kernels.fused_moe import _tma_ok, fused_moe, fused_moe_ref
from moebench_kernels.moe_align import moe_align, moe_align_ref
from moebench_kernels.rmsnorm import fused_add_rmsnorm_ref, rmsnorm_ref
from moebench_kernels.router import grouped_topk_sigmoid_ref, topk_softmax_ref, topk_then_softmax_ref

TOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 2e-2}
failures: list[str] = []


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / max(float(b.double().norm()), 1e-30))


def report(name: str, ok: bool, detail: str) -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
    if not ok:
        failures.append(name)


def routing(T, K, E, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.rand(T, E, generator=g).argsort(1)[:, :K]
    return torch.softmax(torch.randn(T, K, generator=g), -1).cuda(), ids.cuda()


def main() -> int:
    import triton

    print(f"torch {torch.__version__}, triton {triton.__version__}, {torch.cuda.get_device_name()}")
    tri = get_backend("triton", "cuda")
    cases = [(1, 2, 8, 256, 128, "silu", False), (37, 2, 8, 512, 384, "silu", False),
             (5, 8, 384, 256, 128, "silu", False), (300, 8, 64, 256, 256, "silu", False),
             (2000, 4, 16, 320, 192, "swiglu_oai", True), (64, 4, 32, 2880, 2880, "swiglu_oai", True),
             (33, 2, 8, 260, 132, "silu", False)]  # rows not 16-byte aligned in 16-bit: TMA falls back
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        for T, K, E, D, F, act, bias in cases:
            torch.manual_seed(T)
            x = torch.randn(T, D, device="cuda", dtype=dtype)
            w13 = torch.randn(E, 2 * F, D, device="cuda", dtype=dtype) * D**-0.5
            w2 = torch.randn(E, D, F, device="cuda", dtype=dtype) * F**-0.5
            b13 = torch.randn(E, 2 * F, device="cuda", dtype=dtype) * 0.1 if bias else None
            b2 = torch.randn(E, D, device="cuda", dtype=dtype) * 0.1 if bias else None
            w, ids = routing(T, K, E, T)
            ids[0, 0] = -1
            r = fused_moe_ref(x.double(), w13.double(), w2.double(), w.double(), ids, act,
                              None if b13 is None else b13.double(), None if b2 is None else b2.double())
            # the tensor-descriptor path (USE_TMA) on the same tiles as the pointer path
            cfg = get_configs(T, K, E, F, D, dtype, torch.cuda.get_device_name())
            tma = {g: c | {"USE_TMA": 1} for g, c in cfg.items()}
            # name the path that really ran: a config asking for TMA on unaligned rows runs the pointer path
            h = torch.empty(1, F, device="cuda", dtype=dtype)
            ran = [_tma_ok(tma[g], a, b) for g, a, b in (("gate_up", x, w13), ("down", h, w2))]
            tma_label = " tma" if all(ran) else " tma asked, ran " + "/".join("tma" if r else "pointer" for r in ran)
            for label, y in (("", tri.fused_moe(x, w13, w2, w, ids, act, b13, b2)),
                             (tma_label, fused_moe(x, w13, w2, w, ids, act, b13, b2, configs=tma))):
                e = rel(y, r)
                report(f"fused_moe{label} {dtype} T={T} K={K} E={E} D={D} F={F} {act}", e < TOL[dtype],
                       f"rel err {e:.2e}")
    # the chunked alignment path and an expert spanning chunks
    ids = torch.randint(0, 256, (4096, 8), device="cuda")
    ids[:100] = 7
    ids[5, 3] = -1
    a, b = moe_align(ids, 256), moe_align_ref(ids, 256)
    n = int(b.counts_E.sum())
    report("moe_align T=4096 K=8 E=256", bool(torch.equal(a.counts_E, b.counts_E) and torch.equal(
        a.sorted_ids_R[:n], b.sorted_ids_R[:n]) and torch.equal(a.row_start_E, b.row_start_E)), "exact")
    for dtype in (torch.bfloat16, torch.float32):
        logits = torch.randn(777, 256, device="cuda", dtype=dtype)
        for name, got, ref in [
            ("topk_softmax", tri.topk_softmax(logits, 8, renormalize=True), topk_softmax_ref(logits, 8, True)),
            ("topk_then_softmax", tri.topk_then_softmax(logits, 4), topk_then_softmax_ref(logits, 4)),
        ]:
            same = torch.equal(got[1].sort(1)[0], ref[1].sort(1)[0])
            e = rel(got[0].sort(1)[0], ref[0].sort(1)[0])
            report(f"{name} {dtype}", same and e < 1e-5, f"ids equal {same}, weight rel err {e:.1e}")
        bias = 0.1 * torch.randn(256, device="cuda")
        kw = dict(n_group=8, topk_group=4, renormalize=True, routed_scaling_factor=2.5)
        got = tri.grouped_topk_sigmoid(logits.float(), bias, 8, **kw)
        ref = grouped_topk_sigmoid_ref(logits.float(), bias, 8, **kw)
        same = torch.equal(got[1].sort(1)[0], ref[1].sort(1)[0])
        report(f"grouped_topk_sigmoid {dtype}", same, f"ids equal {same}")
        x, r = (torch.randn(333, 7168, device="cuda", dtype=dtype) for _ in range(2))
        wt = torch.randn(7168, device="cuda", dtype=dtype)
        e1 = rel(tri.rmsnorm(x, wt, 1e-6), rmsnorm_ref(x, wt, 1e-6))
        n1, r1 = tri.fused_add_rmsnorm(x, r, wt, 1e-6)
        n2, r2 = fused_add_rmsnorm_ref(x, r, wt, 1e-6)
        report(f"rmsnorm {dtype}", e1 < 1e-2 and rel(n1, n2) < 1e-2 and torch.equal(r1, r2),
               f"rel err {e1:.1e} / {rel(n1, n2):.1e}")
    print(f"{len(failures)} failed" if failures else "all ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
