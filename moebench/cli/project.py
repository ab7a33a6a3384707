"""`moebench project`: what a model would do on hardware you do not own — layout, tokens/s per GPU at stated
interactivity, $/M tokens — from the analytic model in moebench.projection, optionally calibrated by a run."""

from __future__ import annotations

import enum
import math
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from moebench.cli._output import emit_json, fmt, log, out
from moebench.errors import BadInput

DEFAULT_HARDWARE = "h100_sxm,h200_sxm,b200,gb200_nvl72"


class WeightDtype(str, enum.Enum):
    bf16 = "bf16"
    fp8 = "fp8"
    fp4 = "fp4"


class KvDtype(str, enum.Enum):
    bf16 = "bf16"
    fp8 = "fp8"


class Engine(str, enum.Enum):
    any = "any"
    vllm = "vllm"
    sglang = "sglang"
    trt_llm = "trt-llm"


class Preset(str, enum.Enum):
    fitted = "fitted"
    defaults = "defaults"


class Serving(str, enum.Enum):
    continuous = "continuous"
    static = "static"


def _numbers(text: str, option: str, kind: type) -> list:
    vals = []
    for part in text.split(","):
        try:
            v = kind(part.strip())
        except ValueError:
            v = None
        if v is None or not (math.isfinite(v) and v > 0):  # float() takes "nan" and "inf"
            raise BadInput(f"{option}: {part.strip()!r} is not a finite positive number")
        vals.append(v)
    return vals


def _overlap(text: str) -> float:
    """`none`, `full` or the fraction of communication hidden behind compute."""
    named = {"none": 0.0, "full": 1.0}
    if text.strip().lower() in named:
        return named[text.strip().lower()]
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not 0.0 <= v <= 1.0:
        raise BadInput(f"--overlap: {text!r} is not none, full or a fraction in [0, 1]")
    return v


def _stat(value: Optional[float], unit: str) -> Optional[dict[str, Any]]:
    from moebench.results import stat

    return None if value is None else stat([value], "projected", unit)


def _record(model: str, p, dev, sc, calib_source: Optional[str]) -> dict[str, Any]:
    """A projected row shaped like a measured result record (results/README.md), with basis `projected`."""
    from moebench.projection.sweep import point_json

    j = point_json(p, dev, phases=True)
    cost = j["usd_per_mtok"]
    return {
        "model": model,
        "hardware_id": dev.id,
        "batch_size": p.batch,
        "prompt_tokens": sc.prompt_tokens,
        "output_tokens": sc.output_tokens,
        "basis": "projected",
        "calibration_source": calib_source,
        "layout": j["layout"],
        "cost": {"usd_per_gpu_hour": dev.usd_per_gpu_hour, "tier": dev.price_tier, "source": dev.price_source,
                 "n_gpus": p.layout.n_gpus},
        "metrics": {
            "ttft_ms": _stat(p.ttft_ms, "ms"),
            "tpot_ms": _stat(p.tpot_ms, "ms"),
            "interactivity_tokens_per_s_per_user": _stat(p.interactivity, "tokens/s/user"),
            "output_tokens_per_s_per_gpu": _stat(j["output_tokens_per_s_per_gpu"], "tokens/s/gpu"),
            "total_tokens_per_s_per_gpu": _stat(j["total_tokens_per_s_per_gpu"], "tokens/s/gpu"),
            "decode_tokens_per_s_per_gpu": _stat(j["decode_tokens_per_s_per_gpu"], "tokens/s/gpu"),
            "usd_per_mtok": None if cost is None else {k: _stat(cost[k], "USD/Mtok") for k in ("input", "output", "blended")},
        },
        "phases": j["phases"],
        "memory": j["memory"],
    }


