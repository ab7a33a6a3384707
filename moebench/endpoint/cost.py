"""What the declared deployment costs and scores: price per GPU-hour (explicit, or a catalog tier), all-in power,
and the model's intelligence score (explicit, or the catalog's for `deployment.model`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from moebench.catalog import Hardware, get_hardware, reference_models
from moebench.endpoint.workload import Deployment
from moebench.errors import BadInput


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
    kw = hw.allin_kw_per_gpu if hw else None
    intel = _intelligence(dep)
    if dep.price.usd_per_gpu_hour is not None:
        return DeploymentCost(dep.price.usd_per_gpu_hour, "explicit", "workload deployment.price.usd_per_gpu_hour",
                              dep.gpus, kw, intel)
    price = None
    if hw is not None:
        try:
            price = hw.price(dep.price.tier)
        except BadInput as exc:
            raise BadInput(f"{source}: deployment.price: {exc}") from None
    if price is not None:
        return DeploymentCost(price.usd_per_gpu_hour, price.tier, f"{price.source} ({price.date})", dep.gpus, kw, intel)
    if dep.price.fallback_usd_per_gpu_hour is not None:
        return DeploymentCost(dep.price.fallback_usd_per_gpu_hour, "user-set",
                              "workload deployment.price.fallback_usd_per_gpu_hour", dep.gpus, kw, intel)
    return DeploymentCost(None, None, None, dep.gpus, kw, intel)


def _intelligence(dep: Deployment) -> Optional[dict[str, Any]]:
    spec = dep.intelligence
    if spec.score is not None:
        return {"score": spec.score, "index": spec.index, "version": spec.version, "source": "workload (explicit score)"}
    ref = reference_models().get(dep.model) if dep.model else None
    s = ref.score(spec.version) if ref else None
    if s is None or s.index != spec.index:
        return None
    return {"score": s.score, "index": s.index, "version": s.version, "scored_as": s.scored_as, "source": s.source}
