"""The machine this process runs on: which device and dtype a run uses, which catalog hardware that is, and how
many CPUs and ranks share the host. Below every producer (engine, kernel benchmarks, the launcher)."""

from __future__ import annotations

import itertools
import os

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


def usable_cpus() -> int:
    """The CPUs this process may run on (taskset, cpusets), not the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


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
