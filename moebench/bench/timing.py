"""Kernel timing and the roofs measured in the same run.

GPU: CUDA events around each repeat, the L2 flushed (a 256 MiB write) before each, and µs-scale points replayed
from a CUDA graph (launch gaps would otherwise dominate). CPU: perf_counter around each repeat after warm-up.
Roofs: GPU - a large device-to-device copy (bytes read + written) and a large bf16 matmul (cuBLAS);
CPU - the best of a large copy (read + written) and a large read-only reduction, and the best of torch's and
numpy's BLAS on a large fp32 matmul.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from moebench_kernels.timing import CudaTimer, median

GRAPH_BELOW_MS = 2.0  # replay from a CUDA graph when one eager call takes less than this


def time_cuda(timer: CudaTimer, fn: Callable[[], Any], warmup: int, repeats: int,
              graphable: bool) -> tuple[list[float], bool]:
    """Per-repeat milliseconds, and whether they are CUDA-graph replays (µs-scale points of graphable fns)."""
    for _ in range(max(warmup, 1)):
        fn()
    torch.cuda.synchronize()
    use_graph = graphable and median(timer.events(fn, 3)) < GRAPH_BELOW_MS
    return timer.time(fn, 0, repeats, use_graph), use_graph


def time_cpu(fn: Callable[[], Any], warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def measure_roofs(device: str, dtype: torch.dtype, scale: float = 1.0) -> dict[str, Any]:
    """Memory bandwidth (GB/s) and matmul throughput (TFLOP/s) measured now on `device`; medians of a few.
    `scale` < 1 shrinks the probes (tests only: small probes measure caches, not memory)."""
    if device == "cuda":
        timer = CudaTimer()
        src = torch.empty(int((1 << 30) * scale), dtype=torch.uint8, device="cuda").random_(0, 255)  # 1 GiB
        dst = torch.empty_like(src)
        copy_ms = median(timer.events(lambda: dst.copy_(src), 10))
        n = max(256, int(8192 * scale ** (1 / 3)))
        a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        for _ in range(3):
            a @ b
        mm_ms = median(timer.events(lambda: a @ b, 10))
        nbytes = src.numel()
        del src, dst, a, b, timer
        torch.cuda.empty_cache()
        return {"mem_gbps": 2 * nbytes / (copy_ms / 1e3) / 1e9,
                "mem_probe": f"device-to-device copy, {nbytes / 2**30:.2f} GiB",
                "matmul_tflops": 2 * n**3 / (mm_ms / 1e3) / 1e12, "matmul_probe": f"bf16 {n}^3 (cuBLAS)",
                "basis": "measured"}
    src = torch.randn(int((1 << 28) * scale))  # 1 GiB fp32: far past the last-level cache
    dst = torch.empty_like(src)
    nbytes = src.numel() * 4
    copy_ms = median(time_cpu(lambda: dst.copy_(src), 1, 5))
    read_ms = median(time_cpu(lambda: src.sum(), 1, 5))
    del dst
    n = max(256, int(4096 * scale ** (1 / 3)))
    a, b = torch.randn(n, n), torch.randn(n, n)
    mm_ms = median(time_cpu(lambda: a @ b, 1, 3))
    try:  # torch's BLAS (MKL) is not always the host's fastest (AMD CPUs): take the better of it and numpy's
        an, bn = a.numpy(), b.numpy()
        mm_ms = min(mm_ms, median(time_cpu(lambda: an @ bn, 1, 3)))
    except (ImportError, RuntimeError):
        pass
    del src, a, b
    copy_gbps, read_gbps = 2 * nbytes / (copy_ms / 1e3) / 1e9, nbytes / (read_ms / 1e3) / 1e9
    return {"mem_gbps": max(copy_gbps, read_gbps), "mem_copy_gbps": copy_gbps, "mem_read_gbps": read_gbps,
            "mem_probe": f"max(copy counting read + write, read-only sum) of {nbytes / 2**30:.2f} GiB",
            "matmul_tflops": 2 * n**3 / (mm_ms / 1e3) / 1e12, "matmul_probe": f"fp32 {n}^3, best of torch and numpy",
            "threads": torch.get_num_threads(), "basis": "measured"}
