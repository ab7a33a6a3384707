"""`moebench project`: what a model would do on hardware you do not own — layout, tokens/s per GPU at stated
interactivity, $/M tokens — from the analytic model in moebench.projection, optionally calibrated by a run."""

from __future__ import annotations

import enum
import math
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from moebench.cli._options import at_least
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


def _print(doc: dict[str, Any]) -> None:
    from moebench.projection.layout import gpus_text

    sc = doc["scenario"]
    ln = sc.get("lengths")
    sizes = f"{sc['prompt_tokens']} in / {sc['output_tokens']} out"
    if ln is not None:
        where = (f"{ln['requests']} requests' lengths from {ln['source']}" if ln["requests"] else
                 f"lengths: {ln['source']}")
        sizes = f"{where} (mean {sizes}, decode context {ln['decode_context_tokens']:.0f})"
    out.print(f"[bold]{doc['model']}[/bold] projected: {sizes}, "
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
            t3 = Table(title="under load, on the fewest GPUs that hold the model (requests beyond what its KV cache and the engine's cap hold wait for a slot; --gpus or --layout for another instance)", title_justify="left")
            for col in ("load", "layout", "in flight", "holds", "queue ms", "TTFT ms", "TPOT ms", "out tok/s/GPU"):
                t3.add_column(col, justify="left" if col in ("load", "layout") else "right")
            for row in h["under_load"]:
                p = row["point"]
                load = {"concurrency": "{} in flight", "rate": "{} req/s", "offline": "offline"}[row["load"]]
                t3.add_row(load.format(fmt(row["requested"])), p["layout"]["text"], str(row["batch_in_flight"]),
                           str(row["kv_capacity_sequences"]), "overloaded" if row["overloaded"] else fmt(row["queue_ms"]),
                           fmt(row["ttft_under_load_ms"]), fmt(p["tpot_ms"]), fmt(p["output_tokens_per_s_per_gpu"]))
            out.print(t3)
        if h["disaggregated"]:
            _print_pools(h["disaggregated"], doc["scenario"]["disaggregated"])
        for note in h["notes"]:
            out.print(f"note: {note}", highlight=False)
        if h["error_band"]:
            out.print(f"how far to trust it: {h['error_band']['text']}", highlight=False)
            stacks = (doc["efficiency_preset"] or {}).get("published_stacks")
            if stacks:
                out.print(f"  and {stacks['text']}", highlight=False)
            ttft = h["error_band"].get("ttft_under_load")
            if ttft:
                out.print(f"  {ttft['text']}", highlight=False)
        elif doc["calibration"] is None:
            out.print("how far to trust it: these efficiencies were not validated against published measurements",
                      highlight=False)
        else:
            out.print(f"how far to trust it: {_calibration_fit(doc['calibration'])}", highlight=False)


def _calibration_fit(cal: dict[str, Any]) -> str:
    """How closely a calibration reproduces its own records: the only error a calibrated projection can state (the
    published band is the fitted presets', which the calibration replaces)."""
    e = cal["in_sample_error"]
    if e is None:
        return f"calibrated from {cal['source']}, which had no TTFT or TPOT to fit; not validated"
    return (f"calibrated from {cal['source']}: it reproduces its own {e['n']} TTFT/TPOT figures within median "
            f"{e['median']:.2f}×, worst {e['worst']:.2f}× (in sample); the published band is the fitted presets', "
            "not this")


def _print_pools(rows: list[dict[str, Any]], spec: dict[str, Any]) -> None:
    t = Table(title=f"disaggregated: prefill pool {spec['prefill_layout']} ({spec['prefill_batch']} prompt(s) per "
                    f"forward), decode instance {spec['decode_layout']}; prefill instances to keep it busy",
              title_justify="left")
    for col in ("decode batch", "prefill inst.", "GPUs", "TTFT ms", "TPOT ms", "tok/s/user", "out tok/s/GPU",
                "total tok/s/GPU", "$/Mtok in", "$/Mtok out", "$/Mtok blended"):
        t.add_column(col, justify="right")
    for r in rows:
        if not r["fits"]:
            t.add_row(str(r["decode_batch"]), f"does not fit: {r['why']}", *["—"] * 9)
            continue
        c = r["usd_per_mtok"] or {}
        t.add_row(str(r["decode_batch"]), str(r["prefill"]["instances"]), str(r["n_gpus"]), fmt(r["ttft_ms"]),
                  fmt(r["tpot_ms"]), fmt(r["interactivity_tokens_per_s_per_user"]),
                  fmt(r["output_tokens_per_s_per_gpu"]), fmt(r["total_tokens_per_s_per_gpu"]),
                  fmt(c.get("input")), fmt(c.get("output")), fmt(c.get("blended")))
    out.print(t)


def register(app: typer.Typer) -> None:
    @app.command()
    def project(
        model: str = typer.Option(..., "--model", help="family:flavor, e.g. deepseek-v3:671b."),
        hardware: str = typer.Option(DEFAULT_HARDWARE, "--hardware", help="Comma-separated catalog ids."),
        batch: str = typer.Option("1,8,64,256", "--batch", help="Comma-separated concurrent sequences per model instance."),
        prompt: Optional[int] = typer.Option(None, "--prompt", callback=at_least(1), help="Prompt tokens per request (default 1024)."),
        output: Optional[int] = typer.Option(None, "--output", callback=at_least(2), help="Output tokens per request (default 256)."),
        lengths: Optional[Path] = typer.Option(None, "--lengths", help="A CSV of per-request token counts (columns input_length and output_length): project that length distribution instead of --prompt/--output."),
        range_ratio: Optional[float] = typer.Option(None, "--range-ratio", help="Each request's lengths drawn uniformly from [R × --prompt, --prompt] and [R × --output, --output], as a benchmark client's random dataset does (vLLM/SGLang --random-range-ratio, moebench's range_ratio); R in (0, 1]."),
        dtype: WeightDtype = typer.Option(WeightDtype.bf16, "--dtype", help="Weight format (fp4/fp8 run weight-only where the tensor cores lack them)."),
        kv_dtype: KvDtype = typer.Option(KvDtype.bf16, "--kv-dtype", help="KV-cache format."),
        calibrate_: Optional[Path] = typer.Option(None, "--calibrate", help="A result JSON to fit efficiencies from."),
        price_tier: Optional[str] = typer.Option(None, "--price-tier", help="hyperscaler | neocloud | rental | on-demand (default: the catalog's first)."),
        price: Optional[float] = typer.Option(None, "--price", callback=at_least(0), help="USD per GPU-hour, overriding the catalog (0: a machine you own); not with --price-tier."),
        interactivity: str = typer.Option("10,20,50,100", "--interactivity", help="Comma-separated tokens/s/user targets."),
        overlap: str = typer.Option("none", "--overlap", help="Communication hidden behind compute: none, full (two-batch overlap) or a fraction."),
        serving: Serving = typer.Option(Serving.continuous, "--serving", help="continuous (vLLM/SGLang-style) or static (moebench run)."),
        max_gpus: Optional[int] = typer.Option(None, "--max-gpus", callback=at_least(1), help="Largest model instance the layout search considers (default 128)."),
        gpus: Optional[int] = typer.Option(None, "--gpus", callback=at_least(1), help="GPUs per model instance (any count the hardware allows); default: the fewest that fit."),
        layout: Optional[str] = typer.Option(None, "--layout", help="Explicit layout, e.g. tp=8,ep=8,dp=1,pp=1 (GPUs = tp·dp·pp; ep is 1, experts tensor-parallel, or tp·dp)."),
        mem_util: float = typer.Option(0.9, "--mem-util", callback=at_least(0.0, above=True), help="Share of HBM that weights + KV cache may use."),
        engine: Engine = typer.Option(Engine.any, "--engine", help="Serving engine whose fitted efficiencies apply (any: the median engine)."),
        preset: Preset = typer.Option(Preset.fitted, "--preset", help="fitted: efficiencies fitted on published measurements; defaults: the literature defaults."),
        expert_imbalance: Optional[float] = typer.Option(None, "--expert-imbalance", callback=at_least(1.0), help="Routed rows on the busiest expert-parallel rank / the mean (default: the preset's)."),
        expert_load: Optional[Path] = typer.Option(None, "--expert-load", help="A profiled result whose recorded expert load sets the imbalance per EP size (same model's experts)."),
        spec_tokens: int = typer.Option(0, "--spec-tokens", callback=at_least(0), help="Speculative / MTP tokens drafted per decode step."),
        spec_accept: float = typer.Option(0.0, "--spec-accept", callback=at_least(0.0), help="Probability each drafted token is accepted (given the previous one was)."),
        rate: Optional[str] = typer.Option(None, "--rate", help="Comma-separated request rates (req/s per instance): open-loop loads."),
        offline: bool = typer.Option(False, "--offline", help="Also report the offline maximum throughput (every request queued at once)."),
        max_seqs: Optional[int] = typer.Option(None, "--max-seqs", callback=at_least(1), help="The engine's cap on sequences in flight per attention group (vLLM --max-num-seqs, SGLang --max-running-requests, TensorRT-LLM max_batch_size); default: the engine preset's fitted cap."),
        disagg: Optional[str] = typer.Option(None, "--disagg", help="Also project disaggregated prefill/decode pools: PREFILL/DECODE layouts, e.g. tp=8/tp=1,ep=48 (each --batch is one decode instance's sequences)."),
        prefill_batch: int = typer.Option(1, "--prefill-batch", callback=at_least(1), help="With --disagg: prompts per prefill forward."),
        keep_host: bool = typer.Option(False, "--keep-host-time", help="With --calibrate: carry the fitted host time per op to every target (same eager stack), not only back to the measured hardware."),
        json_: bool = typer.Option(False, "--json", help="Print one JSON document."),
    ) -> None:
        """Project a model onto catalog hardware: layout, tokens/s per GPU at interactivity targets, $/M tokens."""
        from moebench.projection.document import projection_document

        doc = projection_document(
            model=model, hardware=[h.strip() for h in hardware.split(",") if h.strip()],
            batches=_numbers(batch, "--batch", int), prompt=prompt, output=output, dtype=dtype.value,
            kv_dtype=kv_dtype.value, calibrate_path=calibrate_, price_tier=price_tier, price=price,
            interactivity=_numbers(interactivity, "--interactivity", float), overlap=_overlap(overlap),
            serving=serving.value, max_gpus=max_gpus, keep_host=keep_host, log=log, gpus=gpus, layout=layout,
            mem_util=mem_util, engine=engine.value, preset=preset.value, expert_imbalance=expert_imbalance,
            spec_tokens=spec_tokens, spec_accept=spec_accept,
            rates=tuple(_numbers(rate, "--rate", float)) if rate else (), offline=offline, expert_load_path=expert_load,
            disagg=disagg, prefill_batch=prefill_batch, lengths_path=lengths, max_seqs=max_seqs,
            range_ratio=range_ratio,
        )
        if json_:
            emit_json(doc)
        else:
            _print(doc)
