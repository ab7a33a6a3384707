"""Rank 0 gathers every rank's timings into one result.

The deployment answers a request when its slowest rank does, so the merged latency of each repeat (and of each
decode step) is the maximum over ranks; every rank's own numbers are kept in the result's `ranks` section.
"""

from __future__ import annotations

import os
import platform
from typing import Any, Optional

from moebench.energy import merge_ranks
from moebench.engine.generate import GenerationSamples
from moebench.parallel.comm import gather_to_rank0, watched
from moebench.parallel.mesh import ParallelContext
from moebench.results import stat


def merge_samples(per_rank: list[GenerationSamples]) -> GenerationSamples:
    """Element-wise max over ranks of TTFT and TPOT per repeat and of every decode step's latency; the energy of
    each repeat summed over ranks (moebench.energy.merge_ranks); every rank's contention parts kept."""
    contention = [c for s in per_rank for c in s.contention]
    hosts = [s.contention[0]["host"] if s.contention else None for s in per_rank]
    energy_j, source, scope = merge_ranks([(s.energy_source, s.energy_scope, s.energy_j, host)
                                           for s, host in zip(per_rank, hosts)])
    return GenerationSamples(
        ttft_ms=[max(xs) for xs in zip(*(s.ttft_ms for s in per_rank))],
        tpot_ms=[max(xs) for xs in zip(*(s.tpot_ms for s in per_rank))],
        itl_ms=[max(xs) for xs in zip(*(s.itl_ms for s in per_rank))],
        energy_j=energy_j, energy_source=source, energy_scope=scope, contention=contention,
        energy_window_s=[max(xs) for xs in zip(*(s.energy_window_s for s in per_rank))],
    )


def rank_info(ctx: ParallelContext) -> Optional[list[dict[str, Any]]]:
    """Who every rank is (host, local rank, mesh coordinates, device), on rank 0; None elsewhere."""
    dev = ctx.device
    if dev == "cuda":
        import torch

        dev = f"cuda:{ctx.local_rank} ({torch.cuda.get_device_name(ctx.local_rank)})"
    mine = {"rank": ctx.rank, "local_rank": ctx.local_rank, "host": platform.node(), "pid": os.getpid(),
            "device": dev, "mesh": ctx.coords, "timings": []}
    with watched("gather", profile=False, limit_s=1.5 * ctx.setup_timeout_s):
        return gather_to_rank0(mine, ctx.rank, ctx.world_size, ctx.control)


def gather_samples(ctx: ParallelContext, samples: GenerationSamples) -> Optional[list[GenerationSamples]]:
    """Every rank's samples for one model × batch size, in rank order, on rank 0; None elsewhere."""
    with watched("gather", profile=False, limit_s=1.5 * ctx.setup_timeout_s):
        got = gather_to_rank0(samples.__dict__, ctx.rank, ctx.world_size, ctx.control)
    return None if got is None else [GenerationSamples(**g) for g in got]


def rank_timing(model: str, batch: int, local_batch: int, s: GenerationSamples) -> dict[str, Any]:
    """One rank's entry for one model × batch size in the result's `ranks[i].timings`."""
    return {
        "model": model, "batch_size": batch, "local_batch": local_batch,
        "ttft_ms": stat(s.ttft_ms, "measured", "ms"), "tpot_ms": stat(s.tpot_ms, "measured", "ms"),
        "itl_ms": stat(s.itl_ms, "measured", "ms"),
    }