def run_projection(
    *, model: str, hardware: list[str], batches: list[int], prompt: int, output: int, dtype: str, kv_dtype: str,
    calibrate_path: Optional[Path], price_tier: Optional[str], price: Optional[float], interactivity: list[float],
    overlap: float, serving: str, max_gpus: int, keep_host: bool = False, gpus: Optional[int] = None,
    layout: Optional[str] = None, mem_util: float = 0.9, engine: str = "any", preset: str = "fitted",
    expert_imbalance: Optional[float] = None, spec_tokens: int = 0, spec_accept: float = 0.0,
    rates: tuple[float, ...] = (), offline: bool = False,
) -> dict[str, Any]:
    """The whole `project` command as one pure-ish function returning the JSON document."""
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
    from moebench import __version__
    from moebench.catalog import get_hardware
    from moebench.projection import Assumptions, Scenario, calibrate, device_from_hardware, project, resolve_config
    from moebench.projection.sweep import DEFAULT_BATCHES, point_json

    from moebench.projection import presets as presets_
    from moebench.projection.layout import parse_layout
    from moebench.projection.load import under_load

    if not 0.0 < mem_util <= 1.0:
        raise BadInput(f"--mem-util: {mem_util} is not a fraction in (0, 1]")
    if spec_tokens and not 0.0 <= spec_accept <= 1.0:
        raise BadInput(f"--spec-accept: {spec_accept} is not a probability")
    fixed = parse_layout(layout) if layout else None
    if fixed is not None and gpus is not None and fixed.n_gpus != gpus:
        raise BadInput(f"--gpus {gpus} and --layout {layout} ({fixed.n_gpus} GPUs) disagree")
    cfg = resolve_config(model)
    sc = Scenario(prompt, output, weight_dtype=dtype, kv_dtype=kv_dtype)
    base = Assumptions(comm_overlap=overlap, serving=serving, mem_util=mem_util,  # type: ignore[arg-type]
                       spec_tokens=spec_tokens, spec_accept=spec_accept)
    table = presets_.builtin() if preset == "fitted" and calibrate_path is None else None
    calib, calib_roofs, moved = None, None, {}
    if calibrate_path is not None:
        from moebench.results import load_result

        measured = load_result(calibrate_path)
        calib = calibrate(measured, source=str(calibrate_path), base=base)
        calib_roofs = (measured.get("hardware") or {}).get("measured_roofs")
        before = base if preset != "fitted" else presets_.builtin().assumptions(calib.device, engine, base)
        moved = calib.moved(before)
        log(f"calibrated from {calib.source} ({calib.method}), efficiencies of the {calib.device.roofs_basis} roofs "
            f"moved from the {preset} ones: " + ", ".join(f"{k} {v['before']:.3g} → {v['after']:.3g} (×{v['factor']:.2f})"
                                                          for k, v in moved.items()))
    doc: dict[str, Any] = {
        "kind": "projection",
        "moebench_version": __version__,
        "basis": "projected",
        "model": model,
        "params": {"total": cfg.total_params(), "active": cfg.active_params()},
        "scenario": {"prompt_tokens": prompt, "output_tokens": output, "weight_dtype": sc.weight_dtype,
                     "kv_dtype": sc.kv_dtype, "batch_sizes": batches, "interactivity_targets": interactivity,
                     "gpus": fixed.n_gpus if fixed else gpus, "layout": layout, "engine": engine,
                     "request_rates": list(rates), "offline": offline},
        "assumptions": base.to_json(),
        "efficiency_preset": None if table is None else {"name": preset, "source": table.source,
                                                         "fitted_on_points": len(table.fitted_on)},
        "calibration": None if calib is None else calib.to_json() | {"moved": moved},
        "hardware": [],
    }
    for hid in hardware:
        hw = get_hardware(hid)
        # back onto the machine it was measured on (a CPU has no catalog peaks): the roofs measured there
        roofs = calib_roofs if calib is not None and hid == calib.hardware_id else None
        dev = device_from_hardware(hw, price_tier=price_tier, usd_per_gpu_hour=price, measured_roofs=roofs)
        a = base if calib is None else calib.assumptions(base, dev.id, keep_host=keep_host)
        if table is not None:
            a = table.assumptions(dev, engine, a)
        if expert_imbalance is not None:
            a = a.replace(expert_imbalance=expert_imbalance)
        log(f"projecting {model} onto {dev.id} …")
        proj = project(cfg, dev, sc, a, batches=sorted(set(DEFAULT_BATCHES) | set(batches)), max_gpus=max_gpus,
                       only=None if fixed is None else [fixed], gpus=gpus)
        band = None if table is None else table.band(dev.vendor, "moe" if cfg.is_moe else "dense", sc.weight_dtype)
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
            "records": [_record(model, p, dev, sc, src) for b in batches if (p := proj.for_batch(b)) is not None],
            "unfit_batch_sizes": [b for b in batches if proj.for_batch(b) is None],
            "at_interactivity": [
                {"target_tokens_per_s_per_user": x, "basis": "projected", "calibration_source": src,
                 "point": None if (p := proj.at_interactivity(x)) is None else point_json(p, dev)}
                for x in interactivity
            ],
            "frontier": [point_json(p, dev) for p in proj.frontier()],
            "under_load": [lp.to_json() | {"point": point_json(lp.point, dev)}
                           for lp in under_load(cfg, dev, sc, a, proj, batches=batches, rates=rates, offline_max=offline)],
            "error_band": None if band is None else band.to_json(),
        })
    return doc


