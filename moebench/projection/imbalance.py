"""Expert imbalance from the expert load a measured run recorded (its profile's `expert_load`: tokens routed to
each expert of each MoE layer), as the projection's factor: routed rows on the busiest expert-parallel rank / the
mean, for the rank count of the layout projected.

Experts are sharded over `ep` ranks in contiguous blocks of ⌈E/ep⌉ (as moebench and the serving engines place
them); a layer's step waits for its busiest rank, so the factor is the mean over layers of each layer's
max / mean rank load. One rank (ep = 1) is always 1: a GPU holding every expert sees the mean.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping, Sequence

from moebench.errors import BadInput


def rank_imbalance(tokens_per_expert: Sequence[float], ep: int) -> float:
    """Busiest of `ep` ranks / the mean rank, for one layer's tokens per expert."""
    e = len(tokens_per_expert)
    if ep <= 1 or e == 0:
        return 1.0
    per = math.ceil(e / ep)
    ranks = [sum(tokens_per_expert[i:i + per]) for i in range(0, e, per)]
    ranks += [0.0] * (ep - len(ranks))  # ranks beyond the experts hold none
    mean = sum(ranks) / ep
    return max(ranks) / mean if mean > 0 else 1.0


def _layers(node: Any) -> Iterator[Sequence[float]]:
    """Every `tokens_per_expert` row under an `expert_load` section of a result document."""
    if isinstance(node, Mapping):
        load = node.get("expert_load")
        if isinstance(load, Mapping):
            for layer in load.get("layers") or ():
                row = layer.get("tokens_per_expert") if isinstance(layer, Mapping) else None
                if isinstance(row, list) and row and all(isinstance(x, (int, float)) for x in row):
                    yield row
        for v in node.values():
            if v is not load:
                yield from _layers(v)
    elif isinstance(node, list):
        for v in node:
            yield from _layers(v)


def measured_load(doc: Mapping[str, Any], n_experts: int, source: str = "result") -> list[Sequence[float]]:
    """The per-layer expert loads a result recorded, checked against the model's expert count."""
    rows = list(_layers(doc))
    if not rows:
        raise BadInput(f"{source}: no expert load recorded (profile.expert_load; run with profiling on a MoE model)")
    if any(len(r) != n_experts for r in rows):
        raise BadInput(f"{source}: its expert load has {len(rows[0])} experts, the projected model {n_experts}")
    return rows


def by_ep(rows: Sequence[Sequence[float]], eps: Sequence[int]) -> dict[int, float]:
    """{ep: mean over layers of the busiest rank / the mean} for each rank count."""
    return {ep: sum(rank_imbalance(r, ep) for r in rows) / len(rows) for ep in eps}

