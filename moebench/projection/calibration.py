"""Fit the projection's efficiencies to a measured result document, so that projections onto other hardware
start from what real kernels reached rather than from guesses.

Input: a result document as `moebench run` writes it (results/README.md), taken as a plain dict. Read:
- `hardware.id` (catalog entry; its peaks are the roofs) — or, where the catalog has no peaks (`cpu`),
  `hardware.measured_roofs` = {"mem_gbps": copy bandwidth, "matmul_gflops": large-matmul rate};
- `hardware.dtype`, `workload.parallel` {world_size, expert, tensor, attention};
- each record's `model`, `batch_size`, `prompt_tokens`, `output_tokens`, `layers_run`, `extrapolation`, and
  `metrics.ttft_ms.median` / `metrics.tpot_ms.median`;
- optionally `record["profile"]` = {"prefill"|"decode": {phase or "L{i}/{phase}": ms or a statistic}}: the
  time per forward of each phase summed over the layers run (region names as in docs/measure.md).

Without a profile: one compute efficiency (set by TTFT: prefill is compute-bound) and one memory efficiency (set
by TPOT: decode is memory-bound), plus, for each stage, the host's time to issue one op and its time per routed
expert run (eager PyTorch pays hundreds of µs per op, and a per-expert loop one launch group per expert hit; host
work overlaps with GPU work, so it shows only where ops are small, and it scales with the number of layers and
with the experts a step touches, so a 4-layer and a 32-layer run, B = 1 and B = 64, share it). With a profile,
each phase also gets its own factor. Efficiencies transfer to other hardware; the host cost transfers only back
onto the same hardware id.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import numpy as np

from moebench.errors import BadInput
from moebench.models.config import ArchConfig
from moebench.projection.assumptions import COMM_PHASES, PHASES, STAGES, Assumptions, Efficiency
from moebench.projection.cost import step
from moebench.projection.device import Device, device_from_hardware, norm_dtype
from moebench.projection.layout import Layout
from moebench.projection.scenario import ServingScenario
from moebench.projection.sweep import evaluate


@dataclass(frozen=True)
class Sample:
    """One measured record, reduced to what the fit needs (times over the layers that actually ran)."""

    model: str
    cfg: ArchConfig
    batch: int
    scenario: ServingScenario
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
    host_us: Mapping[str, float]  # stage -> fitted CPU time to issue one op (eager PyTorch: hundreds of µs)
    host_expert_us: Mapping[str, float]  # stage -> fitted CPU time per routed expert run (eager per-expert loop)
    moe_host_sync: bool  # the measured engine's MoE layer waits for the host (moebench's plain-torch path)
    expert_gemms: str  # "per_expert" (the plain-torch loop: one GEMM per expert) or "grouped" (fused kernels)
    method: str  # "ttft_tpot" | "profile"
    fit: tuple[dict[str, Any], ...]
    dtype: str = "bf16"  # the measured run's weight format (its matmuls ran in the device's compute format for it)

    def assumptions(self, base: Assumptions, target: Device, *, keep_host: bool = False) -> Assumptions:
        """`base` with the fitted efficiencies for `target`. Onto other hardware, the compute efficiency carries as
        a share of the measured matmul ceiling in the run's format, never above it: a kernel at 0.7 of an H100's
        bf16 peak (0.87 of what its fastest GEMM reaches) is taken to reach 0.87 of an MI300X's ceiling, not 0.7 of
        its peak; measured roofs (a CPU) are their own ceiling; a GPU without a ceiling keeps the share. The
        fitted host times (per op, per expert run) belong to the measured machine's CPU and software stack: they
        are kept when projecting back onto the same hardware id, or everywhere with `keep_host` (projecting the
        same eager stack onto another GPU); otherwise the target gets `base`'s. The way the experts' GEMMs launch
        (one per expert, or grouped) goes with the host model: it is the same eager stack."""
        comm = base.comm if self.link_eff is None else dataclasses.replace(base.comm, link_eff=self.link_eff)
        eff = self.efficiency
        src, tgt = self.device.ceiling(self.dtype), target.ceiling(self.dtype)
        if target.id != self.hardware_id and src and tgt:
            eff = dataclasses.replace(eff, compute=min(1.0, eff.compute / src) * tgt)
        if keep_host or target.id == self.hardware_id:
            return base.replace(efficiency=eff, comm=comm, host_us=dict(self.host_us),
                                host_expert_us=dict(self.host_expert_us), moe_host_sync=self.moe_host_sync,
                                expert_gemms=self.expert_gemms)
        return base.replace(efficiency=eff, comm=comm)

    def moved(self, before: Assumptions) -> dict[str, dict[str, float]]:
        """How far the fit moved each efficiency from `before` (what the projection would have used without the
        calibration): {name: {before, after, factor}} for both roofs of each stage, then each fitted phase factor."""
        out: dict[str, dict[str, float]] = {}
        for stage in STAGES:
            b = before.efficiency.roofs(stage, "mlp")
            a = self.efficiency.roofs(stage, "mlp")
            for roof, x0, x1 in (("compute", b[0], a[0]), ("memory", b[1], a[1])):
                out[f"{stage}/{roof}"] = {"before": x0, "after": x1, "factor": x1 / x0}
        for key, x1 in self.efficiency.by_phase.items():
            x0 = before.efficiency.by_phase.get(key, 1.0)
            out[key] = {"before": x0, "after": x1, "factor": x1 / x0}
        if self.link_eff is not None:
            out["link"] = {"before": before.comm.link_eff, "after": self.link_eff,
                           "factor": self.link_eff / before.comm.link_eff}
        return out

    def in_sample_error(self) -> Optional[dict[str, Any]]:
        """How closely the fitted model reproduces the run's own TTFTs and TPOTs: max(fitted/measured, its inverse)
        over them, median and worst (in sample: the only error a calibrated projection can state); None without any."""
        errs = [max(r / m, m / r) for row in self.fit for k in ("ttft_ms", "tpot_ms")
                if (m := (row.get(k) or {}).get("measured")) and (r := (row.get(k) or {}).get("fitted"))]
        return {"n": len(errs), "median": statistics.median(errs), "worst": max(errs)} if errs else None

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source, "hardware_id": self.hardware_id, "roofs_basis": self.device.roofs_basis,
            "method": self.method, "layout": dataclasses.asdict(self.layout),
            "efficiency": dataclasses.asdict(self.efficiency), "link_eff": self.link_eff,
            "host_us": dict(self.host_us), "host_expert_us": dict(self.host_expert_us),
            "moe_host_sync": self.moe_host_sync, "expert_gemms": self.expert_gemms, "fit": list(self.fit),
            "in_sample_error": self.in_sample_error(),
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
    # An endpoint result measured a server under load (continuous batching: TTFT of one prompt, TPOT with the
    # newcomers' prefill mixed in); its records name the server's model id, so the catalog model is the deployment's.
    endpoint = doc.get("kind") == "endpoint"
    if endpoint:
        dep_model = ((doc.get("workload") or {}).get("deployment") or {}).get("model")
        if not dep_model:
            raise BadInput(f"{source or 'result'}: an endpoint result calibrates only with workload.deployment.model "
                           "(family:flavor) naming what the server runs")
        resolve = (lambda _name, _r=resolve, _m=str(dep_model): _r(_m))
    if "(interpreted)" in str(hw.get("kernels") or ""):
        raise BadInput(f"{source or 'result'}: its kernels ran in Triton's interpreter ({hw['kernels']}); its times "
                       "measure the interpreter, not this hardware: calibrate from a compiled or torch run")
    records = doc["records"]
    if endpoint:  # open-loop (request-rate) levels hold no fixed concurrency to project at
        records = [r for r in records if isinstance(r, Mapping) and ((r.get("load") or {}).get("mode") or "concurrency")
                   == "concurrency" and (r.get("batch_size") or 0) >= 1]
    samples = [s for r in records if (s := _sample(r, dtype, resolve)) is not None]
    if not samples:
        raise BadInput(f"{source or 'result'}: no record has ttft_ms and tpot_ms medians to calibrate from")
    # moebench's plain-torch MoE path (`hardware.kernels: torch`) loops over the experts with rows, which it learns
    # through a host sync per MoE layer, one GEMM per expert; the Triton path routes on the GPU in grouped kernels.
    torch_loop = hw["kernels"] == "torch" if hw.get("kernels") else None
    sync = base.moe_host_sync if torch_loop is None else torch_loop
    gemms = base.expert_gemms if torch_loop is None else ("per_expert" if torch_loop else "grouped")
    a0 = base.replace(serving="continuous" if endpoint else "static", step_overhead_ms={}, host_us={},
                      host_expert_us={}, moe_host_sync=sync, expert_gemms=gemms)
    af = _fit_served(samples, lay, dev, a0) if endpoint else _fit_roofs(samples, lay, dev, a0)
    method, link_eff = "endpoint" if endpoint else "ttft_tpot", None
    if any(s.phases_ms for s in samples):
        eff, link_eff = _fit_phases(samples, lay, dev, af)
        af = af.replace(efficiency=eff)
        if link_eff is not None:
            af = af.replace(comm=dataclasses.replace(a0.comm, link_eff=link_eff))
        for stage in STAGES:  # the host cost is what the phases leave unexplained
            af = _with_host(af, stage, *_best_host(samples, lay, dev, af, stage, len(samples) >= 2)[1:])
        method = "profile"
    fit = tuple({"model": s.model, "batch_size": s.batch, "layers": s.cfg.num_hidden_layers,
                 "ttft_ms": {"measured": s.ttft_ms, "fitted": _predict(s, lay, dev, af, "prefill")},
                 "tpot_ms": {"measured": s.tpot_ms, "fitted": _predict(s, lay, dev, af, "decode")}} for s in samples)
    name = source or str(doc.get("run_id") or "result")
    return Calibration(f"{name} ({hw.get('id', '?')})", str(hw.get("id", "?")), dev, lay, af.efficiency, link_eff,
                       dict(af.host_us), dict(af.host_expert_us), af.moe_host_sync, af.expert_gemms, method, fit,
                       dtype)


# ---- reading the document ------------------------------------------------------------------------------------
def _device(hw: Mapping[str, Any]) -> Device:
    from moebench.catalog import hardware_catalog

    hid = str(hw.get("id") or "?")
    cat = hardware_catalog().get(hid)
    roofs = hw.get("measured_roofs")
    if cat is not None:
        return device_from_hardware(cat, measured_roofs=roofs)
    if not roofs and not hw.get("id"):  # an endpoint run that did not say what its server runs on
        raise BadInput("the result names no hardware (an endpoint workload's deployment.hardware says what the server "
                       "runs on) and carries no measured roofs: nothing to calibrate against")
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
    sc = ServingScenario(s, o, weight_dtype=dtype, kv_dtype=dtype, act_dtype=dtype)
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
    """The model's TTFT (stage prefill) or TPOT (decode) of a record, served as `a.serving` says (sweep.evaluate)."""
    if a.serving == "static":
        return step(s.cfg, lay, dev, s.scenario, a, stage, s.batch).time_ms
    p = evaluate(s.cfg, lay, dev, s.scenario, a, s.batch)
    return p.ttft_ms if stage == "prefill" else p.tpot_ms


