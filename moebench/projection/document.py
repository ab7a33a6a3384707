"""The document `moebench project` prints: a model projected onto catalog hardware — per hardware the projected
records (shaped like measured ones, basis `projected`), the best point at each interactivity target, and the
frontier. moebench.report.sources shows each hardware entry as a result document of kind `projection`."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from moebench import __version__
from moebench.errors import BadInput
from moebench.projection.sweep import DEFAULT_BATCHES, DEFAULT_MAX_GPUS, point_json
from moebench.results import load_result, make_record, stat

if TYPE_CHECKING:
    from moebench.projection.scenario import LengthMoments


DEFAULT_PROMPT, DEFAULT_OUTPUT = 1024, 256  # tokens per request where neither the lengths nor a distribution is given


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
    *, model: str, hardware: list[str], batches: list[int], prompt: Optional[int], output: Optional[int], dtype: str,
    kv_dtype: str, calibrate_path: Optional[Path], price_tier: Optional[str], price: Optional[float],
    interactivity: list[float], overlap: float, serving: str, max_gpus: Optional[int], keep_host: bool = False,
    log: Callable[[str], None] = lambda _: None,
    gpus: Optional[int] = None, layout: Optional[str] = None, mem_util: float = 0.9, engine: str = "any",
    preset: str = "fitted", expert_imbalance: Optional[float] = None, spec_tokens: int = 0, spec_accept: float = 0.0,
    rates: tuple[float, ...] = (), offline: bool = False, expert_load_path: Optional[Path] = None,
    disagg: Optional[str] = None, prefill_batch: int = 1, lengths_path: Optional[Path] = None,
    max_seqs: Optional[int] = None, range_ratio: Optional[float] = None,
) -> dict[str, Any]:
    """The `moebench project` document: per hardware, the projected records (shaped like measured ones, basis
    `projected`), the best point at each interactivity target, the frontier, the loads asked for (`under_load`) and
    the held-out error band of the fitted presets that applies (`error_band`). `log` gets progress lines.

    `gpus` / `layout` fix the instance (`tp=8,ep=8,dp=1,pp=1`); `preset` "fitted" applies presets.yaml's factors
    for each device's vendor and architecture and `engine` (unless calibrated), "defaults" the literature defaults.
    `disagg` ("PREFILL/DECODE" layouts) adds disaggregated pools: for each batch, one decode instance of that many
    sequences and the fewest prefill instances (of `prefill_batch` prompts per forward) that keep it busy.
    `lengths_path` (a CSV of per-request token counts) replaces the fixed `prompt` / `output` by that distribution;
    `range_ratio` by a benchmark client's random one (each length uniform on [range_ratio·n, n], n = prompt, output);
    `max_seqs` the engine's cap on sequences in flight per attention group (else the preset's, or none)."""
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
    if prefill_batch != 1 and not disagg:
        raise BadInput("--prefill-batch sizes the prefill pool of --disagg: it needs --disagg")
    if not 0.0 < mem_util <= 1.0:
        raise BadInput(f"--mem-util: {mem_util} is not a fraction in (0, 1]")
    if not 0.0 <= spec_accept <= 1.0:
        raise BadInput(f"--spec-accept: {spec_accept} is not a probability")
    if spec_accept and not spec_tokens:
        raise BadInput("--spec-accept is the drafted tokens' acceptance: it needs --spec-tokens")
    if max_gpus is not None and gpus is not None and gpus > max_gpus:
        raise BadInput(f"--gpus {gpus} is more than --max-gpus {max_gpus}")
    max_gpus = DEFAULT_MAX_GPUS if max_gpus is None else max_gpus
    from moebench.catalog import get_hardware
    from moebench.projection import (Assumptions, LengthMoments, ServingScenario, calibrate, device_from_hardware,
                                     project, resolve_config)
    from moebench.projection import presets as presets_
    from moebench.projection.layout import check_runs, parse_layout
    from moebench.projection.load import under_load

    fixed = parse_layout(layout) if layout else None
    pool_texts = _pool_texts(disagg) if disagg else None
    split = tuple(parse_layout(t, "--disagg") for t in pool_texts) if pool_texts else None
    if fixed is not None and gpus is not None and fixed.n_gpus != gpus:
        raise BadInput(f"--gpus {gpus} and --layout {layout} ({fixed.n_gpus} GPUs) disagree")
    cfg = resolve_config(model)
    if fixed is not None:
        check_runs(cfg, model, fixed, "--layout", layout)
    if expert_imbalance is not None and not cfg.is_moe:
        raise BadInput(f"--expert-imbalance: {model} is dense (no routed experts)")
    for pool, text in zip(split or (), pool_texts or ()):
        check_runs(cfg, model, pool, "--disagg", text)
    if lengths_path is not None and range_ratio is not None:
        raise BadInput("--lengths and --range-ratio: give either, not both")
    if lengths_path is not None and (prompt is not None or output is not None):
        raise BadInput("--lengths replaces --prompt and --output: give either, not both")
    prompt = DEFAULT_PROMPT if prompt is None else prompt
    output = DEFAULT_OUTPUT if output is None else output
    moments: Optional[LengthMoments] = None
    requests: Optional[int] = None  # requests the distribution was read from (None: an analytic one)
    longest = prompt + output  # tokens of the longest request
    if range_ratio is not None:
        moments = LengthMoments.uniform(prompt, output, range_ratio)
        lengths_source = f"uniform draws, range ratio {range_ratio:g} of {prompt} in / {output} out"
    elif lengths_path is not None:
        (moments, requests, longest), lengths_source = read_lengths(lengths_path), str(lengths_path)
    if longest > cfg.max_position_embeddings:
        raise BadInput(f"{'--lengths: a request of' if requests is not None else '--prompt + --output:'} {longest:,} "
                       f"tokens is beyond {model}'s context of {cfg.max_position_embeddings:,}")
    if moments is None:
        sc = ServingScenario(prompt, output, weight_dtype=dtype, kv_dtype=kv_dtype)
    else:
        sc = ServingScenario.of_lengths(moments, weight_dtype=dtype, kv_dtype=kv_dtype)
        prompt, output = sc.prompt_tokens, sc.output_tokens
    if spec_tokens >= output:
        raise BadInput(f"--spec-tokens {spec_tokens}: a step drafts fewer tokens than a request's {output} output")
    base = Assumptions(comm_overlap=overlap, serving=serving, mem_util=mem_util,  # type: ignore[arg-type]
                       spec_tokens=spec_tokens, spec_accept=spec_accept)
    if expert_load_path is not None:
        from moebench.projection.imbalance import by_ep, measured_load

        if expert_imbalance is not None:
            raise BadInput("--expert-imbalance and --expert-load: give either, not both")
        rows = measured_load(load_result(expert_load_path), cfg.n_routed_experts, str(expert_load_path))
        widest = max(max_gpus, gpus or 0, fixed.n_gpus if fixed else 0)
        base = base.replace(expert_imbalance_by_ep=by_ep(rows, range(1, widest + 1)))
    table = presets_.builtin() if preset == "fitted" and calibrate_path is None else None
    calib, calib_roofs, moved = None, None, {}
    if calibrate_path is not None:
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
                     "request_rates": list(rates), "offline": offline, "max_seqs": max_seqs,
                     "lengths": None if moments is None else {
                         "source": lengths_source, "requests": requests, "mean_prompt_tokens": moments.prompt,
                         "mean_output_tokens": moments.output, "decode_context_tokens": sc.decode_context,
                         "prefill_attention_tokens": sc.prefill_attention_tokens,
                         "kv_tokens_per_sequence": sc.kv_tokens_per_seq},
                     "disaggregated": None if pool_texts is None else {
                         "prefill_layout": pool_texts[0], "decode_layout": pool_texts[1],
                         "prefill_batch": prefill_batch}},
        "assumptions": base.to_json(),
        "efficiency_preset": None if table is None else {"name": preset, "source": table.source,
                                                         "fitted_on_points": len(table.fitted_on),
                                                         "published_stacks": table.stack_spread(engine)},
        "calibration": None if calib is None else calib.to_json() | {"moved": moved},
        "hardware": [],
    }
    for hid in hardware:
        hw = get_hardware(hid)
        # back onto the machine it was measured on (a CPU has no catalog peaks): the roofs measured there
        roofs = calib_roofs if calib is not None and hid == calib.hardware_id else None
        dev = device_from_hardware(hw, price_tier=price_tier, usd_per_gpu_hour=price, measured_roofs=roofs)
        a = base if calib is None else calib.assumptions(base, dev, keep_host=keep_host)
        if table is not None:
            a = table.assumptions(dev, engine, a)
        if expert_imbalance is not None:
            a = a.replace(expert_imbalance=expert_imbalance)
        if max_seqs is not None:
            a = a.replace(max_seqs=max_seqs)
        log(f"projecting {model} onto {dev.id} …")
        proj = project(cfg, dev, sc, a, batches=sorted(set(DEFAULT_BATCHES) | set(batches)), max_gpus=max_gpus,
                       only=None if fixed is None else [fixed], gpus=gpus)
        group = (dev.vendor, "moe" if cfg.is_moe else "dense", sc.weight_dtype)
        band = None if table is None else table.band(*group)
        ttft_band = None if table is None else table.band(*group, metric="ttft")
        src = None if calib is None else calib.source
        doc["hardware"].append({
            "id": dev.id,
            "name": dev.name,
            "roofs": {"flops_per_s": dict(dev.flops_per_s), "matmul_ceiling": dict(dev.matmul_ceiling),
                      "hbm_bytes_per_s": dev.hbm_bytes_per_s,
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
            "under_load": [lp.to_json() | {"point": point_json(lp.point, dev)}
                           for lp in under_load(cfg, dev, sc, a, proj, batches=batches, rates=rates, offline_max=offline)],
            "disaggregated": [] if split is None else _disaggregated(cfg, dev, sc, a, split, batches, prefill_batch),
            "error_band": None if band is None else band.to_json() | {
                "ttft_under_load": None if ttft_band is None else ttft_band.to_json()},
        })
    return doc


_PROMPT_COLUMNS = ("input_length", "prompt_tokens", "input_tokens")
_OUTPUT_COLUMNS = ("output_length", "output_tokens", "completion_tokens")


def read_lengths(path: Path) -> tuple[LengthMoments, int, int]:
    """A CSV of per-request token counts, one row per request, as the moments the projection uses, the count and
    the longest request (prompt + output tokens).
    Its header names the prompt column (input_length, prompt_tokens or input_tokens) and the output column
    (output_length, output_tokens or completion_tokens)."""
    import pandas as pd

    from moebench.projection.scenario import LengthMoments

    try:
        # rows longer than the header would otherwise shift every column (pandas makes the first one the index)
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(path, index_col=False)
    except FileNotFoundError:
        raise BadInput(f"--lengths: {path} does not exist") from None
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserWarning) as e:  # parser errors are ValueErrors
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BadInput(f"--lengths: {path} is not a readable CSV ({why})") from None
    cols = {str(c).strip().lower(): c for c in df.columns}
    pc = next((cols[c] for c in _PROMPT_COLUMNS if c in cols), None)
    oc = next((cols[c] for c in _OUTPUT_COLUMNS if c in cols), None)
    if pc is None or oc is None:
        raise BadInput(f"--lengths: {path} needs a prompt column ({', '.join(_PROMPT_COLUMNS)}) and an output column "
                       f"({', '.join(_OUTPUT_COLUMNS)}); its header has {', '.join(map(str, df.columns)) or 'nothing'}")
    pr, out = pd.to_numeric(df[pc], errors="coerce"), pd.to_numeric(df[oc], errors="coerce")
    bad = pr.isna() | out.isna() | (pr < 1) | (out < 1) | (pr % 1 != 0) | (out % 1 != 0)
    if len(df) == 0 or bad.any():
        where = "no rows" if len(df) == 0 else f"row {int(bad.idxmax()) + 2} is not a whole count ≥ 1 of each"
        raise BadInput(f"--lengths: {path}: {where}")
    try:
        moments = LengthMoments.of(zip(pr.astype(float), out.astype(float)))
    except BadInput as e:  # e.g. every output 1 token long: no decode step to project
        raise BadInput(f"--lengths: {path}: {e}") from None
    return moments, len(df), int((pr + out).max())


def _pool_texts(text: str) -> tuple[str, str]:
    """`--disagg PREFILL/DECODE`: the two layouts' texts, e.g. `tp=8` and `tp=1,ep=48`."""
    parts = [p.strip() for p in text.split("/")]
    if len(parts) != 2 or not all(parts):
        raise BadInput(f"--disagg: {text!r} is not PREFILL/DECODE layouts, e.g. tp=8/tp=1,ep=48")
    return parts[0], parts[1]


