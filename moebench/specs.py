"""Typed pieces that several kinds of workload share (a model's name, its intelligence score, a price), below
every workload schema so that each can use them without importing another."""

from __future__ import annotations

import re
from typing import Optional

from pydantic import Field, model_validator

from moebench.strict import Strict

MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*:[a-z0-9][a-z0-9_.-]*$")


class IntelligenceSpec(Strict):
    """Either a catalog score pinned by index version, or an explicit score (then index and version are required)."""

    version: str = "v3"
    index: str = "artificial-analysis-intelligence-index"
    score: Optional[float] = Field(default=None, ge=0)


class PriceSpec(Strict):
    tier: Optional[str] = None
    usd_per_gpu_hour: Optional[float] = Field(default=None, gt=0)
    # used only when the hardware has no catalog price (the `cpu` entry): the user's own machine cost
    fallback_usd_per_gpu_hour: Optional[float] = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one(self) -> "PriceSpec":
        if self.tier is not None and self.usd_per_gpu_hour is not None:
            raise ValueError("give either tier or usd_per_gpu_hour, not both")
        return self