def _measured(s: Sample, stage: str) -> float:
    return s.ttft_ms if stage == "prefill" else s.tpot_ms


def _loss(samples: list[Sample], lay: Layout, dev: Device, a: Assumptions, stage: str) -> float:
    """Relative squared error of one stage's predictions."""
    return sum((_predict(s, lay, dev, a, stage) / _measured(s, stage) - 1) ** 2 for s in samples)


# Weak preferences that decide only what the records cannot: efficiencies near the prior, host costs near zero
# (so that a flat TPOT is read as a slower roof, which transfers to other hardware, unless only a host cost fits).
# 1e-3 per record is a 3 % error's worth.
_PULL = 1e-3
# A host time per expert run competes with a slower expert roof for the same growth with the experts touched; the
# roof transfers to other GPUs and the host time does not, so the host explanation must fit clearly better: its
# pull is a 10 % error's worth per record.
_PULL_EXPERT = 1e-2
_HOST_GRID_US = np.concatenate([[0.0], 0.1 * 10 ** (np.arange(61) / 10)])  # 0, then 0.1 µs … 100 ms, 26 % apart


def _with_host(a: Assumptions, stage: str, per_op_us: float, per_expert_us: float) -> Assumptions:
    return a.replace(host_us={**a.host_us, stage: per_op_us}, host_expert_us={**a.host_expert_us, stage: per_expert_us})


