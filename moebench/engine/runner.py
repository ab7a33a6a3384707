"""`moebench run` for model workloads: resolve device/hardware/price, build each model, time each batch size,
write the result atomically after every model (so a failure leaves a partial file, never lost results).

Distributed runs (moebench.parallel) go through the same path: each rank builds the model and keeps its shard,
times its slice of the batch, and rank 0 merges every rank's timings into the one result it writes."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch

from moebench.arith import dtype_bytes
from moebench.catalog import Hardware, get_hardware
from moebench.device import detect_hardware, resolve_device, resolve_dtype
from moebench.engine.batch import measure_batch
from moebench.engine.device import compute_roof_flops, measure_roofs
from moebench.engine.gather import gather_samples, merge_samples, rank_info, rank_timing
from moebench.engine.generate import GenerationBench, GenerationSamples, prompt_ids, time_generation
from moebench.engine.records import Peaks, build_record
from moebench.errors import EnvironmentProblem, MoebenchError
from moebench.machine import contended, contention_summary, cpu_oversubscription, local_ranks, usable_cpus
from moebench.models import build, entry_arch
from moebench.outdir import save_result, save_stopped
from moebench.results import file_stem, new_doc, new_run_id, write_result
from moebench.parallel.faults import Guard, install_test_faults
from moebench.parallel.mesh import ParallelContext, check_plan, env_rank, init_parallel
from moebench.parallel.plan import local_batch, parallelize
from moebench.pricing import Pricing, resolve_intelligence as intelligence_of, resolve_pricing as pricing_of
from moebench.progress import QUIET, Advance, Progress
from moebench.routing import install_routing
from moebench.workload import ModelEntry, Workload

Log = Callable[[str], None]


def resolve_pricing(wl: Workload, hw: Hardware) -> Pricing:
    return pricing_of(wl.price, hw, wl.parallel.world_size)


def resolve_intelligence(wl: Workload, entry: ModelEntry) -> Optional[dict[str, Any]]:
    return intelligence_of(entry.intelligence or wl.intelligence, entry.name)


def check_memory(name: str, cfg, *, batch: int, max_seq: int, dtype_bytes: int, device: str,
                 ranks_here: int = 1) -> None:
    try:
        from moebench.models.memory import check_fits
    except ImportError:  # the model zoo provides it; older trees run without the check
        return
    check_fits(name, cfg, batch=batch, max_seq=max_seq, dtype_bytes=dtype_bytes, device=device, ranks_here=ranks_here)


def run_workload(
    wl: Workload,
    *,
    device: Optional[str] = None,
    out_dir: str | Path = "results/runs",
    workload_path: Optional[str] = None,
    log: Log = lambda s: None,
    progress: Progress = QUIET,
) -> tuple[dict[str, Any], Path]:
    """Run every model × batch size of `wl`; returns (result document, its path).

    In a distributed run (a launcher started `parallel.world_size` ranks) every rank runs this; rank 0 gathers
    the ranks' timings and alone writes the result. A failure on any rank ends the run with exit 5 and a
    partial result (moebench.parallel.faults).
    """
    dev = resolve_device(device or wl.device)
    source = workload_path or wl.name
    with _rank0_speaks():
        ctx = init_parallel(wl.parallel, dev, source)
        archs = [entry_arch(e.name, e.weights, e.layers)[1] for e in wl.model_entries]  # a checkpoint: its config.json
        if ctx is not None:
            for entry, cfg in zip(wl.model_entries, archs):
                check_plan(ctx.layout, cfg, entry.name, wl.scenario.batch_sizes, source)
    guard = Guard(ctx).start() if ctx is not None else None
    rank0 = ctx is None or ctx.is_rank0
    dtype = resolve_dtype(wl.dtype, dev)
    dtype_name = str(dtype).removeprefix("torch.")
    hid = detect_hardware(dev) if wl.hardware == "auto" else wl.hardware
    hw = get_hardware(hid)
    if dev == "cpu" and hw.id != "cpu":  # device auto found no GPU: the named GPU's price and roofs would not apply
        raise EnvironmentProblem(f"{source}: hardware: {hw.id} is a GPU, but this machine has none (the run would be "
                                 "on cpu); set hardware: auto, or run where the GPU is")
    pricing = resolve_pricing(wl, hw)

    from moebench.models.common.ops import set_backend

    backend = set_backend(wl.kernels, dev)
    torch.manual_seed(wl.seed)
    run_id = file_stem(os.environ.get("MOEBENCH_RUN_ID") or new_run_id(wl.name))
    path = Path(out_dir) / f"{run_id}.json"
    doc: dict[str, Any] = {}

    def save_partial(error: str, failed_ranks: list[int]) -> Optional[Path]:
        if not doc:
            return None
        doc.update(complete=False, error=error, failed_ranks=failed_ranks)
        return save_result(path, doc)

    dbytes = dtype_bytes(dtype_name)
    here = local_ranks(ctx.world_size) if ctx is not None else 1
    for entry, cfg in zip(wl.model_entries, archs):  # before anything is measured: not fitting is bad input (exit 3)
        check_memory(entry.name, cfg, batch=max(wl.scenario.batch_sizes),
                     max_seq=wl.scenario.prompt_tokens + wl.scenario.output_tokens, dtype_bytes=dbytes, device=dev,
                     ranks_here=here or 1)

    if ctx is not None and dev == "cpu" and rank0:
        note = cpu_oversubscription(here, torch.get_num_threads(), usable_cpus()) if here else None
        if note:
            log(f"note: {note}")
    try:
        roofs = None
        if rank0 and wl.roofs:  # one rank measures: the others would compete with it for the same CPU or node
            log(f"measuring roofs on {dev} …")
            roofs = measure_roofs(dev, dtype)
        if ctx is not None:
            ctx.barrier()
        doc.update(new_doc(
            kind="engine", run_id=run_id, workload_path=workload_path, workload=wl.model_dump(mode="json"),
            hardware=_hardware_section(hw, dev, dtype_name, wl, backend, pricing, roofs),
            world_size=wl.parallel.world_size,
        ))
        if ctx is not None:
            guard.save = save_partial
            ranks = rank_info(ctx)
            if rank0:
                doc["parallel"] = {**wl.parallel.model_dump(mode="json"), "data": wl.parallel.data,
                                   "backend": ctx.backend, "attention_replicas": ctx.layout.batch_slices}
                doc["ranks"] = ranks
                save_result(path, doc)
        rounds = wl.timing.schedule == "interleaved"  # one repeat of every model × batch size per round
        with progress.phase("rounds" if rounds else "models × batch sizes",
                            wl.timing.repeats if rounds else len(wl.model_entries) * len(wl.scenario.batch_sizes)) as advance:
            _run_models(wl, doc, ctx, dev=dev, dtype=dtype, pricing=pricing, roofs=roofs, hw=hw, path=path, log=log,
                        guard=guard, advance=advance)
        if rank0:
            # checked against the schema once, when whole; before the teardown, which gloo sometimes aborts, and
            # under the guard, so that --out refusing this last write fails the ranks like any other
            save_result(path, {**doc, "complete": True}, write=lambda p, d: write_result(d, p.parent, p.stem))
            doc["complete"] = True
    except BaseException as exc:  # save what was measured, whatever stopped the run
        if guard is not None:
            guard.fail(exc)  # rank 0 saves; every rank exits 5 with the culprit named (never returns)
        save_stopped(exc, doc, path)  # raises the one-line error of an interrupt or of running out of memory
        raise
    if guard is not None:
        guard.stop()
        guard.finish()
    return doc, path


def _hardware_section(hw: Hardware, dev: str, dtype_name: str, wl: Workload, backend: Any, pricing: Pricing,
                      roofs: Optional[dict[str, Any]]) -> dict[str, Any]:
    return {
        **hw.model_dump(mode="json", include={"id", "name", "vendor", "arch", "peak_tflops", "hbm_tbps", "hbm_gb"}),
        "device": dev,
        "dtype": dtype_name,
        "n_devices": wl.parallel.world_size,
        "kernels": getattr(backend, "label", wl.kernels),
        "price": {"usd_per_gpu_hour": pricing.usd_per_gpu_hour, "tier": pricing.tier, "source": pricing.source},
        "measured_roofs": roofs,
    }


def _run_models(wl: Workload, doc: dict[str, Any], ctx: Optional[ParallelContext], *, dev: str, dtype: torch.dtype,
                pricing: Pricing, roofs: Optional[dict[str, Any]], hw: Hardware, path: Path, log: Log,
                guard: Optional[Guard] = None, advance: Advance = lambda: None) -> None:
    """Build each model (sharded when distributed), time each batch size, append records; rank 0 writes."""
    dtype_name = str(dtype).removeprefix("torch.")
    rank0 = ctx is None or ctx.is_rank0
    # the deployment's peaks: the records divide the whole run's bytes and FLOPs per second by them, and every rank
    # has a device (or, on CPU, its share of the cores, which the one rank that measured the roofs ran with)
    n = wl.parallel.world_size

    def times_n(x: Optional[float]) -> Optional[float]:
        return None if x is None else x * n

    peaks = Peaks(
        flops=times_n(hw.peak_flops(dtype_name)),
        bytes_per_s=times_n(hw.hbm_bytes_per_s),
        roof_flops=times_n(compute_roof_flops(roofs)) if roofs else None,
        roof_bytes_per_s=times_n(roofs["mem_gbps"] * 1e9) if roofs else None,
    )
    sc = wl.scenario

    def add_record(entry: ModelEntry, spec, cfg, b: int, samples: GenerationSamples,
                   profile: Optional[dict[str, Any]] = None) -> None:
        doc["records"].append(build_record(
            name=entry.name, kind=spec.kind, run_cfg=cfg, samples=samples, batch=b,
            prompt=sc.prompt_tokens, output=sc.output_tokens, dtype_bytes=dtype_bytes(dtype_name),
            pricing=pricing, peaks=peaks, intelligence=resolve_intelligence(wl, entry),
            energy_j_per_repeat=samples.energy_j, energy_source=samples.energy_source,
            energy_scope=samples.energy_scope,
            decode={"mode": samples.decode_mode, "note": samples.note},
            weights=entry.weights,  # "random", or the checkpoint directory
            # rank 0: every rank's regions, waits and expert load, merged
            **({"profile": profile} if profile is not None else {}),
        ))
        doc["contention"] = contention_summary(doc["records"])
        busy = contended(doc["records"][-1])
        if busy:
            log(f"  note: timed on a busy machine: {busy}")
        if samples.note:
            log(f"  note: {samples.note}")

    if wl.timing.schedule == "interleaved":  # single process, no profile (the workload validates it)
        _run_interleaved(wl, dev=dev, dtype=dtype, log=log, add_record=add_record, advance=advance)
        save_result(path, doc)
        return

    for entry in wl.model_entries:
        spec, cfg, model = _build_model(entry, wl, dev=dev, dtype=dtype, log=log)
        if guard is not None:
            guard.stage = f"{entry.name} setup"
        if ctx is not None:
            model = parallelize(model, ctx)
            install_test_faults(model, ctx.rank)
        for b in sc.batch_sizes:
            if guard is not None:
                guard.stage = f"{entry.name} batch {b}"
            log(f"  {entry.name} batch {b}: prefill {sc.prompt_tokens} + decode {sc.output_tokens} × {wl.timing.repeats} repeats")
            ids = prompt_ids(b, sc.prompt_tokens, cfg.vocab_size, wl.seed, dev)
            if ctx is not None:
                ids = local_batch(ids, ctx)
            # the workload's `routing` override, and with `profile: true` every phase timed (moebench.profile)
            samples, profile = measure_batch(
                wl, model, ctx, device=dev, results_path=path, name=entry.name, batch=b, log=log,
                generate=lambda: time_generation(
                    model, batch=ids.shape[0], prompt=sc.prompt_tokens, output=sc.output_tokens,
                    warmup=wl.timing.warmup, repeats=wl.timing.repeats, device=dev, seed=wl.seed,
                    barrier=None if ctx is None else ctx.barrier, ids_BS=ids,
                    cuda_graph=_use_cuda_graph(wl, ctx),
                ),
            )
            if ctx is not None:
                per_rank = gather_samples(ctx, samples)
                if per_rank is None:
                    continue
                for info, s in zip(doc["ranks"], per_rank):
                    info["timings"].append(rank_timing(entry.name, b, ids.shape[0], s))
                samples = merge_samples(per_rank)
            add_record(entry, spec, cfg, b, samples, profile)
            advance()
            if rank0 and ctx is not None:  # distributed: save after every record, a rank may die any time
                save_result(path, doc)
        del model
        _release_cached_memory(dev)
        if rank0:
            save_result(path, doc)


def _use_cuda_graph(wl: Workload, ctx: Optional[ParallelContext]) -> bool:
    return wl.cuda_graph and ctx is None and not wl.profile and wl.routing == "model"


def _release_cached_memory(dev: str) -> None:
    if dev == "cuda":  # hand the cached blocks back, so the next model's memory check sees them as free
        import gc

        gc.collect()
        torch.cuda.empty_cache()


def _build_model(entry: ModelEntry, wl: Workload, *, dev: str, dtype: torch.dtype, log: Log):
    """(spec, cfg, model): a checkpoint's weights, or random weights."""
    from moebench.models.checkpoint import load_checkpoint

    spec, cfg = entry_arch(entry.name, entry.weights, entry.layers)  # its memory was checked before any timing
    what = "random weights" if entry.weights == "random" else f"weights from {entry.weights}"
    log(f"building {entry.name} ({cfg.num_hidden_layers} of {cfg.layers_total} layers, {what}, "
        f"{str(dtype).removeprefix('torch.')}, {dev}) …")
    if entry.weights != "random":
        return spec, cfg, load_checkpoint(entry.weights, layers=entry.layers, device=dev, dtype=dtype)
    return spec, cfg, build(spec, cfg, device=dev, dtype=dtype, seed=wl.seed)


