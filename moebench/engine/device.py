"""The engine's device timer, and the roofs measured in the same run."""

from __future__ import annotations

import time
from typing import Callable

import torch


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class Timer:
    """Milliseconds of device work between start() and stop(): CUDA events on GPU, a monotonic clock on CPU."""

    def __init__(self, device: str):
        self.cuda = device == "cuda"

    def time(self, fn: Callable[[], object]) -> tuple[float, object]:
        if self.cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            out = fn()
            b.record()
            b.synchronize()
            return a.elapsed_time(b), out
        t0 = time.perf_counter()
        out = fn()
        return (time.perf_counter() - t0) * 1e3, out


def measure_roofs(device: str, dtype: torch.dtype, scale: float = 0.25) -> dict[str, object]:
    """The roofs of this run, in the results schema's units: memory GB/s and matmul GFLOP/s, measured now.

    One probe for the whole project (moebench.bench.timing.measure_roofs: a large copy / read, a large matmul
    through the best BLAS on the host); on CPU the probes are shrunk by `scale` (still far past the caches) so
    a quick run spends about a second on them.
    """
    from moebench.bench.timing import measure_roofs as probe

    r = probe(device, dtype, scale if device == "cpu" else 1.0)
    out = {
        "mem_gbps": r["mem_gbps"],
        "mem_probe": r["mem_probe"],
        "matmul_gflops": r["matmul_tflops"] * 1e3,
        "matmul_dtype": "bfloat16" if device == "cuda" else r["matmul_dtype"],
        "matmul_probe": r["matmul_probe"],
        "basis": "measured",
    }
    if r.get("fma_peak_tflops"):  # CPU: the register-FMA peak, a ceiling no GEMM passes (BLAS under-reads it)
        out["fma_peak_gflops"] = r["fma_peak_tflops"] * 1e3
    return out


def compute_roof_flops(roofs: dict[str, object]) -> float:
    """The FLOP/s ceiling of the measured roofs: the matmul probe, or on CPU the FMA peak where that is higher
    (the model's own GEMMs outrun a 1024^3 BLAS probe on some hosts: 1.5x "of roof" was seen)."""
    return max(float(roofs["matmul_gflops"]), float(roofs.get("fma_peak_gflops") or 0.0)) * 1e9