def _best_host(samples: list[Sample], lay: Layout, dev: Device, a: Assumptions, stage: str, fit_host: bool):
    """(loss, host µs per op, host µs per expert run) at `a`'s efficiencies. A step is max(GPU + host syncs ×
    per-op, ops × per-op + expert runs × per-expert) + rest, so each sample needs one evaluation; the two host
    times are then chosen on a log grid, refined twice around the best cell."""
    a0 = _with_host(a, stage, 0.0, 0.0)
    parts = []
    for s in samples:
        est = step(s.cfg, lay, dev, s.scenario, a0, stage, s.batch)
        parts.append((est.compute_side_ms, est.host_syncs, est.n_ops, est.expert_runs,
                      est.time_ms - est.compute_side_ms, _measured(s, stage)))
    g, k, n, x, r, y = np.array(parts).T

    def loss(hs: np.ndarray, es: np.ndarray) -> np.ndarray:  # [H, E]: µs per op × µs per expert run
        per_op = n * hs[:, None, None] / 1e3 / y  # [H, 1, S], as fractions of the measured time
        per_exp = x * es[None, :, None] / 1e3 / y  # [1, E, S]
        gpu = (g + k * hs[:, None, None] / 1e3) / y  # each host sync idles the GPU for one op's host time
        err = (np.maximum(gpu, per_op + per_exp) + r / y - 1) ** 2
        return (err + _PULL * per_op ** 2 + _PULL_EXPERT * per_exp ** 2).sum(-1)

    if not fit_host:
        return float(loss(np.zeros(1), np.zeros(1))[0, 0]), 0.0, 0.0
    hs, es = _HOST_GRID_US, _HOST_GRID_US if x.any() else np.zeros(1)
    best = (math.inf, 0.0, 0.0)
    for _ in range(3):
        vals = loss(hs, es)
        i, j = np.unravel_index(np.argmin(vals), vals.shape)
        best = min(best, (float(vals[i, j]), float(hs[i]), float(es[j])))
        hs = np.linspace(hs[max(i - 1, 0)], hs[min(i + 1, len(hs) - 1)], 21)
        es = np.linspace(es[max(j - 1, 0)], es[min(j + 1, len(es) - 1)], 21)
    return best


