"""The document `moebench project` prints: a model projected onto catalog hardware — per hardware the projected
records (shaped like measured ones, basis `projected`), the best point at each interactivity target, and the
frontier. moebench.report.sources shows each hardware entry as a result document of kind `projection`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Optional

from moebench import __version__
from moebench.errors import BadInput
from moebench.projection.sweep import DEFAULT_BATCHES, point_json
from moebench.results import load_result, make_record, stat


def _stat(value: Optional[float], unit: str) -> Optional[dict[str, Any]]:
    return None if value is None else stat([value], "projected", unit)


def _record(model: str, p, dev, sc, calib_source: Optional[str], serving: str = "continuous") -> dict[str, Any]:
    """A projected row shaped like a measured result record (results/README.md), with basis `projected`."""
    j = point_json(p, dev, phases=True)
    cost = j["usd_per_mtok"]
    return make_record(
        model=model, kind=None, basis="projected", serving=serving, batch_size=p.batch,
        prompt_tokens=sc.prompt_tokens, output_tokens=sc.output_tokens,
        hardware_id=dev.id,
        calibration_source=calib_source,
        layout=j["layout"],
        cost={"usd_per_gpu_hour": dev.usd_per_gpu_hour, "tier": dev.price_tier, "source": dev.price_source,
              "n_gpus": p.layout.n_gpus},
        metrics={
            "ttft_ms": _stat(p.ttft_ms, "ms"),
            "tpot_ms": _stat(p.tpot_ms, "ms"),
            "interactivity_tokens_per_s_per_user": _stat(p.interactivity, "tokens/s/user"),
            "output_tokens_per_s_per_gpu": _stat(j["output_tokens_per_s_per_gpu"], "tokens/s/gpu"),
            "total_tokens_per_s_per_gpu": _stat(j["total_tokens_per_s_per_gpu"], "tokens/s/gpu"),
            "decode_tokens_per_s_per_gpu": _stat(j["decode_tokens_per_s_per_gpu"], "tokens/s/gpu"),
            "usd_per_mtok": None if cost is None else {k: _stat(cost[k], "USD/Mtok") for k in ("input", "output", "blended")},
        },
        phases=j["phases"],
        memory=j["memory"],
    )


def projection_document(
    *, model: str, hardware: list[str], batches: list[int], prompt: int, output: int, dtype: str, kv_dtype: str,
    calibrate_path: Optional[Path], price_tier: Optional[str], price: Optional[float], interactivity: list[float],
    overlap: str, serving: str, max_gpus: int, keep_host: bool = False, log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """The `moebench project` document: per hardware, the projected records (shaped like measured ones, basis
    `projected`), the best point at each interactivity target and the frontier. `log` gets progress lines."""
    hardware = list(dict.fromkeys(hardware))  # a repeated id would only repeat its section
    if not hardware:
        raise BadInput("--hardware: give at least one catalog id")
    # the same rule as a workload's price (tier or usd_per_gpu_hour): a given price has no tier to pick
    if price is not None and price_tier is not None:
        raise BadInput("--price and --price-tier: give either, not both")
    if price is not None and not math.isfinite(price):
        raise BadInput(f"--price: {price} is not a finite number")
    if keep_host and calibrate_path is None:
        raise BadInput("--keep-host-time carries a calibration's host times: it needs --calibrate")
    from moebench.catalog import get_hardware
    from moebench.projection import Assumptions, ServingScenario, calibrate, device_from_hardware, project, resolve_config

    cfg = resolve_config(model)
    sc = ServingScenario(prompt, output, weight_dtype=dtype, kv_dtype=kv_dtype)
    base = Assumptions(comm_overlap=1.0 if overlap == "full" else 0.0, serving=serving)  # type: ignore[arg-type]
    calib, calib_roofs = None, None
    if calibrate_path is not None:
        measured = load_result(calibrate_path)
        calib = calibrate(measured, source=str(calibrate_path), base=base)
        calib_roofs = (measured.get("hardware") or {}).get("measured_roofs")
        log(f"calibrated from {calib.source}: compute {calib.efficiency.compute:.3g}, memory {calib.efficiency.memory:.3g} "
            f"of the {calib.device.roofs_basis} roofs ({calib.method})")
    doc: dict[str, Any] = {
        "kind": "projection",
        "moebench_version": __version__,
        "basis": "projected",
        "model": model,
        "params": {"total": cfg.total_params(), "active": cfg.active_params()},
        "scenario": {"prompt_tokens": prompt, "output_tokens": output, "weight_dtype": sc.weight_dtype,
                     "kv_dtype": sc.kv_dtype, "batch_sizes": batches, "interactivity_targets": interactivity},
        "assumptions": base.to_json(),
        "calibration": None if calib is None else calib.to_json(),
        "hardware": [],
    }
    for hid in hardware:
        hw = get_hardware(hid)
        # back onto the machine it was measured on (a CPU has no catalog peaks): the roofs measured there
        roofs = calib_roofs if calib is not None and hid == calib.hardware_id else None
        dev = device_from_hardware(hw, price_tier=price_tier, usd_per_gpu_hour=price, measured_roofs=roofs)
        a = base if calib is None else calib.assumptions(base, dev.id, keep_host=keep_host)
        log(f"projecting {model} onto {dev.id} …")
        proj = project(cfg, dev, sc, a, batches=sorted(set(DEFAULT_BATCHES) | set(batches)), max_gpus=max_gpus)
        src = None if calib is None else calib.source
        doc["hardware"].append({
            "id": dev.id,
            "name": dev.name,
            "roofs": {"flops_per_s": dict(dev.flops_per_s), "hbm_bytes_per_s": dev.hbm_bytes_per_s,
                      "hbm_capacity_bytes": dev.hbm_capacity_bytes, "scale_up_bytes_per_s": dev.scale_up_bytes_per_s,
                      "domain_size": dev.domain_size, "scale_out_bytes_per_s": dev.scale_out_bytes_per_s},
            "price": {"usd_per_gpu_hour": dev.usd_per_gpu_hour, "tier": dev.price_tier, "source": dev.price_source},
            "min_gpus": proj.min_gpus,
            "notes": proj.notes,
            "records": [_record(model, p, dev, sc, src, serving) for b in batches if (p := proj.for_batch(b)) is not None],
            "unfit_batch_sizes": [b for b in batches if proj.for_batch(b) is None],
            "at_interactivity": [
                {"target_tokens_per_s_per_user": x, "basis": "projected", "calibration_source": src,
                 "point": None if (p := proj.at_interactivity(x)) is None else point_json(p, dev)}
                for x in interactivity
            ],
            "frontier": [point_json(p, dev) for p in proj.frontier()],
        })
    return doc


