"""The server's energy counters, read around every timed repeat of a level: NVML on this host (the engine's
meter, moebench.energy.NvmlEnergy, with the GPUs named by NVML index), or a DCGM exporter's
`DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION` (mJ per GPU since the driver loaded) scraped from its Prometheus text.

    meter = await open_meter(spec, gpus, scraper)   # None: the catalog estimate (meter: catalog)
    a = await meter.read(); ...the repeat...; b = await meter.read()
    joules = meter.joules(a, b)                      # None if a read failed or the counter did not move
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Optional, Sequence

from moebench.energy import EnergySource, NvmlEnergy, nvml
from moebench.endpoint.workload import EnergySpec
from moebench.errors import EnvironmentProblem

if TYPE_CHECKING:
    import aiohttp

DCGM_ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
_GET_TIMEOUT_S = 5.0


class LocalNvml:
    """NVML's total-energy counters of the server's GPUs on this host, by NVML (nvidia-smi) index: the server's
    devices are not this process's CUDA devices, so no CUDA_VISIBLE_DEVICES mapping applies."""

    source: EnergySource = "nvml"

    def __init__(self, meter: NvmlEnergy):
        self.meter = meter
        self.scope = meter.scope.replace("GPU ", "NVML GPU ", 1) + ", the server's GPUs on this host"

    async def read(self) -> Optional[tuple[int, ...]]:
        return self.meter.read()

    def joules(self, before: Optional[tuple[int, ...]], after: Optional[tuple[int, ...]]) -> Optional[float]:
        return _moved(self.meter.joules(before, after))


class DcgmExporter:
    """A DCGM exporter's energy counters of the given GPUs (its `gpu` label), summed. The exporter refreshes them
    every collect interval (`-c`, 30 s by default): a repeat shorter than that sees no change and has no reading."""

    source: EnergySource = "dcgm"

    def __init__(self, session: "aiohttp.ClientSession", url: str, gpus: Sequence[int]):
        self.session, self.url, self.gpus = session, url, list(gpus)
        self.scope = (f"DCGM exporter {url}: {DCGM_ENERGY} of GPU {', '.join(map(str, self.gpus))} "
                      "(board energy, at the exporter's collect interval)")

    async def read(self) -> Optional[tuple[int, ...]]:
        import aiohttp

        try:
            async with asyncio.timeout(_GET_TIMEOUT_S):
                async with self.session.get(self.url) as resp:
                    if resp.status != 200:
                        return None
                    return dcgm_energy_mj(await resp.text(), self.gpus)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
            return None

    def joules(self, before: Optional[tuple[int, ...]], after: Optional[tuple[int, ...]]) -> Optional[float]:
        if before is None or after is None:
            return None
        return _moved(sum(b - a for a, b in zip(before, after)) / 1e3)


def _moved(joules: Optional[float]) -> Optional[float]:
    """A counter that did not advance over a repeat was not refreshed (or went backwards: a driver reload); it
    measured nothing, which is not zero energy."""
    return joules if joules is not None and joules > 0 else None


def dcgm_energy_mj(text: str, gpus: Sequence[int]) -> Optional[tuple[int, ...]]:
    """The energy counter of each of `gpus`, in their order, from one scrape; None if any is missing."""
    from prometheus_client.parser import text_string_to_metric_families

    by_gpu: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:  # the parser names a counter's samples <name>_total
            if s.name in (DCGM_ENERGY, f"{DCGM_ENERGY}_total") and "gpu" in s.labels:
                by_gpu[s.labels["gpu"]] = s.value
    try:
        return tuple(int(by_gpu[str(g)]) for g in gpus)
    except KeyError:
        return None


Meter = LocalNvml | DcgmExporter


async def open_meter(spec: EnergySpec, gpus: Sequence[int], session: "aiohttp.ClientSession") -> Optional[Meter]:
    """The meter the workload asks for, checked with one read; None for `meter: catalog`. Raises
    EnvironmentProblem (exit 4, before any request) when the asked-for counter cannot be read."""
    if spec.meter == "nvml":
        nv = nvml()
        if nv is None:
            raise EnvironmentProblem("deployment.energy: meter nvml, but NVML cannot be read on this host "
                                     "(no nvidia-ml-py, driver or GPU)")
        try:
            nv_meter = NvmlEnergy(nv, [nv.nvmlDeviceGetHandleByIndex(i) for i in gpus], list(gpus))
        except Exception as exc:  # noqa: BLE001 - NVML's own error types; any means "no such GPU here"
            raise EnvironmentProblem(f"deployment.energy: NVML GPU {', '.join(map(str, gpus))}: {exc}") from None
        if nv_meter.read() is None:
            raise EnvironmentProblem("deployment.energy: NVML has no total-energy counter for GPU "
                                     f"{', '.join(map(str, gpus))} (pre-Volta?)")
        return LocalNvml(nv_meter)
    if spec.meter == "dcgm":
        assert spec.dcgm_url is not None
        meter = DcgmExporter(session, spec.dcgm_url, gpus)
        if await meter.read() is None:
            raise EnvironmentProblem(f"deployment.energy: {spec.dcgm_url} gave no {DCGM_ENERGY} for GPU "
                                     f"{', '.join(map(str, gpus))}")
        return meter
    return None


def planned_source(meter: Optional[Meter], allin_kw_per_gpu: Optional[float]) -> str:
    """The `energy_source` the run's records will carry if the meter reads every repeat, for the run's header:
    the meter's, else `estimated` (from the catalog's all-in power), else `not measured`."""
    return energy_record(meter, [0.0], allin_kw_per_gpu, 1)["energy_source"]


def energy_record(meter: Optional[Meter], joules: Sequence[Optional[float]], allin_kw_per_gpu: Optional[float],
                  n_gpus: int, tokens_counted: bool = True) -> dict[str, Any]:
    """The record's `energy_source` / `energy_scope`: the meter's when it read every repeat, else the catalog
    estimate (`estimated`), else `not measured`, saying why; `not measured` too where nobody counted the tokens
    (no J/token to label, whatever the joules)."""
    if not tokens_counted:
        return {"energy_source": "not measured",
                "energy_scope": "no J/token: the server reported no token usage and no tokenizer was set"}
    if meter is not None and joules and all(j is not None for j in joules):
        return {"energy_source": meter.source, "energy_scope": meter.scope}
    why = ""
    if meter is not None:
        why = f"; the {meter.source} counter did not advance (or failed) over a repeat"
    if allin_kw_per_gpu:
        return {"energy_source": "estimated",
                "energy_scope": f"catalog all-in {allin_kw_per_gpu:g} kW per GPU x {n_gpus} GPU(s) x the "
                                f"level's wall time (not a reading){why}"}
    return {"energy_source": "not measured",
            "energy_scope": "no energy counter of the server and no catalog all-in power for its hardware" + why}
