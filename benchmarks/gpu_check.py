"""Check every Triton kernel against its torch reference on a GPU, compiled (bf16, fp16, fp32), before tuning.

    python benchmarks/gpu_check.py        # exit 1 on any mismatch; prints one line per check

The interpreter tests (tests/kernels) cover the awkward shapes on CPU; this covers what only compiled code on a
GPU can get wrong (layouts, bf16 rounding, the multi-program alignment path, int64 offsets on big layers).
`run_checks` is the same checks as a function (benchmarks/gpu_truth.py runs it in bf16 on a lease, and at tiny
shapes under TRITON_INTERPRET=1 on CPU so that this file cannot rot between leases).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import torch

TOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 2e-2}
# (T, K, E, D, F, activation, biases)
CASES = [(1, 2, 8, 256, 128, "silu", False), (37, 2, 8, 512, 384, "silu", False),
         (5, 8, 384, 256, 128, "silu", False), (300, 8, 64, 256, 256, "silu", False),
         (2000, 4, 16, 320, 192, "swiglu_oai", True), (64, 4, 32, 2880, 2880, "swiglu_oai", True),
         (33, 2, 8, 260, 132, "silu", False)]  # rows not 16-byte aligned in 16-bit: TMA falls back
# The same paths at interpreter sizes (CPU, fp32): one case per path the GPU cases exist for.
TINY_CASES = [(1, 2, 8, 32, 16, "silu", False), (37, 2, 8, 64, 48, "silu", False),
              (9, 4, 8, 32, 32, "swiglu_oai", True),
              (7, 2, 4, 34, 18, "silu", False)]  # 136-byte rows in fp32: TMA falls back to the pointer path


@dataclass(frozen=True)
class Sizes:
    """The shapes of the other checks: moe_align's (T, K, E), the routers' (T, E), rmsnorm's (T, D)."""

    align: tuple[int, int, int] = (4096, 8, 256)
    router: tuple[int, int] = (777, 256)
    rmsnorm: tuple[int, int] = (333, 7168)


TINY_SIZES = Sizes(align=(160, 8, 64), router=(37, 64), rmsnorm=(33, 256))  # align: > 1024 rows, the chunked path


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / max(float(b.double().norm()), 1e-30))


