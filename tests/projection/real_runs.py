"""Per-record errors of the projection against the real runs: self-consistency (a run projected back onto its own
GPU) and H100 -> H200. Reproduces the tables in docs/projection.md: `python -m tests.projection.real_runs`."""

from __future__ import annotations

import json
from pathlib import Path

from moebench.projection import Assumptions, Layout, ServingScenario, calibrate, device_for, evaluate, resolve_config

DATA = Path(__file__).parent / "data"
H200_ENGINE = Path(__file__).parents[2] / "benchmarks" / "results" / "h200-engine-gpu-dense-vs-moe-partial.json"


def measured_vs_projected(rec, dev, a) -> tuple[float, float, float]:
    """(TTFT, TPOT, token-rate) of one record projected with `a` onto `dev`, relative to what was timed (the
    layers that ran: the engine's depth extrapolation is undone)."""
    cfg = resolve_config(rec["model"]).with_layers(rec["layers_run"])
    ex = rec["extrapolation"] or {"prefill_factor": 1.0, "decode_factor": 1.0}
    ttft = rec["metrics"]["ttft_ms"]["median"] / ex["prefill_factor"]
    tpot = rec["metrics"]["tpot_ms"]["median"] / ex["decode_factor"]
    b, s, o = rec["batch_size"], rec["prompt_tokens"], rec["output_tokens"]
    p = evaluate(cfg, Layout(1, 1, 1), dev, ServingScenario(s, o), a, b)
    rate = b * (s + o) / ((ttft + (o - 1) * tpot) / 1e3)
    return p.ttft_ms / ttft - 1, p.tpot_ms / tpot - 1, p.rates["total"] / rate - 1


def errors(doc, hw: str, *, keep_host: bool = False, calibration=None) -> dict:
    """{(model, batch): (TTFT, TPOT, token-rate) relative errors} of `doc` projected with `calibration` (default:
    calibrated on `doc` itself) onto the catalog entry `hw`."""
    calib = calibration or calibrate(doc)
    dev = device_for(hw)
    a = calib.assumptions(Assumptions(serving="static"), dev, keep_host=keep_host)
    return {(r["model"], r["batch_size"]): measured_vs_projected(r, dev, a) for r in doc["records"]}


def only(doc, models) -> dict:
    return {**doc, "records": [r for r in doc["records"] if r["model"] in models]}


def _print(title: str, errs: dict) -> None:
    print(title)
    for model in dict.fromkeys(m for m, _ in errs):
        bs = [b for m, b in errs if m == model]
        for i, name in enumerate(("TTFT", "TPOT", "token rate")):
            cells = " / ".join(f"{errs[model, b][i] * 100:+.0f}" for b in bs)
            print(f"  {model:14s} {name:10s} {cells} %   (B = {'/'.join(map(str, bs))})")


def main() -> None:
    h100 = json.loads((DATA / "h100_calibration.json").read_text())
    h200 = json.loads((DATA / "h200_check.json").read_text())
    for models in (("llama3:8b",), ("mixtral:8x7b",), ("llama3:8b", "mixtral:8x7b")):
        calib = calibrate(only(h100, models))
        fitted = (f"compute {calib.efficiency.compute:.2f}, memory {calib.efficiency.memory:.2f}, host µs/op "
                  f"{ {k: round(v) for k, v in calib.host_us.items()} }, host µs/expert run "
                  f"{ {k: round(v) for k, v in calib.host_expert_us.items()} }, sync per MoE layer {calib.moe_host_sync}, "
                  f"expert GEMMs {calib.expert_gemms}")
        _print(f"H100 self-consistency, calibrated on {' + '.join(models)}: {fitted}",
               errors(only(h100, models), "h100_sxm", calibration=calib))
    for model in ("llama3:8b", "mixtral:8x7b"):
        calib = calibrate(only(h100, (model,)))
        for keep in (False, True):
            _print(f"H100 -> H200, calibrated on {model}, host times {'carried' if keep else 'not carried'}",
                   errors(only(h200, (model,)), "h200_sxm", keep_host=keep, calibration=calib))
    engine = only(json.loads(H200_ENGINE.read_text()), ("llama3:8b",))
    _print(f"H200 self-consistency ({H200_ENGINE.name}, Triton path)", errors(engine, "h200_sxm"))


if __name__ == "__main__":
    main()
