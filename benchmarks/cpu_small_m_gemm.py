"""Small-M fp32 GEMM on this CPU: moebench_kernels.cpu_gemm vs oneDNN vs MKL, against roofs measured alongside.

    python benchmarks/cpu_small_m_gemm.py --n 28672 --k 4096        # Mixtral's w13 ([2F, D])

Prints, per row count M, GB/s of weight traffic, GFLOP/s, and % of max(weight bytes / read bandwidth,
FLOPs / matmul rate); the read bandwidth (1 GiB sum) is re-measured before each M, the matmul rate once.
"""

from __future__ import annotations

import argparse
import time

import torch


def best_of(f, n: int = 7) -> float:
    f()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2]


def main() -> None:
    from moebench_kernels import cpu_gemm

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=28672)
    ap.add_argument("--k", type=int, default=4096)
    ap.add_argument("--m", default="1,2,3,4,6,8,12,16,24,32,48,64")
    args = ap.parse_args()
    N, K = args.n, args.k
    W = torch.randn(N, K)
    src = torch.randn(1 << 28)
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    mm = 2 * 4096**3 / min(best_of(lambda: a @ b, 3), best_of(lambda: a.numpy() @ b.numpy(), 3))
    print(f"matmul roof {mm / 1e9:.0f} GFLOP/s (best of torch and numpy, fp32 4096^3), cpu_gemm {cpu_gemm.available()}")
    lp = torch.ops.mkldnn._linear_pointwise
    for M in [int(m) for m in args.m.split(",")]:
        x = torch.randn(M, K)
        out = torch.empty(M, N)
        bw = src.numel() * 4 / best_of(lambda: src.sum(), 3)
        floor = max(N * K * 4 / bw, 2 * M * N * K / mm)
        row = []
        for name, f in [("cpu_gemm", lambda: cpu_gemm.linear_small_m(x, W, out) if M <= cpu_gemm.M_MAX else None),
                        ("onednn", lambda: lp(x, W, None, "none", [], "")), ("mkl", lambda: x @ W.t())]:
            t = best_of(f)
            row.append(f"{name} {N * K * 4 / t / 1e9:5.1f} GB/s {2 * M * N * K / t / 1e9:6.1f} GF {100 * floor / t:4.0f}%")
        print(f"M={M:3d} read {bw / 1e9:5.1f} GB/s | " + " | ".join(row), flush=True)


if __name__ == "__main__":
    main()
