"""Fit the projection's efficiencies to a measured result document, so that projections onto other hardware
start from what real kernels reached rather than from guesses.

Input: a result document as `moebench run` writes it (results/README.md), taken as a plain dict. Read:
- `hardware.id` (catalog entry; its peaks are the roofs) — or, where the catalog has no peaks (`cpu`),
  `hardware.measured_roofs` = {"mem_gbps": copy bandwidth, "matmul_gflops": large-matmul rate};
- `hardware.dtype`, `workload.parallel` {world_size, expert, tensor, attention};
- each record's `model`, `batch_size`, `prompt_tokens`, `output_tokens`, `layers_run`, `extrapolation`, and
  `metrics.ttft_ms.median` / `metrics.tpot_ms.median`;
- optionally `record["profile"]` = {"prefill"|"decode": {phase or "L{i}/{phase}": ms or a statistic}}: the
  time per forward of each phase summed over the layers run (region names as in shared/MEASURE.md).

Without a profile: one compute efficiency (set by TTFT: prefill is compute-bound) and one memory efficiency (set
by TPOT: decode is memory-bound), plus a fixed host overhead per forward for each stage when the records span
enough batch sizes to tell an overhead from a slope. With a profile, each phase also gets its own factor.
Efficiencies transfer to other hardware; host overheads transfer only back onto the same hardware id.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from moebench.errors import BadInput
from moebench.models.config import ArchConfig
from moebench.projection.assumptions import COMM_PHASES, PHASES, STAGES, Assumptions, Efficiency
from moebench.projection.cost import step
from moebench.projection.device import Device, device_from_hardware, norm_dtype
from moebench.projection.layout import Layout
from moebench.projection.scenario import Scenario


@dataclass(frozen=True)
class Sample:
    """One measured record, reduced to what the fit needs (times over the layers that actually ran)."""

    model: str
    cfg: ArchConfig
    batch: int
    scenario: Scenario
    ttft_ms: float
    tpot_ms: float
    phases_ms: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # stage -> phase -> ms


@dataclass(frozen=True)
class Calibration:
    source: str
    hardware_id: str
    device: Device
    layout: Layout
    efficiency: Efficiency
    link_eff: Optional[float]
    step_overhead_ms: Mapping[str, float]
    method: str  # "ttft_tpot" | "profile"
    fit: tuple[dict[str, Any], ...]

    def assumptions(self, base: Assumptions, target_id: str) -> Assumptions:
        """`base` with the fitted efficiencies; the host overhead only when projecting onto the measured hardware."""
        comm = base.comm if self.link_eff is None else dataclasses.replace(base.comm, link_eff=self.link_eff)
        overhead = dict(self.step_overhead_ms) if target_id == self.hardware_id else dict(base.step_overhead_ms)
        return base.replace(efficiency=self.efficiency, comm=comm, step_overhead_ms=overhead)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source, "hardware_id": self.hardware_id, "roofs_basis": self.device.roofs_basis,
            "method": self.method, "layout": dataclasses.asdict(self.layout),
            "efficiency": dataclasses.asdict(self.efficiency), "link_eff": self.link_eff,
            "step_overhead_ms": dict(self.step_overhead_ms), "fit": list(self.fit),
        }


def calibrate(doc: Mapping[str, Any], *, source: Optional[str] = None, base: Assumptions = Assumptions(),
              resolve: Optional[Callable[[str], ArchConfig]] = None) -> Calibration:
    """Fit efficiencies (and host overheads) so the model reproduces `doc`'s measured TTFT and TPOT."""
    if resolve is None:
        from moebench.projection import resolve_config as resolve
    if not isinstance(doc, Mapping) or not isinstance(doc.get("hardware"), Mapping) or not isinstance(doc.get("records"), list):
        raise BadInput(f"{source or 'result'}: not a moebench result document (needs hardware and records)")
    hw = doc["hardware"]
    dev = _device(hw)
    dtype = norm_dtype(str(hw.get("dtype") or "bf16"))
    lay = _layout(doc)
    samples = [s for r in doc["records"] if (s := _sample(r, dtype, resolve)) is not None]
    if not samples:
        raise BadInput(f"{source or 'result'}: no record has ttft_ms and tpot_ms medians to calibrate from")
    a0 = base.replace(serving="static", step_overhead_ms={})
    eff, overhead, fit = _fit_roofs(samples, lay, dev, a0)
    method, link_eff = "ttft_tpot", None
    if any(s.phases_ms for s in samples):
        eff, link_eff = _fit_phases(samples, lay, dev, a0.replace(efficiency=eff))
        a1 = a0.replace(efficiency=eff) if link_eff is None else a0.replace(
            efficiency=eff, comm=dataclasses.replace(a0.comm, link_eff=link_eff))
        overhead = {st: _offset(samples, lambda s, st=st: _predict(s, lay, dev, a1, st), st) for st in STAGES}
        method = "profile"
    name = source or str(doc.get("run_id") or "result")
    return Calibration(f"{name} ({hw.get('id', '?')})", str(hw.get("id", "?")), dev, lay, eff, link_eff, overhead,
                       method, tuple(fit))


