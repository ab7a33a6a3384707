"""Catalog data (hardware, reference models, intelligence scores) as typed objects, read once."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from moebench.errors import BadInput

HERE = Path(__file__).parent


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Price(_Frozen):
    tier: str  # hyperscaler | neocloud | rental | on-demand
    usd_per_gpu_hour: float
    date: str
    source: str
    note: Optional[str] = None


class ScaleUp(_Frozen):
    tech: str
    gbps_uni: float
    domain_size: int


class ScaleOut(_Frozen):
    gbit_per_gpu: float
    nic: str


class MeasuredMatmul(_Frozen):
    """The fastest matmul a microbenchmark reached (TFLOP/s): the ceiling real GEMMs meet before the peak."""

    bf16: float
    fp8: Optional[float] = None
    source: str


class Hardware(_Frozen):
    id: str
    name: str
    vendor: str
    arch: str
    system: str
    peak_tflops: dict[str, Optional[float]]
    hbm_gb: Optional[float]
    hbm_tbps: Optional[float]
    scale_up: Optional[ScaleUp]
    scale_out: Optional[ScaleOut]
    tdp_w: Optional[float]
    allin_kw_per_gpu: Optional[float]
    prices: list[Price]
    measured_matmul_tflops: Optional[MeasuredMatmul]
    sources: list[str]
    conflicts: list[str]
    sm_count: Optional[int] = None  # SMs (NVIDIA) or CUs (AMD) per GPU: the projection's GEMM wave quantization

    def price(self, tier: str | None = None) -> Price | None:
        """The price of `tier`; with no tier the first catalogued one (catalog order is the preference)."""
        if tier is None:
            return self.prices[0] if self.prices else None
        for p in self.prices:
            if p.tier == tier:
                return p
        tiers = ", ".join(p.tier for p in self.prices) or "none (set price.usd_per_gpu_hour)"
        raise BadInput(f"hardware {self.id!r} has no price tier {tier!r}; tiers: {tiers}")

    def peak_flops(self, dtype: str) -> float | None:
        tf = self.peak_tflops.get({"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(dtype, dtype))
        return tf * 1e12 if tf else None

    def matmul_ceiling(self) -> dict[str, float]:
        """dtype -> measured matmul TFLOP/s / peak, for the formats with a peak: the dtype's own measurement, else
        the bf16 one's share (a format without a row is taken to reach the same share of its peak). {} when the
        catalog has no measurement."""
        mm = self.measured_matmul_tflops
        if mm is None or not self.peak_tflops.get("bf16"):
            return {}
        base = mm.bf16 / self.peak_tflops["bf16"]
        own = {"bf16": mm.bf16, "fp8": mm.fp8}
        return {d: min(1.0, own[d] / peak if own.get(d) else base) for d, peak in self.peak_tflops.items() if peak}

    @property
    def hbm_bytes_per_s(self) -> float | None:
        return self.hbm_tbps * 1e12 if self.hbm_tbps else None


class IntelligenceScore(_Frozen):
    index: str
    version: str
    score: float
    scored_as: str
    source: str
    note: Optional[str] = None


class ReferenceModel(_Frozen):
    name: str  # family:flavor
    id: str
    hf_repo: str
    kind: str
    config: dict[str, Any]
    published_params: dict[str, float]
    reference_computed_params: dict[str, float]
    sources: list[str]
    intelligence: list[IntelligenceScore]
    active_convention: Optional[str] = None

    def score(self, version: str | None = None) -> IntelligenceScore | None:
        for s in self.intelligence:
            if version is None or s.version == version:
                return s
        return None


def _read(name: str) -> Any:
    return yaml.safe_load((HERE / name).read_text())


class HardwareCatalog(dict):
    """id -> Hardware; the object a `moebench.hardware` plugin provides."""


@functools.cache
def _builtin_hardware() -> HardwareCatalog:
    return HardwareCatalog({h["id"]: Hardware(**h) for h in _read("hardware.yaml")["hardware"]})


@functools.cache
def hardware_catalog() -> dict[str, Hardware]:
    """Every hardware entry from every `moebench.hardware` plugin (the built-in one included)."""
    from moebench.registry import Registry

    reg: Registry[HardwareCatalog] = Registry("moebench.hardware", dict)
    merged: dict[str, Hardware] = {}
    for name in reg.names():
        for hid, hw in reg.load(name).items():
            if not isinstance(hw, Hardware):
                try:
                    hw = Hardware.model_validate({**hw, "id": hid} if isinstance(hw, dict) else hw)
                except ValidationError as exc:
                    first = exc.errors()[0]
                    where = ".".join(str(x) for x in first["loc"]) or "entry"
                    raise BadInput(f"hardware plugin {name!r}: {hid!r} is not a valid Hardware entry "
                                   f"({where}: {first['msg']})") from None
            if hid in merged and merged[hid] != hw:
                raise BadInput(f"hardware {hid!r} is defined by two plugins")
            merged[hid] = hw
    return merged


def get_hardware(hid: str) -> Hardware:
    from moebench.registry import did_you_mean

    cat = hardware_catalog()
    if hid not in cat:
        raise BadInput(f"unknown hardware {hid!r}{did_you_mean(hid, list(cat))}")
    return cat[hid]


@functools.cache
def reference_models() -> dict[str, ReferenceModel]:
    return {m["name"]: ReferenceModel(**m) for m in _read("models.yaml")["models"]}


def __getattr__(name: str):  # PEP 562: the entry point loads the YAML only when asked
    if name == "BUILTIN_HARDWARE":
        return _builtin_hardware()
    raise AttributeError(name)