def _print(doc: dict[str, Any]) -> None:
    from moebench.projection.layout import gpus_text

    sc = doc["scenario"]
    out.print(f"[bold]{doc['model']}[/bold] projected: {sc['prompt_tokens']} in / {sc['output_tokens']} out, "
              f"{sc['weight_dtype']} weights, {sc['kv_dtype']} KV; "
              + (f"calibrated from {doc['calibration']['source']}" if doc["calibration"] else
                 f"catalog peaks × efficiencies fitted on {doc['efficiency_preset']['fitted_on_points']} published "
                 f"points ({sc['engine']} engine)" if doc["efficiency_preset"] else "catalog peaks × default efficiencies"),
              highlight=False)
    for h in doc["hardware"]:
        price = h["price"]
        ptxt = f"${price['usd_per_gpu_hour']:.2f}/GPU-h ({price['tier'] or 'explicit'})" if price["usd_per_gpu_hour"] is not None else "no price"
        gpus = "— GPUs" if h["min_gpus"] is None else gpus_text(h["min_gpus"])
        t = Table(title=f"{h['name']} — {ptxt} — min {gpus}", title_justify="left")
        for col in ("batch", "layout", "TTFT ms", "TPOT ms", "tok/s/user", "out tok/s/GPU", "total tok/s/GPU", "$/Mtok blended"):
            t.add_column(col, justify="left" if col == "layout" else "right")
        for r in h["records"]:
            m = r["metrics"]
            cost = m["usd_per_mtok"]
            t.add_row(str(r["batch_size"]), r["layout"]["text"], fmt(m["ttft_ms"]["median"]), fmt(m["tpot_ms"]["median"]),
                      fmt(m["interactivity_tokens_per_s_per_user"]["median"]), fmt(m["output_tokens_per_s_per_gpu"]["median"]),
                      fmt(m["total_tokens_per_s_per_gpu"]["median"]), fmt(cost["blended"]["median"]) if cost else "—")
        for b in h["unfit_batch_sizes"]:
            t.add_row(str(b), "does not fit", *["—"] * 6)
        out.print(t)
        t2 = Table(title="best tokens/s per GPU at ≥ interactivity", title_justify="left")
        for col in ("tok/s/user ≥", "layout", "batch", "TPOT ms", "out tok/s/GPU", "$/Mtok in", "$/Mtok out", "$/Mtok blended"):
            t2.add_column(col, justify="left" if col == "layout" else "right")
        for row in h["at_interactivity"]:
            p = row["point"]
            if p is None:
                t2.add_row(fmt(row["target_tokens_per_s_per_user"]), "not reachable", *["—"] * 6)
                continue
            c = p["usd_per_mtok"] or {}
            t2.add_row(fmt(row["target_tokens_per_s_per_user"]), p["layout"]["text"], str(p["batch_size"]), fmt(p["tpot_ms"]),
                       fmt(p["output_tokens_per_s_per_gpu"]), fmt(c.get("input")), fmt(c.get("output")), fmt(c.get("blended")))
        out.print(t2)
        if h["under_load"]:
            t3 = Table(title="under load (requests beyond the KV capacity wait for a slot)", title_justify="left")
            for col in ("load", "layout", "in flight", "KV holds", "queue ms", "TTFT ms", "TPOT ms", "out tok/s/GPU"):
                t3.add_column(col, justify="left" if col in ("load", "layout") else "right")
            for row in h["under_load"]:
                p = row["point"]
                load = {"concurrency": "{} in flight", "rate": "{} req/s", "offline": "offline"}[row["load"]]
                t3.add_row(load.format(fmt(row["requested"])), p["layout"]["text"], str(row["batch_in_flight"]),
                           str(row["kv_capacity_sequences"]), "overloaded" if row["overloaded"] else fmt(row["queue_ms"]),
                           fmt(row["ttft_under_load_ms"]), fmt(p["tpot_ms"]), fmt(p["output_tokens_per_s_per_gpu"]))
            out.print(t3)
        for note in h["notes"]:
            out.print(f"note: {note}", highlight=False)
        if h["error_band"]:
            out.print(f"how far to trust it: {h['error_band']['text']}", highlight=False)
        elif doc["calibration"] is None:
            out.print("how far to trust it: these efficiencies were not validated against published measurements",
                      highlight=False)