# ---- reading the document ------------------------------------------------------------------------------------
def _device(hw: Mapping[str, Any]) -> Device:
    from moebench.catalog import hardware_catalog

    hid = str(hw.get("id") or "?")
    cat = hardware_catalog().get(hid)
    roofs = hw.get("measured_roofs")
    if cat is not None:
        return device_from_hardware(cat, measured_roofs=roofs)
    if not roofs:
        raise BadInput(f"result hardware {hid!r} is not in the catalog and carries no measured_roofs")
    from moebench.catalog import Hardware

    bare = Hardware(id=hid, name=str(hw.get("name") or hid), vendor="?", arch="?", system="?", peak_tflops={},
                    hbm_gb=None, hbm_tbps=None, scale_up=None, scale_out=None, tdp_w=None, allin_kw_per_gpu=None,
                    prices=[], measured_matmul_tflops=None, sources=[], conflicts=[])
    return device_from_hardware(bare, measured_roofs=roofs)


def _layout(doc: Mapping[str, Any]) -> Layout:
    par = (doc.get("workload") or {}).get("parallel") or {}
    n = int(par.get("world_size") or doc.get("world_size") or 1)
    ep, tp = int(par.get("expert") or 1), int(par.get("tensor") or 1)
    if n == 1:
        return Layout(1, 1, 1)
    if ep > 1:  # moebench runs expert-parallel over the whole world; attention is DP unless told otherwise
        attn_tp = tp if par.get("attention") == "tensor" and n % tp == 0 else 1
        return Layout(n, attn_tp, n)
    return Layout(n, n, 1)


def _median(metric: Any) -> Optional[float]:
    if isinstance(metric, Mapping):
        metric = metric.get("median")
    return float(metric) if isinstance(metric, (int, float)) and math.isfinite(metric) and metric > 0 else None


def _sample(rec: Any, dtype: str, resolve: Callable[[str], ArchConfig]) -> Optional[Sample]:
    if not isinstance(rec, Mapping):
        return None
    m = rec.get("metrics") or {}
    ttft, tpot = _median(m.get("ttft_ms")), _median(m.get("tpot_ms"))
    if ttft is None or tpot is None or not rec.get("model"):
        return None
    try:
        b, s, o = int(rec["batch_size"]), int(rec["prompt_tokens"]), int(rec["output_tokens"])
    except (KeyError, TypeError, ValueError):
        raise BadInput(f"record of {rec.get('model')!r} lacks batch_size/prompt_tokens/output_tokens") from None
    cfg = resolve(str(rec["model"]))
    run, total = rec.get("layers_run"), rec.get("layers_total")
    if run and total and int(run) < int(total):
        cfg = cfg.with_layers(int(run))
    # Undo the engine's depth extrapolation: fit against what was timed, on the layers that ran.
    ex = rec.get("extrapolation") or {}
    ttft /= float(ex.get("prefill_factor") or 1.0)
    tpot /= float(ex.get("decode_factor") or 1.0)
    sc = Scenario(s, o, weight_dtype=dtype, kv_dtype=dtype, act_dtype=dtype)
    return Sample(str(rec["model"]), cfg, b, sc, ttft, tpot, _profile(rec.get("profile")))


def _profile(prof: Any) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    if not isinstance(prof, Mapping):
        return out
    for stage in STAGES:
        for key, val in (prof.get(stage) or {}).items():
            phase = str(key).rsplit("/", 1)[-1]
            ms = _median(val)
            if phase in PHASES and ms is not None:
                out.setdefault(stage, {}).setdefault(phase, 0.0)
                out[stage][phase] += ms
    return out


# ---- fitting ------------------------------------------------------------------------------------------------------
def _predict(s: Sample, lay: Layout, dev: Device, a: Assumptions, stage: str) -> float:
    return step(s.cfg, lay, dev, s.scenario, a, stage, s.batch).time_ms


def _measured(s: Sample, stage: str) -> float:
    return s.ttft_ms if stage == "prefill" else s.tpot_ms


