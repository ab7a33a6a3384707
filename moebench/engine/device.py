"""Device, dtype and hardware resolution, the timer, and the roofs measured in the same run."""

from __future__ import annotations

import itertools
import os
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


def local_ranks(world_size: int) -> int | None:
    """Ranks on this host: torchrun's LOCAL_WORLD_SIZE, Slurm's tasks per node, or (launched by nothing that
    says) the world size on one host; None under Slurm without a per-node count (multi-node: unknown)."""
    env = os.environ
    for key in ("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"):
        digits = "".join(itertools.takewhile(str.isdigit, env.get(key, "")))
        if digits:
            return int(digits)
    return None if "SLURM_JOB_ID" in env else world_size


def cpu_oversubscription(ranks: int, threads: int, cores: int | None) -> str | None:
    """One line when the ranks on this host ask for more CPU threads than it has cores, else None. Each rank's
    intra-op threads spin while they wait for each other; oversubscribed, they spin against the ranks doing the
    work (measured on 2 cores, 4 ranks x 2 threads: prefill 3.5x and decode 12x slower than 4 x 1, and who
    arrives last at a collective becomes the scheduler's choice)."""
    if not cores or ranks * threads <= cores:
        return None
    if threads > 1:
        return (f"CPU oversubscribed: {ranks} ranks x {threads} threads on {cores} cores; timings are "
                f"inflated (OMP_NUM_THREADS={max(1, cores // ranks)} is what moebench sets when it is unset)")
    return (f"{ranks} single-thread ranks share {cores} cores: each rank's times include waiting for a core "
            f"(fine for the mechanics of a parallel plan, not for its absolute speed)")


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
        "matmul_dtype": "bfloat16" if device == "cuda" else "float32",
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
