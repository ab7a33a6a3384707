"""A device as the cost model sees it: roofs (FLOP/s per dtype, HBM B/s, links) and a price.

Built from a catalog `Hardware` entry, or from roofs a run measured itself (`hardware.measured_roofs` in a
result document: `{"mem_gbps": …, "matmul_gflops": …}`) when the catalog has no peaks (the `cpu` entry).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from moebench.arith import BYTES_PER_ELEM, dtype_key
from moebench.errors import BadInput

WEIGHT_DTYPES = ("bf16", "fp8", "fp4")  # what `--dtype` offers; fp32/fp16 appear only in calibration sources
# Weight-only quantization falls back along this order when the tensor cores lack the weight's format
# (e.g. fp4 weights on H100 run as W4A8 / W4A16).
_COMPUTE_FALLBACK = {"fp4": ("fp4", "fp8", "bf16"), "fp8": ("fp8", "bf16"), "bf16": ("bf16",), "fp16": ("fp16", "bf16"),
                     "fp32": ("fp32", "bf16")}


def norm_dtype(name: str) -> str:
    d = dtype_key(name)
    if d is None:
        raise BadInput(f"unknown dtype {name!r}; choose one of {', '.join(BYTES_PER_ELEM)}")
    return d


@dataclass(frozen=True)
class Device:
    """Per-GPU roofs. Bandwidths are one direction, bytes per second; FLOP/s are dense peaks."""

    id: str
    name: str
    flops_per_s: Mapping[str, float]  # dtype -> peak FLOP/s; only the formats the tensor cores support
    hbm_bytes_per_s: float
    hbm_capacity_bytes: Optional[float]  # None: unknown (CPU) -> no capacity check
    scale_up_bytes_per_s: Optional[float]  # NVLink / Infinity Fabric, per GPU, one direction
    domain_size: int  # GPUs in one scale-up domain (8 for HGX, 72 for NVL72)
    scale_out_bytes_per_s: Optional[float]  # NIC, per GPU, one direction
    usd_per_gpu_hour: Optional[float] = None
    price_tier: Optional[str] = None
    price_source: Optional[str] = None
    roofs_basis: str = "catalog"  # catalog | measured
    sm_count: Optional[int] = None  # SMs (NVIDIA) / CUs (AMD) that run GEMM tiles; None: no tile/wave quantization
    vendor: str = "generic"  # nvidia | amd | generic: picks the fitted efficiency preset (presets.yaml)
    arch: str = ""  # hopper, blackwell, cdna3, …: low-precision efficiencies are per architecture
    # A switchless scale-up mesh (AMD's Infinity Fabric: each GPU has one link to each of its domain − 1 peers,
    # `scale_up_bytes_per_s` being their sum): a group of g GPUs inside it can use only its g − 1 links per GPU.
    # False: a switched fabric (NVLink through NVSwitch), where any group reaches the whole per-GPU rate.
    scale_up_mesh: bool = False
    # compute dtype -> the share of its peak the fastest measured matmul reached (catalog measured_matmul_tflops):
    # the fitted presets count compute efficiency from this ceiling, so a GPU whose GEMMs reach half their peak
    # (MI300X) is not credited with NVIDIA's three quarters. Empty: unknown (measured roofs, a bare device).
    matmul_ceiling: Mapping[str, float] = field(default_factory=dict)

    @property
    def arch_lookup(self) -> tuple[str, ...]:
        """Where this GPU's fitted per-architecture factors are looked up, nearest first: its architecture, then the
        family a variant belongs to (blackwell_ultra → blackwell), so a variant with no factor fitted for it is costed
        like its family rather than at factor 1."""
        return tuple(dict.fromkeys((self.arch, arch_family(self.arch)))) if self.arch else ()

    def compute_dtype(self, weight_dtype: str) -> str:
        """The tensor-core format a matmul with `weight_dtype` weights runs in on this device."""
        for d in _COMPUTE_FALLBACK[weight_dtype]:
            if self.flops_per_s.get(d):
                return d
        # measured roofs cover every dtype through one number; a catalog GPU always has bf16
        return next(iter(self.flops_per_s))

    def ceiling(self, weight_dtype: str) -> Optional[float]:
        """The share of its peak this device's fastest matmul reaches in the format `weight_dtype` matmuls run in:
        1 for measured roofs (they are that matmul), None where unknown."""
        if self.roofs_basis == "measured":
            return 1.0
        return self.matmul_ceiling.get(self.compute_dtype(weight_dtype)) if self.matmul_ceiling else None

    def peak_flops(self, dtype: str) -> float:
        return self.flops_per_s[self.compute_dtype(dtype)]

    def scaled(self, *, flops: float = 1.0, hbm: float = 1.0, links: float = 1.0) -> "Device":
        """This device with every FLOP/s, the HBM bandwidth and both links multiplied (what-if and property tests)."""
        return dataclasses.replace(
            self,
            flops_per_s={k: v * flops for k, v in self.flops_per_s.items()},
            hbm_bytes_per_s=self.hbm_bytes_per_s * hbm,
            scale_up_bytes_per_s=None if self.scale_up_bytes_per_s is None else self.scale_up_bytes_per_s * links,
            scale_out_bytes_per_s=None if self.scale_out_bytes_per_s is None else self.scale_out_bytes_per_s * links,
        )


def device_from_hardware(
    hw: Any,
    *,
    price_tier: Optional[str] = None,
    usd_per_gpu_hour: Optional[float] = None,
    measured_roofs: Optional[Mapping[str, Any]] = None,
) -> Device:
    """A `Device` from a catalog `Hardware`; `measured_roofs` stand in where the catalog has no peaks.

    Catalog peaks win when both exist, so that efficiencies fitted on one catalog GPU mean "fraction of the
    catalog peak" on every other one.
    """
    flops = {k: v * 1e12 for k, v in (hw.peak_tflops or {}).items() if v}
    hbm = hw.hbm_tbps * 1e12 if hw.hbm_tbps else None
    basis = "catalog"
    if not flops or hbm is None:
        if not measured_roofs:
            raise BadInput(
                f"hardware {hw.id!r} has no catalog peaks; project from a result that carries "
                "hardware.measured_roofs {mem_gbps, matmul_gflops}"
            )
        flops, hbm, basis = _roofs(hw.id, measured_roofs)
    price = None
    if usd_per_gpu_hour is None:
        price = hw.price(price_tier) if (price_tier or hw.prices) else None
    su, so = hw.scale_up, hw.scale_out
    return Device(
        id=hw.id,
        name=hw.name,
        flops_per_s=flops,
        hbm_bytes_per_s=hbm,
        # HBM sizes are quoted in binary units whatever the label: an "80 GB" H100 is five 16 GiB stacks and reports
        # 81,559 MiB; an H200's "141 GB" 143,771 MiB; an MI300X's "192 GB" eight 24 GiB stacks
        hbm_capacity_bytes=hw.hbm_gb * 2**30 if hw.hbm_gb else None,
        scale_up_bytes_per_s=su.gbps_uni * 1e9 if su else None,
        domain_size=su.domain_size if su else 1,
        scale_out_bytes_per_s=so.gbit_per_gpu / 8 * 1e9 if so else None,
        usd_per_gpu_hour=usd_per_gpu_hour if usd_per_gpu_hour is not None else (price.usd_per_gpu_hour if price else None),
        price_tier=None if usd_per_gpu_hour is not None else (price.tier if price else None),
        price_source="--price" if usd_per_gpu_hour is not None else (price.source if price else None),
        roofs_basis=basis,
        sm_count=hw.sm_count,
        vendor=hw.vendor,
        arch=hw.arch,
        scale_up_mesh=bool(su) and "xgmi" in su.tech.lower(),
        matmul_ceiling={} if basis == "measured" else (hw.matmul_ceiling() or _arch_ceiling(hw)),
    )


def arch_family(arch: str) -> str:
    """The family of an architecture named `<family>_<variant>` (blackwell_ultra → blackwell); others are their own."""
    return arch.split("_")[0]


def _arch_ceiling(hw: Any) -> dict[str, float]:
    """A GPU without its own matmul measurement takes the median share its architecture's measured GPUs reach."""
    from moebench.catalog import hardware_catalog

    shares: dict[str, list[float]] = {}
    for other in hardware_catalog().values():
        if other.arch == hw.arch and other.vendor == hw.vendor and other.id != hw.id:
            for d, x in other.matmul_ceiling().items():
                shares.setdefault(d, []).append(x)
    return {d: statistics.median(xs) for d, xs in shares.items() if (hw.peak_tflops or {}).get(d)}


def _roofs(hid: str, roofs: Mapping[str, Any]) -> tuple[dict[str, float], float, str]:
    try:
        mem, mm = float(roofs["mem_gbps"]), float(roofs["matmul_gflops"])
    except (KeyError, TypeError, ValueError):
        raise BadInput(f"hardware {hid!r}: measured_roofs needs numeric mem_gbps and matmul_gflops") from None
    if not (mem > 0 and mm > 0 and math.isfinite(mem) and math.isfinite(mm)):
        raise BadInput(f"hardware {hid!r}: measured_roofs must be positive (got mem_gbps={mem}, matmul_gflops={mm})")
    # One measured matmul roof stands for every format: a CPU has no faster low-precision path we could count on.
    return {d: mm * 1e9 for d in BYTES_PER_ELEM}, mem * 1e9, "measured"
