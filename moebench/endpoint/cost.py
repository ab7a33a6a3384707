"""What the declared deployment costs and scores: price per GPU-hour (explicit, or a catalog tier), all-in power,
and the model's intelligence score (explicit, or the catalog's for `deployment.model`), resolved by
moebench.pricing as the engine's are."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from moebench.catalog import Hardware, get_hardware
from moebench.endpoint.workload import Deployment
from moebench.errors import BadInput
from moebench.pricing import resolve_intelligence, resolve_pricing


@dataclass(frozen=True)
class DeploymentCost:
    usd_per_gpu_hour: Optional[float]
    tier: Optional[str]
    source: Optional[str]
    n_gpus: int
    allin_kw_per_gpu: Optional[float]
    intelligence: Optional[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"usd_per_gpu_hour": self.usd_per_gpu_hour, "tier": self.tier, "source": self.source,
                "n_gpus": self.n_gpus}


def hardware_of(dep: Deployment, source: str) -> Optional[Hardware]:
    if dep.hardware is None:
        return None
    try:
        return get_hardware(dep.hardware)
    except BadInput as exc:
        raise BadInput(f"{source}: deployment.hardware: {exc}") from None


def resolve_cost(dep: Deployment, source: str = "workload") -> DeploymentCost:
    """Raises BadInput (one line naming the field) for an unknown hardware id or price tier."""
    hw = hardware_of(dep, source)
    try:
        p = resolve_pricing(dep.price, hw, dep.gpus, field="deployment.price")
    except BadInput as exc:
        raise BadInput(f"{source}: deployment.price: {exc}") from None
    return DeploymentCost(p.usd_per_gpu_hour, p.tier, p.source, p.n_gpus, p.allin_kw_per_gpu,
                          resolve_intelligence(dep.intelligence, dep.model))
