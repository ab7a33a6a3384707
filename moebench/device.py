"""Which device and dtype a run uses, and which catalog hardware that device is: the resolution every producer
(engine, kernel benchmarks) shares."""

from __future__ import annotations

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
        raise EnvironmentProblem("device cuda was asked for (--device or the workload's device:) but no CUDA GPU is "
                                 "visible to torch")
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
