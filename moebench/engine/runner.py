"""`moebench run` for model workloads: resolve device/hardware/price, build each model, time each batch size,
write the result atomically after every model (so a failure leaves a partial file, never lost results)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from moebench.catalog import Hardware, get_hardware, reference_models
from moebench.engine.device import detect_hardware, measure_roofs, resolve_device, resolve_dtype
from moebench.engine.generate import time_generation
from moebench.engine.records import Peaks, Pricing, build_record
from moebench.errors import RunFailed
from moebench.models import build, resolve_name
from moebench.models.config import DTYPE_BYTES
from moebench.results import SCHEMA_VERSION, environment, new_run_id, write_atomic
from moebench.workload import ModelEntry, Workload

Log = Callable[[str], None]


def resolve_pricing(wl: Workload, hw: Hardware) -> Pricing:
    n = wl.parallel.world_size
    if wl.price.usd_per_gpu_hour is not None:
        return Pricing(wl.price.usd_per_gpu_hour, "explicit", "workload price.usd_per_gpu_hour", n, hw.allin_kw_per_gpu)
    p = hw.price(wl.price.tier)
    if p is None:
        if wl.price.fallback_usd_per_gpu_hour is not None:
            return Pricing(wl.price.fallback_usd_per_gpu_hour, "user-set", f"workload price.fallback_usd_per_gpu_hour ({hw.id} has no catalog price)", n, None)
        return Pricing(None, None, None, n, hw.allin_kw_per_gpu)
    return Pricing(p.usd_per_gpu_hour, p.tier, f"{p.source} ({p.date})", n, hw.allin_kw_per_gpu)


def resolve_intelligence(wl: Workload, entry: ModelEntry) -> Optional[dict[str, Any]]:
    spec = entry.intelligence or wl.intelligence
    if spec.score is not None:
        return {"score": spec.score, "index": spec.index, "version": spec.version, "source": "workload (explicit score)"}
    ref = reference_models().get(entry.name)
    s = ref.score(spec.version) if ref else None
    if s is None or s.index != spec.index:
        return None
    return {"score": s.score, "index": s.index, "version": s.version, "scored_as": s.scored_as, "source": s.source}


def check_memory(name: str, cfg, *, batch: int, max_seq: int, dtype_bytes: int, device: str) -> None:
    try:
        from moebench.models.memory import check_fits
    except ImportError:  # the model zoo provides it; older trees run without the check
        return
    check_fits(name, cfg, batch=batch, max_seq=max_seq, dtype_bytes=dtype_bytes, device=device)


def run_workload(
    wl: Workload,
    *,
    device: Optional[str] = None,
    out_dir: str | Path = "results/runs",
    workload_path: Optional[str] = None,
    log: Log = lambda s: None,
) -> tuple[dict[str, Any], Path]:
    dev = resolve_device(device or wl.device)
    dtype = resolve_dtype(wl.dtype, dev)
    dtype_name = str(dtype).removeprefix("torch.")
    hid = detect_hardware(dev) if wl.hardware == "auto" else wl.hardware
    hw = get_hardware(hid)
    pricing = resolve_pricing(wl, hw)

    from moebench.models.common.ops import set_backend

    backend = set_backend(wl.kernels, dev)
    torch.manual_seed(wl.seed)
    log(f"measuring roofs on {dev} …")
    roofs = measure_roofs(dev, dtype)
    peaks = Peaks(
        flops=hw.peak_flops(dtype_name),
        bytes_per_s=hw.hbm_bytes_per_s,
        roof_flops=roofs["matmul_gflops"] * 1e9,
        roof_bytes_per_s=roofs["mem_gbps"] * 1e9,
    )
    run_id = new_run_id(wl.name)
    path = Path(out_dir) / f"{run_id}.json"
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "complete": False,
        "kind": "model",
        "run_id": run_id,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "workload_path": workload_path,
        "workload": wl.model_dump(mode="json"),
        "hardware": {
            **hw.model_dump(mode="json", include={"id", "name", "vendor", "arch", "peak_tflops", "hbm_tbps", "hbm_gb"}),
            "device": dev,
            "dtype": dtype_name,
            "n_devices": wl.parallel.world_size,
            "kernels": getattr(backend, "name", wl.kernels),
            "price": {"usd_per_gpu_hour": pricing.usd_per_gpu_hour, "tier": pricing.tier, "source": pricing.source},
            "measured_roofs": roofs,
        },
        "environment": environment(),
        "world_size": wl.parallel.world_size,
        "records": [],
    }
    dbytes = DTYPE_BYTES[dtype_name]
    try:
        for entry in wl.model_entries:
            if entry.weights != "random":
                from moebench.models import load

                model = load(entry.weights, layers=entry.layers, device=dev, dtype=dtype)
                spec, _ = resolve_name(entry.name)
                cfg = model.cfg
            else:
                spec, cfg = resolve_name(entry.name)
                cfg = cfg.with_layers(entry.layers)
                check_memory(
                    entry.name, cfg, batch=max(wl.scenario.batch_sizes),
                    max_seq=wl.scenario.prompt_tokens + wl.scenario.output_tokens, dtype_bytes=dbytes, device=dev,
                )
                log(f"building {entry.name} ({cfg.num_hidden_layers} of {cfg.layers_total} layers, {dtype_name}, {dev}) …")
                model = build(spec, cfg, device=dev, dtype=dtype, seed=wl.seed)
            intel = resolve_intelligence(wl, entry)
            for b in wl.scenario.batch_sizes:
                log(f"  {entry.name} batch {b}: prefill {wl.scenario.prompt_tokens} + decode {wl.scenario.output_tokens} × {wl.timing.repeats} repeats")
                samples = time_generation(
                    model, batch=b, prompt=wl.scenario.prompt_tokens, output=wl.scenario.output_tokens,
                    warmup=wl.timing.warmup, repeats=wl.timing.repeats, device=dev, seed=wl.seed,
                )
                doc["records"].append(build_record(
                    name=entry.name, kind=spec.kind, run_cfg=cfg, samples=samples, batch=b,
                    prompt=wl.scenario.prompt_tokens, output=wl.scenario.output_tokens, dtype_bytes=dbytes,
                    pricing=pricing, peaks=peaks, intelligence=intel,
                ))
            del model
            write_atomic(path, doc)
    except BaseException as exc:  # save what was measured, whatever stopped the run
        doc["error"] = f"{type(exc).__name__}: {exc}"
        write_atomic(path, doc)
        if isinstance(exc, torch.OutOfMemoryError):
            raise RunFailed(f"out of memory: {exc}; partial results in {path}", partial_path=str(path)) from exc
        raise
    doc["complete"] = True
    write_atomic(path, doc)
    return doc, path