def _disaggregated(cfg, dev, sc, a, split, batches: list[int], prefill_batch: int) -> list[dict[str, Any]]:
    """Per decode batch: balanced pools (disagg.balanced), or why they do not fit."""
    from moebench.projection.disagg import balanced, prompt_only
    from moebench.projection.load import kv_capacity

    pre_lay, dec_lay = split
    pre_cap, dec_cap = kv_capacity(cfg, pre_lay, dev, prompt_only(sc), a), kv_capacity(cfg, dec_lay, dev, sc, a)
    rows: list[dict[str, Any]] = []
    for b in batches:
        if pre_cap < prefill_batch or dec_cap < b:
            why = (f"the prefill instance holds {pre_cap} prompts" if pre_cap < prefill_batch else
                   f"the decode instance holds {dec_cap} sequences")
            rows.append({"decode_batch": b, "fits": False, "why": why})
            continue
        pools = balanced(cfg, dev, sc, a, prefill_layout=pre_lay, decode_layout=dec_lay, decode_batch=b,
                         prefill_batch=prefill_batch)
        rows.append({"decode_batch": b, "fits": True, "basis": "projected", **pools.to_json(),
                     "interactivity_tokens_per_s_per_user": 1000 / pools.tpot_ms,
                     "usd_per_mtok": pools.usd_per_mtok(dev.usd_per_gpu_hour)})
    return rows


