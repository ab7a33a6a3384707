"""Analytic projection of a workload onto hardware you do not own, calibrated by measurement.

    from moebench.projection import ServingScenario, Assumptions, device_for, project, calibrate
    proj = project(cfg, device_for("b200"), ServingScenario(1024, 256, weight_dtype="fp8"), Assumptions())
    proj.at_interactivity(50.0)          # best tokens/s/GPU at ≥ 50 tok/s/user, with its layout

Method and assumptions: docs/projection.md. No torch import anywhere in this package.
"""

from __future__ import annotations

from typing import Optional

from moebench.projection.assumptions import PHASES, Assumptions, Efficiency
from moebench.projection.calibration import Calibration, calibrate
from moebench.projection.comm import CommModel
from moebench.projection.cost import StepEstimate, step
from moebench.projection.device import Device, device_from_hardware
from moebench.projection.layout import Layout, layouts, memory
from moebench.projection.scenario import LengthMoments, ServingScenario
from moebench.projection.sweep import DEFAULT_BATCHES, DEFAULT_INTERACTIVITY, Point, Projection, evaluate, project


def device_for(hardware_id: str, *, price_tier: Optional[str] = None, usd_per_gpu_hour: Optional[float] = None) -> Device:
    """The catalog entry `hardware_id` as a projection device (BadInput with a did-you-mean when unknown)."""
    from moebench.catalog import get_hardware

    return device_from_hardware(get_hardware(hardware_id), price_tier=price_tier, usd_per_gpu_hour=usd_per_gpu_hour)


def resolve_config(name: str):
    """`family:flavor` -> ArchConfig through the model registry; catalog models whose family module is not
    installed yet fall back to the catalog's config.json (the same numbers the family would read)."""
    from moebench.catalog import reference_models
    from moebench.errors import BadInput
    from moebench.models import resolve_name
    from moebench.models.config import from_hf

    try:
        return resolve_name(name)[1]
    except BadInput:
        ref = reference_models().get(name)
        if ref is None:
            raise
        return from_hf(ref.config)


__all__ = [
    "PHASES", "Assumptions", "Calibration", "CommModel", "Device", "Efficiency", "Layout", "Point", "Projection",
    "LengthMoments", "ServingScenario", "StepEstimate", "DEFAULT_BATCHES", "DEFAULT_INTERACTIVITY", "calibrate", "device_for",
    "device_from_hardware", "evaluate", "layouts", "memory", "project", "resolve_config", "step",
]
