"""Fitted efficiency presets per vendor, engine and architecture, and the held-out error band each projection
carries (presets.yaml, written by `python benchmarks/projection_fit.py`: fitted on the `fit` points of the published
validation set, errors measured on its `holdout` points; TTFT under a concurrency, never fitted, on every published
one).

The presets are one flat table of named factors, so that the fit and the YAML see the same numbers:

    {vendor}.compute, {vendor}.memory     fractions of the measured matmul ceiling (the catalog's measured_matmul share
                                          of the FLOP peak) and of the HBM roof (nvidia, amd)
    {vendor}.alpha, {vendor}.launch       factors on the collectives' latency α and on the launch latency per op
    {vendor}.link                         factor on the link efficiency of the collectives' bandwidth term
                                          (NCCL over NVSwitch vs RCCL over the Infinity Fabric mesh)
    {engine}.compute, {engine}.memory     the engine's factors on the vendor's compute and memory efficiencies (vllm,
                                          sglang, trt-llm: their own GEMM, attention and MoE kernels)
    {engine}.step_ms                      scheduler / host time per forward the engine adds (decode and prefill)
    {engine}.seq_us                       host time per sequence per forward (scheduling, sampling, detokenising)
    {engine}.max_seqs                     the most sequences the engine keeps in flight per attention-DP group
    {arch}.fp8, {arch}.fp4                factor on the compute efficiency of fp8 / fp4 matmuls on that architecture
    {arch}.weight_only                    factor on both roofs where the weights' format is dequantised in the kernel
    moe.experts                           factor on routed-expert efficiency (small grouped GEMMs, imbalance)
    prefill.attn                          factor on prefill attention (long prompts: flash attention below GEMM speed)
    decode.attn                           factor on decode attention (KV reads of many short-lived sequences)
    ep.imbalance                          routed rows on the busiest expert-parallel rank / the mean
    ep.overlap                            share of the communication a deployment that overlaps it actually hides
    eager.host_us                         host time per op of a run without CUDA/HIP graphs (the fit's eager points)
    source.<group>/<engine>               a fit stack's own factor on every speed it published: a nuisance of the
                                          fit (fit.py), never applied to a projection or a held-out point

A factor missing from the table is 1 (0 for `step_ms`); an engine the table does not name (`any`) takes the
median of the named engines' factors.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
from dataclasses import dataclass
from importlib import resources
from typing import Any, Iterable, Mapping, Optional

import yaml

from moebench.errors import BadInput
from moebench.projection.assumptions import Assumptions, Efficiency
from moebench.projection.device import Device

ENGINES = ("vllm", "sglang", "trt-llm")
ANY_ENGINE = "any"


@dataclass(frozen=True)
class HeldOut:
    """One held-out published number and how far the fitted model missed it."""

    id: str
    vendor: str
    kind: str  # dense | moe
    precision: str  # bf16 | fp8 | fp4
    engine: str
    metric: str
    ratio: float  # projected / measured
    optimistic: bool  # the projection promises more than was measured (faster, cheaper)
    speed: float  # projected / published speed (a throughput's ratio, a time's inverse; fit.Scored.optimism)

    @property
    def error(self) -> float:
        """The symmetric error factor max(p/m, m/p) ≥ 1."""
        return max(self.ratio, 1 / self.ratio)


@dataclass(frozen=True)
class Band:
    """The out-of-sample error that applies to a projection: over the held-out points of its group (throughput), or
    over every published TTFT under a concurrency of its group (`metric="ttft"`: never fitted, so all are out of
    sample)."""

    label: str  # e.g. "NVIDIA, MoE, FP8"
    median: float
    worst: float
    n: int
    optimistic: int  # how many of the n were too optimistic (a TTFT: projected too short)
    speed: float  # median projected / published speed (geometric; a time's inverse): < 1, projections read slower
    metric: str = "throughput"  # throughput | ttft | cross-validated (fit points, each scored without its source)

    def text(self) -> str:
        s = "s" if self.n != 1 else ""
        if self.metric == "cross-validated":
            return (f"{self.label}: median {self.median:.2f}×, worst {self.worst:.2f}× over {self.n} fit point{s}, "
                    f"each projected by the fit without its source ({self.optimistic} too optimistic)")
        if self.metric == "ttft":
            return (f"TTFT under load, {self.label}: never fitted; median {self.median:.2f}×, worst {self.worst:.2f}× "
                    f"over {self.n} published TTFT{s} ({self.optimistic} projected too short; projected TTFT "
                    f"{1 / self.speed:.2f}× the published at the median)")
        return (f"{self.label}: held-out median {self.median:.2f}×, worst {self.worst:.2f}× over {self.n} published "
                f"point{s} ({self.optimistic} too optimistic; projected speed "
                f"{self.speed:.2f}× the published at the median)")

    def to_json(self) -> dict[str, Any]:
        return {"group": self.label, "metric": self.metric, "median_error": self.median, "worst_error": self.worst,
                "n": self.n, "too_optimistic": self.optimistic, "median_speed_ratio": self.speed, "text": self.text()}


@dataclass(frozen=True)
class Presets:
    params: Mapping[str, float]
    fitted_on: tuple[str, ...] = ()  # ids of the published points the factors were fitted on
    held_out: tuple[HeldOut, ...] = ()
    source: str = ""
    # every published TTFT under a concurrency as these factors project it (TTFT is never fitted)
    ttft: tuple[HeldOut, ...] = ()
    # every fit point as the fit without its source projects it (leave-one-source-out; `--cv --write`): the
    # out-of-sample error of an engine that no held-out point ran
    cross_validated: tuple[HeldOut, ...] = ()

    def engine_value(self, engine: str, name: str, default: float) -> float:
        """`{engine}.{name}`; for `any`, the median over the engines the table names."""
        if f"{engine}.{name}" in self.params:
            return self.params[f"{engine}.{name}"]
        vals = [self.params[f"{e}.{name}"] for e in ENGINES if f"{e}.{name}" in self.params]
        return statistics.median(vals) if vals and engine == ANY_ENGINE else default

    def assumptions(self, dev: Device, engine: str = ANY_ENGINE, base: Assumptions = Assumptions()) -> Assumptions:
        """`base` with this table's factors for `dev` (vendor, architecture) served by `engine`. A vendor the table
        does not name (a CPU) keeps `base`'s efficiencies."""
        p = self.params
        v = dev.vendor
        if f"{v}.compute" not in p:
            return base
        moe, attn = p.get("moe.experts", 1.0), p.get("prefill.attn", 1.0)
        by_phase = {**base.efficiency.by_phase, "decode/experts": moe, "prefill/experts": moe, "prefill/attn": attn,
                    "decode/attn": p.get("decode.attn", 1.0)}
        # compute factors count from the device's measured matmul ceiling (bf16 here, each other format's own share
        # through dtype_efficiency), not from the datasheet peak
        base_share = dev.matmul_ceiling.get("bf16", 1.0)
        # never above the ceiling: the engine's kernels scale the vendor's share of it, they do not pass it
        compute = min(1.0, p[f"{v}.compute"] * self.engine_value(engine, "compute", 1.0))
        eff = Efficiency(compute=compute * base_share,
                         memory=min(1.0, p[f"{v}.memory"] * self.engine_value(engine, "memory", 1.0)), by_phase=by_phase)
        step_ms = self.engine_value(engine, "step_ms", 0.0)
        alpha = p.get(f"{v}.alpha", 1.0)
        comm = dataclasses.replace(base.comm, alpha_scale_up_us=base.comm.alpha_scale_up_us * alpha,
                                   alpha_scale_out_us=base.comm.alpha_scale_out_us * alpha,
                                   link_eff=min(1.0, base.comm.link_eff * p.get(f"{v}.link", 1.0)))

        def arch_factor(k: str, default: Optional[float]) -> Optional[float]:
            """`{arch}.{k}` for the first of the device's architecture names (its own, then its family) that has one."""
            return next((p[f"{a}.{k}"] for a in dev.arch_lookup if f"{a}.{k}" in p), default)

        dt = {k: arch_factor(k, 1.0) * dev.matmul_ceiling.get(k, base_share) / base_share
              for k in ("fp8", "fp4") if dev.flops_per_s.get(k)}
        if (wo := arch_factor("weight_only", None)) is not None:
            dt["weight_only"] = wo
        return base.replace(efficiency=eff, step_overhead_ms={"prefill": step_ms, "decode": step_ms}, comm=comm,
                            launch_us=base.launch_us * p.get(f"{v}.launch", 1.0),
                            seq_overhead_us=self.engine_value(engine, "seq_us", 0.0),
                            max_seqs=_seqs(self.engine_value(engine, "max_seqs", 0.0)) or base.max_seqs,
                            dtype_efficiency=dt,
                            expert_imbalance=base.expert_imbalance * p.get("ep.imbalance", 1.0),
                            comm_overlap=base.comm_overlap * p.get("ep.overlap", 1.0))

    def stack_spread(self, engine: str = ANY_ENGINE) -> Optional[dict[str, Any]]:
        """How fast the fit's published stacks of `engine` (all of them for `any`) ran against the shared and engine
        factors (their `source.<group>/<engine>` factors): the spread a projection for an unknown stack of that
        engine sits inside. None without such factors."""
        keys = [k for k in self.params if k.startswith("source.")]
        mine = [k for k in keys if k.endswith(f"/{engine}")]
        f = sorted(self.params[k] for k in (mine or keys))
        if not f:
            return None
        # each stack's factor is relative to its own engine's level: with no engine named, that is not this one
        who, like = (f"{engine} ", "a projection like this") if mine else ("", "a projection for their own engine")
        text = (f"the fit's {len(f)} published {who}stacks ran {f[0]:.2f}–{f[-1]:.2f}× {like} "
                f"(median {statistics.median(f):.2f}×)")
        # the band comes from the held-out points of the hardware group, whatever their engine: say where none ran it,
        # and what its own points read when their source was left out of the fit
        held = sum(h.engine == engine for h in self.held_out)
        cv = [h for h in self.cross_validated if h.engine == engine] if mine and not held else []
        cv_band = band_of(cv, engine, "cross-validated") if cv else None
        if mine and self.held_out and not held:
            text += f"; no held-out point ran {engine}, so the band above is other engines' error"
            if cv_band is not None:
                text += f"; out of sample, {cv_band.text()}"
        return {"stacks": len(f), "engine": engine if mine else ANY_ENGINE, "min": f[0],
                "median": statistics.median(f), "max": f[-1], "held_out_points": held if mine else len(self.held_out),
                "cross_validated": None if cv_band is None else cv_band.to_json(), "text": text}

    def band(self, vendor: str, kind: str, precision: str, *, min_points: int = 3,
             metric: str = "throughput") -> Optional[Band]:
        """The held-out error of the narrowest group holding ≥ `min_points` points: vendor × dense/MoE × precision,
        then vendor × dense/MoE, then vendor, then every held-out point. `metric="ttft"`: the same over the published
        TTFTs under a concurrency."""
        pool = self.ttft if metric == "ttft" else self.held_out
        tiers = ((vendor, kind, precision), (vendor, kind, None), (vendor, None, None), (None, None, None))
        for tier in tiers:
            pts = [h for h in pool if _matches(h, *tier)]
            if len(pts) >= min_points or tier == tiers[-1]:
                return band_of(pts, _label(*tier), metric) if pts else None
        return None


