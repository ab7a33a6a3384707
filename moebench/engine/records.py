"""Turn timing samples into a result record: latency, throughput, cost, efficiency — each with its basis.

Importing this module does not import torch: `rate_metrics` is also what the report fills projected rows with.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from moebench import tokenomics as tk
from moebench.energy import NOT_MEASURED, estimated_joules
from moebench.machine import contention_record
from moebench.pricing import Pricing
from moebench.results import Basis, derive, make_record, stat

if TYPE_CHECKING:
    from moebench.engine.generate import GenerationSamples
    from moebench.models.config import ArchConfig

# An energy counter moves in steps (NVML's every ~10-100 ms, and on A100/H100 from power sampled only part of the
# time): read around a repeat shorter than this, one repeat's joules are mostly that step, not the repeat.
MIN_ENERGY_WINDOW_S = 1.0

# `moebench run` prefills one batch of B prompts, then decodes the B sequences together (engine/generate.py), so
# TTFT is the whole batch's prefill and TPOT one decode step: "static" serving in moebench.projection's terms.
SERVING = "static"


@dataclass(frozen=True)
class Peaks:
    flops: Optional[float]  # catalog peak FLOP/s for the run dtype
    bytes_per_s: Optional[float]  # catalog peak HBM B/s
    roof_flops: Optional[float]  # measured in this run
    roof_bytes_per_s: Optional[float]


def extrapolation_factors(run_cfg: ArchConfig, batch: int, prompt: int, output: int, dtype_bytes: int,
                          ttft_ms: float, tpot_ms: float) -> tuple[float, float]:
    """(prefill, decode) time scale from the N layers run to the full depth, given the run's median TTFT and TPOT.

    Decode scales by the bytes a step moves (memory-bound; the LM head's read is in both). Prefill scales its
    layers by their FLOPs; the LM head, which prefill runs on each sequence's last token only, is not scaled.
    Its time is not its FLOPs' share: at a short prompt it reads its weights for a few tokens, as a decode step
    does (1 GB for Llama-3's 128k vocabulary: half of a one-layer run's prefill on a CPU), so its share of the
    prefill is taken as its measured share of the decode step, by bytes.
    """
    if run_cfg.full_num_layers is None:
        return 1.0, 1.0
    full = run_cfg.full()
    ctx_d = prompt + output // 2
    step_bytes = run_cfg.decode_bytes(batch, ctx_d, dtype_bytes)
    decode = full.decode_bytes(batch, ctx_d, dtype_bytes) / step_bytes
    head_flops = batch * run_cfg.head_flops()
    layers = (full.prefill_flops(batch, prompt) - head_flops) / (run_cfg.prefill_flops(batch, prompt) - head_flops)
    if not ttft_ms > 0:
        return layers, decode
    head_ms = min(ttft_ms, tpot_ms * run_cfg.head_bytes(dtype_bytes) / step_bytes)
    return ((ttft_ms - head_ms) * layers + head_ms) / ttft_ms, decode


def rate_metrics(prefill_ms: dict[str, Any], step_ms: dict[str, Any], *, batch: int, prompt: int, output: int,
                 pricing: Pricing, intelligence: Optional[dict[str, Any]], basis: Basis) -> dict[str, Any]:
    """Throughput, $/M tokens, tokens per MW and score per $ of B requests whose batched prefill took `prefill_ms`
    and each decode step `step_ms` (statistics, paired sample by sample; None where a price, score or power
    figure is missing). A measured run passes its TTFT and TPOT; a projection its prefill(B) and step times,
    which under continuous serving are not its TTFT and TPOT."""
    rates = [tk.request_rates(batch, prompt, output, a, b) for a, b in zip(prefill_ms["samples"], step_ms["samples"])]
    n = pricing.n_gpus

    def s(xs, unit):
        return stat(xs, basis, unit)

    decode = derive(step_ms, lambda t: batch / (t / 1e3), "tokens/s", basis)
    m: dict[str, Any] = {
        "prefill_tokens_per_s": derive(prefill_ms, lambda t: batch * prompt / (t / 1e3), "tokens/s", basis),
        "decode_tokens_per_s": decode,
        "decode_tokens_per_s_per_gpu": derive(decode, lambda x: tk.per_gpu(x, n), "tokens/s/gpu"),
        "input_tokens_per_s": s([r["input"] for r in rates], "tokens/s"),
        "output_tokens_per_s": s([r["output"] for r in rates], "tokens/s"),
        "total_tokens_per_s": s([r["total"] for r in rates], "tokens/s"),
        "output_tokens_per_s_per_gpu": s([tk.per_gpu(r["output"], n) for r in rates], "tokens/s/gpu"),
        "total_tokens_per_s_per_gpu": s([tk.per_gpu(r["total"], n) for r in rates], "tokens/s/gpu"),
        "usd_per_mtok": None,
        "usd_per_mtok_phase": None,
        "intelligence_per_usd": None,
        "tokens_per_mw": None,
    }
    if pricing.usd_per_gpu_hour is not None:
        p = pricing.usd_per_gpu_hour
        cin = [tk.usd_per_mtok(p, n, r["input"]) for r in rates]
        cout = [tk.usd_per_mtok(p, n, r["output"]) for r in rates]
        blend = [tk.blended_usd_per_mtok(a, b) for a, b in zip(cin, cout)]
        m["usd_per_mtok"] = {"input": s(cin, "USD/Mtok"), "output": s(cout, "USD/Mtok"), "blended": s(blend, "USD/Mtok")}
        phase = [tk.phase_usd_per_mtok(p, n, batch, prompt, output, a, b)
                 for a, b in zip(prefill_ms["samples"], step_ms["samples"])]
        pin, pout = [x[0] for x in phase], [x[1] for x in phase]
        m["usd_per_mtok_phase"] = {"input": s(pin, "USD/Mtok"), "output": s(pout, "USD/Mtok"),
                                   "blended": s([tk.blended_usd_per_mtok(a, b) for a, b in phase], "USD/Mtok")}
        per_usd = tk.intelligence_per_usd_samples((intelligence or {}).get("score"), blend)
        if per_usd:
            m["intelligence_per_usd"] = s(per_usd, "score per USD/Mtok")
    if pricing.allin_kw_per_gpu:
        m["tokens_per_mw"] = s([tk.tokens_per_mw(r["total"], pricing.allin_kw_per_gpu, n) for r in rates], "tokens/s/MW")
    return m


def build_record(
    *,
    name: str,
    kind: str,
    run_cfg: ArchConfig,
    samples: GenerationSamples,
    batch: int,
    prompt: int,
    output: int,
    dtype_bytes: int,
    pricing: Pricing,
    peaks: Peaks,
    intelligence: Optional[dict[str, Any]],
    energy_j_per_repeat: Optional[list[float]] = None,
    energy_source: str = NOT_MEASURED,
    energy_scope: Optional[str] = None,
    **sections: Any,
) -> dict[str, Any]:
    """One record. `energy_j_per_repeat`: the counter's joules of each timed repeat (`energy_source` nvml or
    rapl, over `energy_scope`); without it J/token is estimated from the catalog's all-in power, or None. `sections` are the run's own additions
    (decode mode, weights, profile), placed before the metrics."""
    full = run_cfg.full()
    f_pre, f_dec = extrapolation_factors(run_cfg, batch, prompt, output, dtype_bytes,
                                         statistics.median(samples.ttft_ms), statistics.median(samples.tpot_ms))
    basis: Basis = "measured" if run_cfg.full_num_layers is None else "extrapolated"
    ttft = stat([t * f_pre for t in samples.ttft_ms], basis, "ms")
    tpot = stat([t * f_dec for t in samples.tpot_ms], basis, "ms")
    itl = stat([t * f_dec for t in samples.itl_ms], basis, "ms")
    m: dict[str, Any] = {
        "ttft_ms": ttft,
        "tpot_ms": tpot,
        "itl_ms": itl,
        "e2e_ms": stat([a + (output - 1) * b for a, b in zip(ttft["samples"], tpot["samples"])], basis, "ms"),
        "interactivity_tokens_per_s_per_user": derive(tpot, tk.interactivity, "tokens/s/user"),
        # a static batch: its TTFT is the batch's prefill, its TPOT one decode step
        **rate_metrics(ttft, tpot, batch=batch, prompt=prompt, output=output, pricing=pricing,
                       intelligence=intelligence, basis=basis),
    }
    energy = _energy(samples, energy_j_per_repeat, energy_source, energy_scope, ttft, tpot, f_pre, f_dec,
                     batch=batch, prompt=prompt, output=output, pricing=pricing, basis=basis)
    m["joules_per_token"] = energy.pop("joules_per_token")
    m["tokens_per_joule"] = derive(m["joules_per_token"], lambda j: 1.0 / j if j > 0 else None, "tokens/J")

    # Efficiency: decode is judged by bytes (MBU), prefill by FLOPs (MFU), each against catalog and measured roofs.
    ctx_d = prompt + output // 2
    step_bytes = full.decode_bytes(batch, ctx_d, dtype_bytes)
    prefill_flops = full.prefill_flops(batch, prompt)
    dec_bps = step_bytes / (tpot["median"] / 1e3)
    pre_fps = prefill_flops / (ttft["median"] / 1e3)
    m["efficiency"] = {
        "decode_bytes_per_step": step_bytes,
        "prefill_flops": prefill_flops,
        "mbu_decode": tk.mbu(dec_bps, peaks.bytes_per_s),
        "mfu_prefill": tk.mfu(pre_fps, peaks.flops),
        "mbu_decode_measured_roof": tk.mbu(dec_bps, peaks.roof_bytes_per_s),
        "mfu_prefill_measured_roof": tk.mfu(pre_fps, peaks.roof_flops),
        "mfu_decode": tk.mfu(batch * full.flops_per_token(ctx_d) / (tpot["median"] / 1e3), peaks.flops),
        "basis": basis,
    }
    return make_record(
        model=name, kind=kind, basis=basis, serving=SERVING, batch_size=batch, prompt_tokens=prompt,
        output_tokens=output,
        layers_run=run_cfg.num_hidden_layers,
        layers_total=full.num_hidden_layers,
        params={
            "total": full.total_params(),
            "active": full.active_params(),
            "active_ratio": tk.active_ratio(full.active_params(), full.total_params()),
        },
        extrapolation={"prefill_factor": f_pre, "decode_factor": f_dec} if basis == "extrapolated" else None,
        intelligence=intelligence,
        cost={"usd_per_gpu_hour": pricing.usd_per_gpu_hour, "tier": pricing.tier, "source": pricing.source,
              "n_gpus": pricing.n_gpus},
        energy_source=energy["energy_source"],
        energy_scope=energy["energy_scope"],
        contention=contention_record(samples.contention),
        **sections,
        metrics=m,
    )


def _energy(samples: GenerationSamples, joules: Optional[list[float]], source: str, scope: Optional[str],
            ttft: dict[str, Any], tpot: dict[str, Any], f_pre: float, f_dec: float, *, batch: int, prompt: int,
            output: int, pricing: Pricing, basis: Basis) -> dict[str, Any]:
    """{joules_per_token, energy_source, energy_scope}. J/token = a repeat's energy / its B·(prompt+output)
    tokens, when repeats last at least MIN_ENERGY_WINDOW_S; shorter repeats are pooled into one sample (all their
    energy / all their tokens) and the scope says so, and "coarse" when even the pool is that short. Measured
    energy of N of the layers is scaled like the repeat's time (same mean power); without a counter, the
    catalog's all-in kW per device × devices × the request's time is `estimated`."""
    toks = batch * (prompt + output)
    if joules and len(joules) == len(samples.ttft_ms) == len(samples.tpot_ms):
        steps = output - 1
        scale = [(f_pre * a + f_dec * steps * b) / (a + steps * b) for a, b in zip(samples.ttft_ms, samples.tpot_ms)]
        scaled = [e * k for e, k in zip(joules, scale)]
        windows = samples.energy_window_s
        if len(windows) != len(joules):  # samples from before windows were recorded: the timed time stands in
            windows = [(a + steps * b) / 1e3 for a, b in zip(samples.ttft_ms, samples.tpot_ms)]
        window = statistics.median(windows)
        if window >= MIN_ENERGY_WINDOW_S:
            per_token = [tk.joules_per_token(e, toks) for e in scaled]
            return {"joules_per_token": stat(per_token, basis, "J/token"), "energy_source": source,
                    "energy_scope": scope}
        pooled = tk.joules_per_token(sum(scaled), toks * len(scaled))
        total = sum(windows)
        note = (f"; pooled: all {len(scaled)} repeats' energy / all their tokens, one sample (repeats of "
                f"{window * 1e3:.3g} ms, under the {MIN_ENERGY_WINDOW_S:g} s a single counter reading needs)")
        if total < MIN_ENERGY_WINDOW_S:
            note += (f"; coarse: {total:.3g} s metered in all, within a few of the counter's update steps "
                     "(NVML: ~10-100 ms)")
        return {"joules_per_token": stat([pooled], basis, "J/token"), "energy_source": source,
                "energy_scope": (scope or source) + note}
    kw = pricing.allin_kw_per_gpu
    if kw:
        wall_s = [(a + (output - 1) * b) / 1e3 for a, b in zip(ttft["samples"], tpot["samples"])]
        per_token = [tk.joules_per_token(estimated_joules(kw, pricing.n_gpus, w), toks) for w in wall_s]
        return {"joules_per_token": stat(per_token, "estimated", "J/token"), "energy_source": "estimated",
                "energy_scope": f"catalog all-in {kw:g} kW per device x {pricing.n_gpus} device(s) x request time "
                                "(the device's share of server, cooling and network; not a reading)"}
    return {"joules_per_token": None, "energy_source": NOT_MEASURED,
            "energy_scope": "no readable counter (NVML on a GPU, powercap/RAPL on a CPU) and no catalog all-in power"}