def routing(T, K, E, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.rand(T, E, generator=g).argsort(1)[:, :K]
    return torch.softmax(torch.randn(T, K, generator=g), -1).to(device), ids.to(device)


def device_name(device: str) -> Optional[str]:
    """The name the tuned-config loader keys on; None on CPU (the interpreter's configs)."""
    return torch.cuda.get_device_name() if device == "cuda" else None


def check_fused_moe(cases: Sequence[tuple], dtypes: Sequence[torch.dtype], device: str) -> Iterator[Check]:
    """Both GEMM paths (pointer, and tensor descriptors where the rows allow) against the fp64 reference."""
    from moebench_kernels import get_backend
    from moebench_kernels.configs import get_configs
    from moebench_kernels.fused_moe import _tma_ok, fused_moe, fused_moe_ref

    tri = get_backend("triton", device)
    for dtype in dtypes:
        for T, K, E, D, F, act, bias in cases:
            torch.manual_seed(T)
            x = torch.randn(T, D, device=device, dtype=dtype)
            w13 = torch.randn(E, 2 * F, D, device=device, dtype=dtype) * D**-0.5
            w2 = torch.randn(E, D, F, device=device, dtype=dtype) * F**-0.5
            b13 = torch.randn(E, 2 * F, device=device, dtype=dtype) * 0.1 if bias else None
            b2 = torch.randn(E, D, device=device, dtype=dtype) * 0.1 if bias else None
            w, ids = routing(T, K, E, device, T)
            ids[0, 0] = -1
            r = fused_moe_ref(x.double(), w13.double(), w2.double(), w.double(), ids, act,
                              None if b13 is None else b13.double(), None if b2 is None else b2.double())
            # the tensor-descriptor path (USE_TMA) on the same tiles as the pointer path
            cfg = get_configs(T, K, E, F, D, dtype, device_name(device))
            tma = {g: c | {"USE_TMA": 1} for g, c in cfg.items()}
            # name the path that really ran: a config asking for TMA on unaligned rows runs the pointer path
            h = torch.empty(1, F, device=device, dtype=dtype)
            ran = [_tma_ok(tma[g], a, b) for g, a, b in (("gate_up", x, w13), ("down", h, w2))]
            tma_label = " tma" if all(ran) else " tma asked, ran " + "/".join("tma" if r else "pointer" for r in ran)
            for label, y in (("", tri.fused_moe(x, w13, w2, w, ids, act, b13, b2)),
                             (tma_label, fused_moe(x, w13, w2, w, ids, act, b13, b2, configs=tma))):
                e = rel(y, r)
                yield Check(f"fused_moe{label} {dtype} T={T} K={K} E={E} D={D} F={F} {act}", e < TOL[dtype],
                            f"rel err {e:.2e}")


def check_align(device: str, sizes: Sizes = Sizes()) -> Iterator[Check]:
    """The chunked alignment path and an expert spanning chunks, exactly."""
    from moebench_kernels.moe_align import moe_align, moe_align_ref

    T, K, E = sizes.align
    ids = torch.randint(0, E, (T, K), device=device)
    ids[:100] = 7
    ids[5, 3] = -1
    a, b = moe_align(ids, E), moe_align_ref(ids, E)
    n = int(b.counts_E.sum())
    yield Check(f"moe_align T={T} K={K} E={E}", bool(torch.equal(a.counts_E, b.counts_E) and torch.equal(
        a.sorted_ids_R[:n], b.sorted_ids_R[:n]) and torch.equal(a.row_start_E, b.row_start_E)), "exact")


def check_routers_and_norms(device: str, dtypes: Sequence[torch.dtype], sizes: Sizes = Sizes()) -> Iterator[Check]:
    from moebench_kernels import get_backend
    from moebench_kernels.rmsnorm import fused_add_rmsnorm_ref, rmsnorm_ref
    from moebench_kernels.router import grouped_topk_sigmoid_ref, topk_softmax_ref, topk_then_softmax_ref

    tri = get_backend("triton", device)
    T, E = sizes.router
    for dtype in dtypes:
        logits = torch.randn(T, E, device=device, dtype=dtype)
        for name, got, ref in [
            ("topk_softmax", tri.topk_softmax(logits, 8, renormalize=True), topk_softmax_ref(logits, 8, True)),
            ("topk_then_softmax", tri.topk_then_softmax(logits, 4), topk_then_softmax_ref(logits, 4)),
        ]:
            same = torch.equal(got[1].sort(1)[0], ref[1].sort(1)[0])
            e = rel(got[0].sort(1)[0], ref[0].sort(1)[0])
            yield Check(f"{name} {dtype}", same and e < 1e-5, f"ids equal {same}, weight rel err {e:.1e}")
        bias = 0.1 * torch.randn(E, device=device)
        kw = dict(n_group=8, topk_group=4, renormalize=True, routed_scaling_factor=2.5)
        got = tri.grouped_topk_sigmoid(logits.float(), bias, 8, **kw)
        ref = grouped_topk_sigmoid_ref(logits.float(), bias, 8, **kw)
        same = torch.equal(got[1].sort(1)[0], ref[1].sort(1)[0])
        yield Check(f"grouped_topk_sigmoid {dtype}", same, f"ids equal {same}")
        x, r = (torch.randn(*sizes.rmsnorm, device=device, dtype=dtype) for _ in range(2))
        wt = torch.randn(sizes.rmsnorm[1], device=device, dtype=dtype)
        e1 = rel(tri.rmsnorm(x, wt, 1e-6), rmsnorm_ref(x, wt, 1e-6))
        n1, r1 = tri.fused_add_rmsnorm(x, r, wt, 1e-6)
        n2, r2 = fused_add_rmsnorm_ref(x, r, wt, 1e-6)
        yield Check(f"rmsnorm {dtype}", e1 < 1e-2 and rel(n1, n2) < 1e-2 and torch.equal(r1, r2),
                    f"rel err {e1:.1e} / {rel(n1, n2):.1e}")


def run_checks(device: str = "cuda", dtypes: Sequence[torch.dtype] = (torch.bfloat16, torch.float16, torch.float32),
               cases: Sequence[tuple] = CASES, sizes: Sizes = Sizes(),
               emit: Callable[[Check], None] = lambda c: None) -> list[Check]:
    """Every check in turn; `emit` sees each as it finishes (a lease's log shows how far a hang got)."""
    out: list[Check] = []
    for it in (check_fused_moe(cases, dtypes, device), check_align(device, sizes),
               check_routers_and_norms(device, [d for d in dtypes if d != torch.float16] or dtypes, sizes)):
        for c in it:
            emit(c)
            out.append(c)
    return out


def print_check(c: Check) -> None:
    print(f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}", flush=True)


def main() -> int:
    import triton

    print(f"torch {torch.__version__}, triton {triton.__version__}, {torch.cuda.get_device_name()}")
    failures = [c for c in run_checks("cuda", emit=print_check) if not c.ok]
    print(f"{len(failures)} failed" if failures else "all ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