def _offset(samples: list[Sample], pred: Callable[[Sample], float], stage: str) -> float:
    """Best constant ≥ 0 to add to predictions under relative least squares; 0 when the records cannot tell an
    offset from a slope (fewer than two distinct predicted times)."""
    ps = [pred(s) for s in samples]
    if len(samples) < 2 or max(ps) < 1.2 * min(ps):
        return 0.0
    ys = [_measured(s, stage) for s in samples]
    num = sum((y - p) / y**2 for p, y in zip(ps, ys))
    return max(0.0, num / sum(1 / y**2 for y in ys))


def _loss(samples: list[Sample], pred: Callable[[Sample], float], stage: str) -> tuple[float, float]:
    o = _offset(samples, pred, stage)
    return sum(((pred(s) + o) / _measured(s, stage) - 1) ** 2 for s in samples), o


def _search(f: Callable[[float], float]) -> float:
    """Minimise f over efficiency in (0, 1]: a log grid, then golden-section refinement around the best cell."""
    grid = [10 ** (-4 + 4 * i / 48) for i in range(49)]
    vals = [f(x) for x in grid]
    i = min(range(len(grid)), key=vals.__getitem__)
    lo, hi = math.log(grid[max(i - 1, 0)]), math.log(grid[min(i + 1, len(grid) - 1)])
    g = (math.sqrt(5) - 1) / 2
    for _ in range(30):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if f(math.exp(a)) < f(math.exp(b)):
            hi = b
        else:
            lo = a
    return min(math.exp((lo + hi) / 2), 1.0)


def _fit_roofs(samples: list[Sample], lay: Layout, dev: Device, a: Assumptions):
    """Alternate: memory efficiency from TPOT, compute efficiency from TTFT (each with its stage's overhead)."""
    eff = a.efficiency
    for _ in range(3):
        def dec_loss(m: float) -> float:
            ai = a.replace(efficiency=dataclasses.replace(eff, memory=m))
            return _loss(samples, lambda s: _predict(s, lay, dev, ai, "decode"), "decode")[0]

        eff = dataclasses.replace(eff, memory=_search(dec_loss))

        def pre_loss(c: float) -> float:
            ai = a.replace(efficiency=dataclasses.replace(eff, compute=c))
            return _loss(samples, lambda s: _predict(s, lay, dev, ai, "prefill"), "prefill")[0]

        eff = dataclasses.replace(eff, compute=_search(pre_loss))
    af = a.replace(efficiency=eff)
    overhead = {st: _loss(samples, lambda s, st=st: _predict(s, lay, dev, af, st), st)[1] for st in STAGES}
    ao = af.replace(step_overhead_ms=overhead)
    fit = [{"model": s.model, "batch_size": s.batch, "layers": s.cfg.num_hidden_layers,
            "ttft_ms": {"measured": s.ttft_ms, "fitted": _predict(s, lay, dev, ao, "prefill")},
            "tpot_ms": {"measured": s.tpot_ms, "fitted": _predict(s, lay, dev, ao, "decode")}} for s in samples]
    return eff, overhead, fit


def _fit_phases(samples: list[Sample], lay: Layout, dev: Device, a: Assumptions) -> tuple[Efficiency, Optional[float]]:
    """Per-phase factors so predicted phase times match the profile (summed over records), refined a few rounds
    because launch latency does not scale with efficiency; one link factor for all collectives."""
    by_phase: dict[str, float] = {}
    link = a.comm.link_eff
    for _ in range(4):
        ai = a.replace(efficiency=dataclasses.replace(a.efficiency, by_phase=dict(by_phase)),
                       comm=dataclasses.replace(a.comm, link_eff=link))
        pred: dict[str, float] = {}
        meas: dict[str, float] = {}
        for s in samples:
            for stage, phases in s.phases_ms.items():
                est = step(s.cfg, lay, dev, s.scenario, ai, stage, s.batch)
                for ph, ms in phases.items():
                    if ph in est.phases:
                        key = "comm" if ph in COMM_PHASES else f"{stage}/{ph}"
                        pred[key] = pred.get(key, 0.0) + est.phases[ph].time_ms
                        meas[key] = meas.get(key, 0.0) + ms
        for k in pred:
            if k != "comm" and meas[k] > 0:
                by_phase[k] = by_phase.get(k, 1.0) * pred[k] / meas[k]
        if meas.get("comm"):
            link = min(1.0, link * pred["comm"] / meas["comm"])
    fitted_link = link if any("comm" in k for k in ()) or link != a.comm.link_eff else None
    return dataclasses.replace(a.efficiency, by_phase=by_phase), fitted_link