def _search(f: Callable[[float], float], lo: float, hi: float) -> float:
    """Minimise f over [lo, hi] on a log scale: a grid, then golden-section refinement around the best cell."""
    steps = 160  # 6 % apart: valleys are narrow where a host-cost explanation competes with a roof
    grid = [lo * (hi / lo) ** (i / steps) for i in range(steps + 1)]
    vals = [f(x) for x in grid]
    i = min(range(len(grid)), key=vals.__getitem__)
    a_, b_ = math.log(grid[max(i - 1, 0)]), math.log(grid[min(i + 1, len(grid) - 1)])
    g = (math.sqrt(5) - 1) / 2
    for _ in range(25):
        x, y = b_ - g * (b_ - a_), a_ + g * (b_ - a_)
        if f(math.exp(x)) < f(math.exp(y)):
            b_ = y
        else:
            a_ = x
    return min(math.exp((a_ + b_) / 2), hi)


def _fit_roofs(samples: list[Sample], lay: Layout, dev: Device, a: Assumptions) -> Assumptions:
    """Per stage, its roof efficiency (decode: memory, prefill: compute) jointly with its host costs; twice
    round, since each stage also touches the other's roof a little. The host cost stays 0 with a single record
    (it cannot be told from a slower roof)."""
    fit_host = len(samples) >= 2
    prior = {"memory": a.efficiency.memory, "compute": a.efficiency.compute}
    for _ in range(2):
        for stage, roof in (("decode", "memory"), ("prefill", "compute")):
            def at(x: float, stage=stage, roof=roof) -> Assumptions:
                return a.replace(efficiency=dataclasses.replace(a.efficiency, **{roof: x}))

            def objective(x: float, stage=stage, roof=roof) -> float:
                pull = _PULL * len(samples) * math.log(x / prior[roof]) ** 2
                return _best_host(samples, lay, dev, at(x), stage, fit_host)[0] + pull

            x = _search(objective, 1e-4, 1.0)
            a = at(x)
            a = _with_host(a, stage, *_best_host(samples, lay, dev, a, stage, fit_host)[1:])
    return a


