"""Energy counters read around every timed repeat: NVML on a GPU, Linux powercap/RAPL on a CPU.

    meter = open_meter(device)            # None: this host exposes no counter we can read
    a = meter.read(); ...timed work...; b = meter.read()
    joules = meter.joules(a, b)           # None if a counter failed in between

A counter integrates power exactly (no sampling), so a repeat's energy is the difference of two reads. Where no
counter can be read the run's energy is `not measured`; a figure from the catalog's all-in power per device is
`estimated` (`estimated_joules`) and never called measured. Importing this module does not import torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

EnergySource = Literal["nvml", "rapl", "dcgm", "estimated", "not measured"]
NOT_MEASURED: EnergySource = "not measured"
POWERCAP = Path("/sys/class/powercap")


def nvml() -> Any:
    """pynvml (nvidia-ml-py), initialised; None without the library, a driver or a GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # noqa: BLE001 - any NVML failure means "no counter here", never a failed run
        return None


def nvml_handle(nv: Any, device_index: int) -> Any:
    """NVML handle of torch's CUDA device `device_index`, matched by PCI bus id: NVML ignores
    CUDA_VISIBLE_DEVICES, so a plain index can name another GPU than the one the run used."""
    try:
        import torch

        props = torch.cuda.get_device_properties(device_index)
        bus = f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
        return nv.nvmlDeviceGetHandleByPciBusId(bus.encode())
    except Exception:  # noqa: BLE001 - no torch CUDA properties (or an old NVML): fall back to the index
        return nv.nvmlDeviceGetHandleByIndex(device_index)


class NvmlEnergy:
    """The total-energy counters (`nvmlDeviceGetTotalEnergyConsumption`, mJ since the driver loaded; Volta and
    later) of the given GPUs, summed."""

    source: EnergySource = "nvml"

    def __init__(self, nv: Any, handles: Sequence[Any], device_indices: Sequence[int]):
        self.nv, self.handles = nv, list(handles)
        self.scope = f"NVML total energy of GPU {', '.join(map(str, device_indices))} (board power)"

    def read(self) -> Optional[tuple[int, ...]]:
        try:
            return tuple(int(self.nv.nvmlDeviceGetTotalEnergyConsumption(h)) for h in self.handles)
        except Exception:  # noqa: BLE001 - e.g. the driver went away mid-run: this repeat has no energy
            return None

    def joules(self, before: Optional[tuple[int, ...]], after: Optional[tuple[int, ...]]) -> Optional[float]:
        if before is None or after is None:
            return None
        return sum(b - a for a, b in zip(before, after)) / 1e3


def open_nvml(device_indices: Sequence[int]) -> Optional[NvmlEnergy]:
    """A meter over these CUDA devices, or None where NVML or any device's counter cannot be read."""
    nv = nvml()
    if nv is None or not device_indices:
        return None
    try:
        meter = NvmlEnergy(nv, [nvml_handle(nv, i) for i in device_indices], device_indices)
    except Exception:  # noqa: BLE001
        return None
    return meter if meter.read() is not None else None  # pre-Volta boards have no counter


class RaplEnergy:
    """Linux powercap RAPL zones: every CPU package (`intel-rapl:N`, named package-N) and its DRAM subzone
    (not part of the package's count on servers). A platform-wide `psys` zone is left out: it contains the
    packages. The counters are the whole socket's, so they include every other process on it and its idle
    power; each wraps at its `max_energy_range_uj`."""

    source: EnergySource = "rapl"

    def __init__(self, zones: Sequence[tuple[str, Path, int]]):
        self.zones = list(zones)  # (name, energy_uj file, max_energy_range_uj)
        self.scope = "RAPL " + " + ".join(name for name, _, _ in self.zones) + " (whole socket, all processes)"

    def read(self) -> Optional[tuple[int, ...]]:
        try:
            return tuple(int(f.read_text()) for _, f, _ in self.zones)
        except (OSError, ValueError):
            return None

    def joules(self, before: Optional[tuple[int, ...]], after: Optional[tuple[int, ...]]) -> Optional[float]:
        if before is None or after is None:
            return None
        # a counter that went backwards wrapped once (a repeat shorter than a wrap: minutes at any power)
        return sum(b - a if b >= a else b + top - a for a, b, (_, _, top) in zip(before, after, self.zones)) / 1e6


def open_rapl(root: Path = POWERCAP) -> Optional[RaplEnergy]:
    """The readable package (+ DRAM) zones under `root`, or None: no powercap, no package zone, or a counter
    this user may not read (root-only since Linux 5.10)."""
    zones = []
    try:
        tops = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
    except OSError:
        return None
    for top in tops:
        for z in [top, *sorted(top.glob(f"{top.name}:*"))]:
            try:
                name = (z / "name").read_text().strip()
                if not (name.startswith("package") or (name == "dram" and z is not top)):
                    continue
                top_uj = int((z / "max_energy_range_uj").read_text())
                int((z / "energy_uj").read_text())
            except (OSError, ValueError):
                return None  # one unreadable zone would undercount the energy: measure none
            zones.append((name, z / "energy_uj", top_uj))
    return RaplEnergy(zones) if zones else None


Meter = NvmlEnergy | RaplEnergy


def open_meter(device: str, cuda_indices: Sequence[int] = ()) -> Optional[Meter]:
    """The energy counter of this run's devices: NVML over `cuda_indices` on a GPU, RAPL on a CPU; None if none
    is readable (the run's energy is then `not measured`, or `estimated` from the catalog)."""
    if device == "cuda":
        return open_nvml(cuda_indices)
    if device == "cpu" and os.name == "posix":
        return open_rapl()
    return None


def estimated_joules(allin_kw_per_device: Optional[float], n_devices: int, wall_s: float) -> Optional[float]:
    """Catalog all-in power (the device's share of its server, cooling and network) × devices × time, J; None
    without a catalog figure. An estimate of the facility's energy, not a reading of the device."""
    if not allin_kw_per_device:
        return None
    return allin_kw_per_device * 1e3 * n_devices * wall_s


def merge_ranks(per_rank: Sequence[tuple[str, Optional[str], Sequence[float], str]]
                ) -> tuple[list[float], str, Optional[str]]:
    """(joules per repeat, source, scope) of a distributed run from every rank's (source, scope, joules per
    repeat, host): each rank's GPUs summed repeat by repeat. RAPL counts a whole socket, which every rank on the
    host reads: one rank per host is counted. Not measured unless every rank measured every repeat the same way."""
    sources = {s for s, _, _, _ in per_rank}
    if len(sources) != 1 or NOT_MEASURED in sources or not per_rank:
        return [], NOT_MEASURED, None
    source = sources.pop()
    counted, hosts = [], set()
    for _, _, joules, host in per_rank:
        if source == "rapl" and host in hosts:
            continue
        hosts.add(host)
        counted.append(joules)
    if len({len(j) for j in counted}) != 1:
        return [], NOT_MEASURED, None
    scope = (f"RAPL of {len(counted)} host(s), one rank each (whole sockets, all processes)" if source == "rapl"
             else f"NVML total energy of every rank's GPUs (board power), {len(counted)} ranks")
    return [sum(xs) for xs in zip(*counted)], source, scope
