"""Device, dtype and hardware resolution, the timer, and the roofs measured in the same run."""

from __future__ import annotations

import time
from typing import Callable

import torch

from moebench.errors import EnvironmentProblem

# torch.cuda.get_device_name substrings -> catalog id (first match wins; order matters: H200 before H100).
_GPU_IDS = [
    ("GB300", "gb300_nvl72"), ("B300", "b300"), ("GB200", "gb200_nvl72"), ("B200", "b200"),
    ("H200", "h200_sxm"), ("H100", "h100_sxm"), ("H800", "h100_sxm"), ("A100", "a100_sxm_80gb"),
    ("MI355", "mi355x"), ("MI325", "mi325x"), ("MI300", "mi300x"),
]


def resolve_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise EnvironmentProblem("--device cuda was requested but no CUDA GPU is visible to torch")
    return requested


def resolve_dtype(requested: str, device: str) -> torch.dtype:
    if requested == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return getattr(torch, requested)


def detect_hardware(device: str) -> str:
    if device == "cpu":
        return "cpu"
    name = torch.cuda.get_device_name(torch.cuda.current_device())
    for key, hid in _GPU_IDS:
        if key in name:
            return hid
    raise EnvironmentProblem(f"GPU {name!r} is not in the hardware catalog; set `hardware:` in the workload")


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


def measure_roofs(device: str, dtype: torch.dtype, budget_s: float = 1.0) -> dict[str, float]:
    """Memory bandwidth (a large copy: bytes read + written) and matmul throughput, measured now on `device`.

    Median of a few repeats; CPU sizes are kept small enough to finish in about `budget_s`.
    """
    timer = Timer(device)
    big = 1 << (28 if device == "cuda" else 25)  # elements: 1 GiB / 128 MiB fp32
    src = torch.randn(big, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    sync(device)
    copies = sorted(timer.time(lambda: dst.copy_(src))[0] for _ in range(5))
    mem_gbps = 2 * src.numel() * src.element_size() / (copies[2] / 1e3) / 1e9
    n = 8192 if device == "cuda" else 1024
    mm_dtype = dtype if device == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=mm_dtype)
    b = torch.randn(n, n, device=device, dtype=mm_dtype)
    a @ b
    sync(device)
    mms = sorted(timer.time(lambda: a @ b)[0] for _ in range(5))
    del src, dst, a, b
    return {
        "mem_gbps": mem_gbps,
        "matmul_gflops": 2 * n**3 / (mms[2] / 1e3) / 1e9,
        "matmul_dtype": str(mm_dtype).removeprefix("torch."),
        "basis": "measured",
    }