def register(app: typer.Typer) -> None:
    @app.command()
    def project(
        model: str = typer.Option(..., "--model", help="family:flavor, e.g. deepseek-v3:671b."),
        hardware: str = typer.Option(DEFAULT_HARDWARE, "--hardware", help="Comma-separated catalog ids."),
        batch: str = typer.Option("1,8,64,256", "--batch", help="Comma-separated concurrent sequences per model instance."),
        prompt: int = typer.Option(1024, "--prompt", min=1, help="Prompt tokens per request."),
        output: int = typer.Option(256, "--output", min=2, help="Output tokens per request."),
        dtype: WeightDtype = typer.Option(WeightDtype.bf16, "--dtype", help="Weight format (fp4/fp8 run weight-only where the tensor cores lack them)."),
        kv_dtype: KvDtype = typer.Option(KvDtype.bf16, "--kv-dtype", help="KV-cache format."),
        calibrate_: Optional[Path] = typer.Option(None, "--calibrate", help="A result JSON to fit efficiencies from."),
        price_tier: Optional[str] = typer.Option(None, "--price-tier", help="hyperscaler | neocloud | rental | on-demand (default: the catalog's first)."),
        price: Optional[float] = typer.Option(None, "--price", min=0.0, help="USD per GPU-hour, overriding the catalog (0: a machine you own); not with --price-tier."),
        interactivity: str = typer.Option("10,20,50,100", "--interactivity", help="Comma-separated tokens/s/user targets."),
        overlap: str = typer.Option("none", "--overlap", help="Communication hidden behind compute: none, full (two-batch overlap) or a fraction."),
        serving: Serving = typer.Option(Serving.continuous, "--serving", help="continuous (vLLM/SGLang-style) or static (moebench run)."),
        max_gpus: int = typer.Option(128, "--max-gpus", min=1, help="Largest model instance to consider."),
        gpus: Optional[int] = typer.Option(None, "--gpus", min=1, help="GPUs per model instance (any count the hardware allows); default: the fewest that fit."),
        layout: Optional[str] = typer.Option(None, "--layout", help="Explicit layout, e.g. tp=8,ep=8,dp=1,pp=1 (GPUs = tp·dp·pp; ep is 1 or tp·dp)."),
        mem_util: float = typer.Option(0.9, "--mem-util", help="Share of HBM that weights + KV cache may use."),
        engine: Engine = typer.Option(Engine.any, "--engine", help="Serving engine whose fitted efficiencies apply (any: the median engine)."),
        preset: Preset = typer.Option(Preset.fitted, "--preset", help="fitted: efficiencies fitted on published measurements; defaults: the literature defaults."),
        expert_imbalance: Optional[float] = typer.Option(None, "--expert-imbalance", min=1.0, help="Routed rows on the busiest expert-parallel rank / the mean (default: the preset's)."),
        spec_tokens: int = typer.Option(0, "--spec-tokens", min=0, help="Speculative / MTP tokens drafted per decode step."),
        spec_accept: float = typer.Option(0.0, "--spec-accept", help="Probability each drafted token is accepted (given the previous one was)."),
        rate: Optional[str] = typer.Option(None, "--rate", help="Comma-separated request rates (req/s per instance): open-loop loads."),
        offline: bool = typer.Option(False, "--offline", help="Also report the offline maximum throughput (every request queued at once)."),
        keep_host: bool = typer.Option(False, "--keep-host-time", help="With --calibrate: carry the fitted host time per op to every target (same eager stack), not only back to the measured hardware."),
        json_: bool = typer.Option(False, "--json", help="Print one JSON document."),
    ) -> None:
        """Project a model onto catalog hardware: layout, tokens/s per GPU at interactivity targets, $/M tokens."""
        doc = run_projection(
            model=model, hardware=[h.strip() for h in hardware.split(",") if h.strip()],
            batches=_numbers(batch, "--batch", int), prompt=prompt, output=output, dtype=dtype.value,
            kv_dtype=kv_dtype.value, calibrate_path=calibrate_, price_tier=price_tier, price=price,
            interactivity=_numbers(interactivity, "--interactivity", float), overlap=_overlap(overlap),
            serving=serving.value, max_gpus=max_gpus, keep_host=keep_host, gpus=gpus, layout=layout,
            mem_util=mem_util, engine=engine.value, preset=preset.value, expert_imbalance=expert_imbalance,
            spec_tokens=spec_tokens, spec_accept=spec_accept,
            rates=tuple(_numbers(rate, "--rate", float)) if rate else (), offline=offline,
        )
        if json_:
            emit_json(doc)
        else:
            _print(doc)
