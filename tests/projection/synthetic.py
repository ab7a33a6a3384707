"""Synthetic "measured" result documents made by the model itself from hidden efficiencies, so that a
calibration has a known right answer."""

from __future__ import annotations

import random
from typing import Any, Optional

from moebench.projection import Assumptions, Efficiency, Layout, ServingScenario, step
from moebench.projection.device import Device


def synthetic_result(
    model: str,
    cfg,
    dev: Device,
    truth: Assumptions,
    *,
    hardware: dict[str, Any],
    batches=(1, 4, 16, 64),
    prompt: int = 256,
    output: int = 32,
    dtype: str = "bf16",
    noise: float = 0.0,
    profile: bool = False,
    seed: int = 0,
    layout: Optional[Layout] = None,
) -> dict[str, Any]:
    """A result document shaped like results/README.md whose TTFT/TPOT come from `truth` (static serving)."""
    rng = random.Random(seed)
    lay = layout or Layout(1, 1, 1)
    sc = ServingScenario(prompt, output, weight_dtype=dtype, kv_dtype=dtype, act_dtype=dtype)
    truth = truth.replace(serving="static")
    records = []
    for b in batches:
        pre = step(cfg, lay, dev, sc, truth, "prefill", b)
        dec = step(cfg, lay, dev, sc, truth, "decode", b)
        jitter = lambda x: x * (1 + rng.uniform(-noise, noise))  # noqa: E731
        rec = {
            "model": model, "kind": "moe" if cfg.is_moe else "dense", "batch_size": b, "prompt_tokens": prompt,
            "output_tokens": output, "layers_run": cfg.num_hidden_layers, "layers_total": cfg.layers_total,
            "basis": "measured", "extrapolation": None,
            "metrics": {"ttft_ms": {"median": jitter(pre.time_ms), "basis": "measured", "unit": "ms"},
                        "tpot_ms": {"median": jitter(dec.time_ms), "basis": "measured", "unit": "ms"}},
        }
        if profile:
            rec["profile"] = {
                st: {f"L0/{ph}": {"median": jitter(t.time_ms)} for ph, t in est.phases.items()}
                for st, est in (("prefill", pre), ("decode", dec))
            }
        records.append(rec)
    return {
        "schema_version": 1, "complete": True, "kind": "model", "run_id": f"synthetic-{model}",
        "workload": {"parallel": {"world_size": lay.n_gpus, "expert": lay.ep, "tensor": 1, "attention": "data"}},
        "hardware": {**hardware, "dtype": {"bf16": "bfloat16", "fp32": "float32"}.get(dtype, dtype)},
        "environment": {}, "world_size": lay.n_gpus, "records": records,
    }


TRUTH = Assumptions(efficiency=Efficiency(compute=0.45, memory=0.62), launch_us=7.0, host_us={"decode": 30.0})
