"""What a deployment costs and scores, resolved from the workload's typed specs and the catalog: one resolution for
every producer (the in-process engine, an endpoint run), whatever the shape of its workload."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from moebench.catalog import Hardware, reference_models
from moebench.specs import IntelligenceSpec, PriceSpec


@dataclass(frozen=True)
class Pricing:
    usd_per_gpu_hour: Optional[float]
    tier: Optional[str]  # explicit | user-set | a catalog tier; None when unpriced
    source: Optional[str]
    n_gpus: int
    allin_kw_per_gpu: Optional[float] = None


def resolve_pricing(spec: PriceSpec, hw: Optional[Hardware], n_gpus: int, field: str = "price") -> Pricing:
    """An explicit price, else the catalog's for `spec.tier`, else the user's fallback, else unpriced. `field`
    names the spec in the workload (its sources say where a price came from). Raises BadInput for a tier the
    hardware does not have."""
    kw = hw.allin_kw_per_gpu if hw else None
    if spec.usd_per_gpu_hour is not None:
        return Pricing(spec.usd_per_gpu_hour, "explicit", f"workload {field}.usd_per_gpu_hour", n_gpus, kw)
    p = hw.price(spec.tier) if hw else None
    if p is not None:
        return Pricing(p.usd_per_gpu_hour, p.tier, f"{p.source} ({p.date})", n_gpus, kw)
    if spec.fallback_usd_per_gpu_hour is not None:
        why = f"{hw.id} has no catalog price" if hw else "no hardware given"
        return Pricing(spec.fallback_usd_per_gpu_hour, "user-set",
                       f"workload {field}.fallback_usd_per_gpu_hour ({why})", n_gpus, kw)
    return Pricing(None, None, None, n_gpus, kw)


def resolve_intelligence(spec: IntelligenceSpec, model: Optional[str]) -> Optional[dict[str, Any]]:
    """An explicit score, else the catalog's for `model` (family:flavor) at the spec's index version; None when
    the catalog has no score on that index."""
    if spec.score is not None:
        return {"score": spec.score, "index": spec.index, "version": spec.version, "source": "workload (explicit score)"}
    ref = reference_models().get(model) if model else None
    s = ref.score(spec.version) if ref else None
    if s is None or s.index != spec.index:
        return None
    return {"score": s.score, "index": s.index, "version": s.version, "scored_as": s.scored_as, "source": s.source}