def _seqs(x: float) -> Optional[int]:
    return round(x) if x >= 1 else None


def _matches(h: HeldOut, vendor: Optional[str], kind: Optional[str], precision: Optional[str]) -> bool:
    return ((vendor is None or h.vendor == vendor) and (kind is None or h.kind == kind)
            and (precision is None or h.precision == precision))


def _label(vendor: Optional[str], kind: Optional[str], precision: Optional[str]) -> str:
    parts = [{"nvidia": "NVIDIA", "amd": "AMD"}.get(vendor, vendor) if vendor else None,
             {"moe": "MoE", "dense": "dense"}.get(kind, kind) if kind else None,
             precision.upper() if precision else None]
    return ", ".join(x for x in parts if x) or "all hardware and models"


def band_of(points: Iterable[HeldOut], label: str, metric: str = "throughput") -> Band:
    pts = list(points)
    errs = [h.error for h in pts]
    speed = math.exp(statistics.median(math.log(h.speed) for h in pts))
    return Band(label, statistics.median(errs), max(errs), len(pts), sum(h.optimistic for h in pts), speed, metric)


def from_mapping(doc: Mapping[str, Any], source: str = "") -> Presets:
    try:
        params = {str(k): float(v) for k, v in (doc.get("params") or {}).items()}
        held = tuple(HeldOut(**h) for h in doc.get("held_out") or ())
        ttft = tuple(HeldOut(**h) for h in doc.get("ttft_under_load") or ())
        cv = tuple(HeldOut(**h) for h in doc.get("cross_validated") or ())
        fitted = tuple(str(x) for x in doc.get("fitted_on") or ())
    except (TypeError, ValueError) as e:
        raise BadInput(f"{source or 'presets'}: {e}") from None
    return Presets(params, fitted, held, source, ttft, cv)


@functools.cache
def builtin() -> Presets:
    """The presets shipped with moebench (moebench/projection/presets.yaml)."""
    text = resources.files("moebench.projection").joinpath("presets.yaml").read_text()
    return from_mapping(yaml.safe_load(text), "moebench/projection/presets.yaml")
