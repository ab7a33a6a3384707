"""Kernel timing and the roofs measured in the same run.

GPU: CUDA events around each repeat, the L2 flushed (a 256 MiB read) before each, and µs-scale points replayed
from a CUDA graph (launch gaps would otherwise dominate). CPU: perf_counter around each repeat after warm-up.
Roofs: GPU - a large device-to-device copy (bytes read + written) and a large bf16 matmul (cuBLAS);
CPU - the best of a large copy (read + written) and a large read-only reduction, the best of torch's and
numpy's BLAS on a large fp32 matmul, and the register-FMA peak (`CpuRoofProbe`: rounds that can also run
between the timed repeats of a benchmark).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch

from moebench import arith
from moebench.bench.cpu_peak import fma_peak_tflops
from moebench.results import percentile
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
    """Memory bandwidth (GB/s) and matmul throughput (TFLOP/s) measured now on `device` (on CPU also the
    register-FMA peak); medians of a few. `scale` < 1 shrinks the probes (the engine's quick runs use 0.25;
    below ~0.1 they measure caches, not memory: tests only)."""
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
    probe = CpuRoofProbe(scale, dtype)  # its buffers are filled, so touched, on creation
    return probe.roofs([probe.sample() for _ in range(3)])


class CpuRoofProbe:
    """The CPU roofs as one round of probes that can run on its own (`measure_roofs`) or between the timed
    repeats of other work (the kernel benchmark's rounds, so the roof is measured under the same load as the
    point it judges: this host's bandwidth moves by ±15% within seconds). A round: an fp32 matmul of side
    4096·scale^(1/3) in numpy's BLAS and then in torch's (MKL is not always the host's best: on this project's
    AMD host it read 0.13-0.18 TFLOP/s where OpenBLAS read 0.18), then a read-only sum of `scale` GiB and a
    copy of another `scale` GiB (past the last-level cache, and apart, so that neither reads what the other
    left in it), then register-resident FMAs on every thread (`fma_peak_tflops`: the compute ceiling BLAS
    under-reads); the round's roofs are the better of each pair. numpy goes first because OpenBLAS's threads
    keep spinning after a call: a sum right after it read 14.5 GB/s instead of 28.8, and a 5 ms MoE layer run
    right after it took 8-28 ms; the torch matmul in between absorbs that (26.6 GB/s; the layer 5.1 ms).
    """

    def __init__(self, scale: float = 1.0, dtype: torch.dtype = torch.float32):
        self.src = torch.ones(int((1 << 28) * scale))  # ones, not randn: a fill is 10x faster to make
        self.src2, self.dst = torch.ones_like(self.src), torch.zeros_like(self.src)  # all pages touched
        self.n = max(256, int(4096 * scale ** (1 / 3)))
        # the matmul in the dtype the work computes in: a bf16 run on a CPU with bf16 dot products outruns an fp32
        # probe (and its fp32 FMA peak) twice over, so those are no ceiling for it
        self.dtype = dtype
        if dtype != torch.float32:  # fp16 on a CPU is emulated (9 s for 2580^3 here): size the probe to ~0.25 s
            m = min(512, self.n)
            x = torch.randn(m, m, dtype=dtype)
            x @ x
            t = max(time_cpu(lambda: x @ x, 0, 1)[0] / 1e3, 1e-6)
            self.n = max(256, min(self.n, int(m * (0.25 / t) ** (1 / 3))))
        self.a, self.b = torch.randn(self.n, self.n, dtype=dtype), torch.randn(self.n, self.n, dtype=dtype)
        try:
            self.an, self.bn = (self.a.numpy(), self.b.numpy()) if dtype == torch.float32 else (None, None)
        except (ImportError, RuntimeError):  # torch without numpy
            self.an = self.bn = None

    def sample(self) -> dict[str, float]:
        """One round: {mem_copy_gbps, mem_read_gbps, mem_gbps, matmul_tflops[, fma_peak_tflops]} measured now."""
        nbytes, flop = self.src.numel() * 4, 2 * self.n ** 3
        mm_ms = time_cpu(lambda: self.an @ self.bn, 0, 1)[0] if self.an is not None else math.inf
        mm_ms = min(mm_ms, time_cpu(lambda: self.a @ self.b, 0, 1)[0])
        read_ms = time_cpu(lambda: self.src.sum(), 0, 1)[0]
        copy_ms = time_cpu(lambda: self.dst.copy_(self.src2), 0, 1)[0]
        copy, read = 2 * nbytes / (copy_ms / 1e3) / 1e9, nbytes / (read_ms / 1e3) / 1e9
        out = {"mem_copy_gbps": copy, "mem_read_gbps": read, "mem_gbps": max(copy, read),
               "matmul_tflops": flop / (mm_ms / 1e3) / 1e12}
        peak = fma_peak_tflops(torch.get_num_threads(), 0.02) if self.dtype == torch.float32 else None
        if peak is not None:
            out["fma_peak_tflops"] = peak
        return out

    def roofs(self, rounds: list[dict[str, float]]) -> dict[str, Any]:
        """The medians of `rounds` (with p20-p80 of the two roofs), in measure_roofs' format."""
        med = {k: percentile([r[k] for r in rounds], 50) for k in rounds[0]}
        spread = {f"{k}_p20_p80": [percentile([r[k] for r in rounds], q) for q in (20, 80)]
                  for k in ("mem_gbps", "matmul_tflops")}
        return {**med, **spread, "rounds": len(rounds),
                "mem_probe": ("max(copy counting read + write, read-only sum) of "
                              f"{self.src.numel() * 4 / 2**30:.2f} GiB"),
                "matmul_probe": f"{arith.dtype_key(str(self.dtype))} {self.n}^3, "
                                + ("best of torch and numpy" if self.an is not None else "torch"),
                "matmul_dtype": str(self.dtype).removeprefix("torch."),
                "threads": torch.get_num_threads(), "basis": "measured"}