def _fit_served(samples: list[Sample], lay: Layout, dev: Device, a: Assumptions) -> Assumptions:
    """Both roofs at once from a server under load: there TTFT is one prompt's prefill at every load, and each
    TPOT mixes a decode step (memory) with the newcomers' prefill (compute), so neither stage pins one roof.
    Alternating log-scale golden sections on the summed squared relative errors of TTFT and TPOT; no host times
    (a serving engine's are per step, not per op)."""
    prior = {"memory": a.efficiency.memory, "compute": a.efficiency.compute}

    def at(roof: str, x: float, a: Assumptions) -> Assumptions:
        return a.replace(efficiency=dataclasses.replace(a.efficiency, **{roof: x}))

    def loss(a: Assumptions) -> float:
        err = sum((_predict(s, lay, dev, a, st) / _measured(s, st) - 1) ** 2 for s in samples for st in STAGES)
        return err + _PULL * len(samples) * sum(math.log(getattr(a.efficiency, r) / p) ** 2 for r, p in prior.items())

    for _ in range(6):
        for roof in ("memory", "compute"):
            a = at(roof, _golden(lambda x, roof=roof, a=a: loss(at(roof, x, a)), 1e-3, 1.0), a)
    return a


def _golden(f: Callable[[float], float], lo: float, hi: float, iters: int = 40) -> float:
    """Minimise a unimodal f over [lo, hi] on a log scale by golden-section search."""
    g = (math.sqrt(5) - 1) / 2
    a, b = math.log(lo), math.log(hi)
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(math.exp(c)), f(math.exp(d))
    for _ in range(iters):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(math.exp(d))
    return math.exp((a + b) / 2)


def _fit_phases(samples: list[Sample], lay: Layout, dev: Device, a: Assumptions) -> tuple[Efficiency, Optional[float]]:
    """Per-phase factors so predicted phase times match the profile, one for each roof that binds the phase in
    some record (small batches: memory, large: compute), refined a few rounds because launch latency does not
    scale with efficiency; one link factor for all collectives."""
    by_phase: dict[str, float] = {}
    link = a.comm.link_eff
    for _ in range(6):
        ai = a.replace(efficiency=dataclasses.replace(a.efficiency, by_phase=dict(by_phase)),
                       comm=dataclasses.replace(a.comm, link_eff=link))
        pred: dict[str, float] = {}
        meas: dict[str, float] = {}
        for s in samples:
            for stage, phases in s.phases_ms.items():
                est = step(s.cfg, lay, dev, s.scenario, ai, stage, s.batch)
                for ph, ms in phases.items():
                    if ph not in est.phases:
                        continue
                    pt = est.phases[ph]
                    roof = "compute" if pt.compute_ms >= pt.memory_ms else "memory"
                    key = "comm" if ph in COMM_PHASES else f"{stage}/{ph}/{roof}"
                    pred[key] = pred.get(key, 0.0) + pt.time_ms
                    meas[key] = meas.get(key, 0.0) + ms
        for k in pred:
            if k != "comm" and meas[k] > 0:
                by_phase[k] = by_phase.get(k, 1.0) * pred[k] / meas[k]
        if meas.get("comm"):
            link = min(1.0, link * pred["comm"] / meas["comm"])
    fitted_link = link if link != a.comm.link_eff else None
    return dataclasses.replace(a.efficiency, by_phase=by_phase), fitted_link