def _run_interleaved(wl: Workload, *, dev: str, dtype: torch.dtype, log: Log, add_record: Callable[..., None],
                     advance: Advance = lambda: None) -> None:
    """Every model × batch size warmed up first, then the repeats in rounds, one repeat of each per round: a
    burst of load on the machine costs every record a few samples instead of costing one record all of its own."""
    sc = wl.scenario
    with contextlib.ExitStack() as stack:
        benches = []
        for entry in wl.model_entries:
            spec, cfg, model = _build_model(entry, wl, dev=dev, dtype=dtype, log=log)
            stack.callback(install_routing(model, wl.routing, seed=wl.seed, rank=0))
            for b in sc.batch_sizes:
                ids = prompt_ids(b, sc.prompt_tokens, cfg.vocab_size, wl.seed, dev)
                bench = GenerationBench(model, ids, output=sc.output_tokens, device=dev,
                                        cuda_graph=_use_cuda_graph(wl, None))
                bench.run(wl.timing.warmup, timed=False)
                benches.append((entry, spec, cfg, b, bench))
        log(f"  {len(benches)} model × batch pairs: prefill {sc.prompt_tokens} + decode {sc.output_tokens}, "
            f"{wl.timing.repeats} rounds of one repeat each (interleaved)")
        for _ in range(wl.timing.repeats):
            for *_, bench in benches:
                bench.run(1)
            advance()
        for entry, spec, cfg, b, bench in benches:
            add_record(entry, spec, cfg, b, bench.samples)
    _release_cached_memory(dev)


@contextlib.contextmanager
def _rank0_speaks() -> Iterator[None]:
    """Setup errors are the same on every rank: only rank 0 prints the line; the others exit with its code."""
    try:
        yield
    except MoebenchError as exc:
        if env_rank() != 0:
            raise SystemExit(int(exc.code)) from None
        raise
