"""Routing overrides for imbalance studies (workload `routing:`) and the expert-load counter.

`routing` values (moebench.workload.ROUTING):
- `model`: the model's own router decides (no override).
- `uniform`: each token picks K distinct experts uniformly at random.
- `zipf:<s>`: K distinct experts drawn without replacement with popularity ∝ 1 / rank^s, where expert e has
  rank e + 1 (expert 0 is the most popular, so the hot experts sit on the first EP rank).
- `hot:<e>`: every token's first choice is expert e, plus K − 1 distinct others drawn uniformly.

An override keeps the router's cost (the router still runs) and replaces only the choice; the combine weights
are the router's probabilities at the chosen experts, rescaled to the total weight the router gave the token
(so `routed_scaling_factor` and renormalisation survive).

Legend: T tokens, E experts, K experts per token, L layers.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from moebench.errors import BadInput

RouteOverride = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def parse_routing(spec: str) -> tuple[str, Optional[float]]:
    """`"hot:3"` -> ("hot", 3.0); `"uniform"` -> ("uniform", None)."""
    kind, _, arg = spec.partition(":")
    if kind in ("model", "uniform") and not arg:
        return kind, None
    if kind in ("zipf", "hot") and arg:
        return kind, float(arg)
    raise BadInput(f"routing {spec!r} must be one of model | uniform | zipf:<s> | hot:<expert>")


def sample_ids(kind: str, arg: Optional[float], t: int, e: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """ids_TK (int64, on the generator's device): K distinct experts per token drawn as `kind` says."""
    dev = gen.device
    if kind == "uniform":
        return torch.rand(t, e, generator=gen, device=dev).topk(k, dim=-1).indices
    if kind == "zipf":
        p_E = 1.0 / torch.arange(1, e + 1, dtype=torch.float32, device=dev) ** float(arg)
        return torch.multinomial(p_E.expand(t, e), k, replacement=False, generator=gen)
    if kind == "hot":
        hot = int(arg)
        keys_TE = torch.rand(t, e, generator=gen, device=dev)
        keys_TE[:, hot] = 2.0  # above every uniform key: always first
        return keys_TE.topk(k, dim=-1).indices
    raise ValueError(f"no sampler for routing kind {kind!r}")


def check_routing(spec: str, n_experts: int, model: Optional[str] = None) -> tuple[str, Optional[float]]:
    """`parse_routing`, and BadInput when the spec asks for what a model with `n_experts` experts cannot do."""
    kind, arg = parse_routing(spec)
    if kind == "hot" and not 0 <= int(arg) < n_experts:
        where = f"in {model} ({n_experts} experts)" if model else f"(the model has {n_experts} experts)"
        raise BadInput(f"routing {spec!r}: expert {int(arg)} does not exist {where}")
    if kind == "zipf" and arg < 0:
        raise BadInput(f"routing {spec!r}: the Zipf exponent must be ≥ 0")
    return kind, arg


def make_route_override(spec: str, n_experts: int, top_k: int, *, seed: int, rank: int) -> Optional[RouteOverride]:
    """The `MoE.route_override` hook for `spec`, or None for `model`. Each rank draws from its own stream
    (seeded by seed and rank) so data-parallel ranks route different tokens differently, reproducibly."""
    kind, arg = check_routing(spec, n_experts)
    if kind == "model":
        return None
    gens: dict[str, torch.Generator] = {}

    def override(logits_TE: torch.Tensor, weights_TK: torch.Tensor, ids_TK: torch.Tensor):
        t = logits_TE.shape[0]
        dev = str(logits_TE.device)
        if dev not in gens:  # draw on the model's device: a host-to-device copy would synchronise every layer
            gens[dev] = torch.Generator(device=logits_TE.device).manual_seed(seed * 7919 + rank * 104729 + 1)
        new_ids = sample_ids(kind, arg, t, n_experts, top_k, gens[dev]).to(ids_TK.dtype)
        probs_TK = logits_TE.float().softmax(-1).gather(-1, new_ids.long())
        total_T1 = weights_TK.float().sum(-1, keepdim=True)
        w_TK = probs_TK / probs_TK.sum(-1, keepdim=True).clamp_min(1e-20) * total_T1
        return w_TK.to(weights_TK.dtype), new_ids

    return override


class LoadCounter:
    """`MoE.load_observer`: tokens routed to each expert, per layer. The hook only keeps a reference to each
    layer's ids; `step_done` counts the whole step in a few device ops (one scatter_add over all layers), since
    per-layer counting costs launches inside the timed step, and bincount or boolean masks would synchronise
    with the host."""

    def __init__(self, n_layers: int, n_experts: int, device: str):
        self.n_experts = n_experts
        self.total_LE = torch.zeros(n_layers, n_experts, dtype=torch.int64, device=device)
        self._pending: list[tuple[int, torch.Tensor]] = []
        self.enabled = True

    def __call__(self, layer: int, ids_TK: torch.Tensor) -> None:
        if self.enabled:
            self._pending.append((layer, ids_TK))

    def step_done(self, keep: bool = True) -> None:
        """Add the pending step to the totals (or drop it, for warm-up steps)."""
        pending, self._pending = self._pending, []
        if not keep or not pending:
            return
        flat = torch.cat([ids.reshape(-1).long() + layer * self.n_experts for layer, ids in pending])
        ids = torch.cat([ids.reshape(-1) for _, ids in pending])
        valid = (ids >= 0).long()
        self.total_LE.view(-1).scatter_add_(0, torch.where(ids >= 0, flat, 0), valid)

    def counts(self) -> list[list[int]]:
        """Totals so far, [L][E] (a host sync)."""
        return self.total_LE.tolist()


def balancedness(counts: list[int] | list[float]) -> Optional[float]:
    """mean / max of tokens per expert (or per EP rank): 1 is perfectly even; None when nothing was routed."""
    if not counts or max(counts) <= 0:
        return None
    return (sum(counts) / len(counts)) / max(counts)


def per_ep_rank(counts_E: list[int], ep: int) -> list[int]:
    """Tokens per EP rank, experts sharded contiguously (EP rank r holds experts [r·E/ep, (r+1)·E/ep))."""
    per = len(counts_E) // ep
    return [sum(counts_E[r * per:(r + 1) * per]) for r in range(ep)]


def moe_modules(model) -> list:
    """The MoE feed-forward modules of `model` (anything exposing the `route_override` / `load_observer` hooks)."""
    return [m for m in model.modules() if hasattr(m, "route_override") and hasattr(m, "load_observer")]


def install_routing(model, spec: str, *, seed: int, rank: int) -> Callable[[], None]:
    """Install the workload's `routing` override on every MoE layer (shared draw stream per rank) and return a
    function that restores the previous hooks. `model` routing, or a dense model, installs nothing.

    The engine calls this for every run whose workload sets `routing`, profiled or not."""
    mods = moe_modules(model)
    if not mods or parse_routing(spec)[0] == "model":
        return lambda: None
    cfg = model.cfg
    override = make_route_override(spec, cfg.n_routed_experts, cfg.top_k, seed=seed, rank=rank)
    before = [m.route_override for m in mods]
    for m in mods:
        m.route_override = override

    def restore() -> None:
        for m, b in zip(mods, before):
            m.route_override = b

    return restore
