"""The engine's one call per (model, batch size): workload routing, and profiling when the workload asks for it.

    samples, profile = measure_batch(wl, model, ctx, device=dev, results_path=path, name=entry.name, batch=b,
                                     generate=lambda: time_generation(...), log=log)

`generate` runs the engine's timed generation and returns its samples. With `profile: false` this is
`generate()` under the workload's `routing` override. With `profile: true` it runs `generate` twice, side by side:
once with profiling paused (the overhead baseline, same routing) and once profiled; every rank must call it
(clock sync and gathering are collective); rank 0 gets the `profile` section, the others None. Kineto traces go
next to the results file: `<results stem>/<model>-b<batch>/trace_rank{r}.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from moebench.results import file_stem
from moebench.routing import install_routing


def _ctx_args(ctx: Any) -> dict[str, Any]:
    """ProfileSession arguments from the engine's ParallelContext (duck-typed), or a single process."""
    if ctx is None:
        return {"rank": 0, "world_size": 1}
    args: dict[str, Any] = {"rank": ctx.rank, "world_size": ctx.world_size, "control_group": ctx.control}
    layout = getattr(ctx, "layout", None)
    if layout is not None:  # the ranks of one batch slice (a tensor-parallel group) route the same tokens
        args["token_slice"] = layout.batch_slice(ctx.rank)
    ep, dense = getattr(ctx, "ep", None), getattr(ctx, "dense", None)
    groups = {}
    if ep is not None and ep.size > 1:
        groups.update(dispatch=ep.pg, combine=ep.pg)
    if dense is not None and dense.size > 1:
        groups["allreduce"] = dense.pg
    args["groups"] = groups
    return args


def trace_dir_for(results_path: Path, name: str, batch: int) -> Path:
    return Path(results_path).with_suffix("") / f"{file_stem(name)}-b{batch}"


def measure_batch(
    wl: Any,
    model: Any,
    ctx: Any,
    *,
    device: str,
    results_path: Path,
    name: str,
    batch: int,
    generate: Callable[[], Any],
    log: Callable[[str], None] = lambda s: None,
) -> tuple[Any, Optional[dict[str, Any]]]:
    """(samples, profile section or None); see the module docstring."""
    rank = 0 if ctx is None else ctx.rank
    restore = install_routing(model, wl.routing, seed=wl.seed, rank=rank)
    try:
        if not wl.profile:
            return generate(), None
        from moebench.profile.session import ProfileSession

        with ProfileSession(wl, model, device=device, trace_dir=trace_dir_for(results_path, name, batch),
                            **_ctx_args(ctx)) as prof:
            with prof.paused():
                plain = generate()
            samples = generate()
            section = prof.finish(overhead=(_local_batch(samples, batch, ctx), plain.tpot_ms, samples.tpot_ms))
        if section is not None:
            section["model"], section["batch_size"] = name, batch
            main = section["where_the_time_goes"].get("decode") or {}
            share = main.get("share", {})
            log("  where the time goes (decode): " + " · ".join(f"{k} {100 * v:.0f}%" for k, v in share.items())
                + f" — {section['attribution']}")
        return samples, section
    finally:
        restore()


def _local_batch(samples: Any, batch: int, ctx: Any) -> int:
    """Sequences this rank decodes per step (its slice of the batch when attention is data-parallel)."""
    if ctx is None:
        return batch
    slices = getattr(getattr(ctx, "layout", None), "batch_slices", None)
    return max(1, batch // slices) if slices else batch
