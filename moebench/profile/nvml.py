"""NVML sampler on a background thread: board power, SM utilisation, memory used, and the energy counter.

Energy is the difference of `nvmlDeviceGetTotalEnergyConsumption` (mJ since driver load) between start and stop,
which integrates power exactly rather than from samples; the sampled power is kept as a cross-check. (Every run,
profiled or not, also reads that counter around each timed repeat: moebench.energy.) Without a
GPU (or without NVML) every field is None and nothing raises.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

from moebench.energy import NvmlEnergy, nvml, nvml_handle

FIELDS = ("energy_j", "duration_s", "power_w_mean", "power_w_max", "sm_util_pct_mean", "mem_used_gib_max",
          "n_samples", "device_name")


class NvmlSampler:
    """`start()`, work, `stop() -> dict` (FIELDS; None where unknown). Samples every `interval_s`."""

    def __init__(self, device_index: Optional[int] = 0, interval_s: float = 0.05):
        self.interval_s = interval_s
        self.nv = nvml() if device_index is not None else None
        self.h = None
        if self.nv is not None:
            try:
                self.h = nvml_handle(self.nv, device_index)
            except Exception:
                self.nv = None
        self.energy = NvmlEnergy(self.nv, [self.h], [device_index]) if self.h is not None else None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._samples: list[tuple[float, Optional[float], Optional[float]]] = []
        self._e0: Optional[tuple[int, ...]] = None
        self._t0 = 0.0

    @property
    def available(self) -> bool:
        return self.h is not None

    def _sample(self) -> None:
        nv, h = self.nv, self.h
        try:
            p = nv.nvmlDeviceGetPowerUsage(h) / 1e3
        except Exception:
            p = None
        try:
            u = float(nv.nvmlDeviceGetUtilizationRates(h).gpu)
        except Exception:
            u = None
        try:
            m = nv.nvmlDeviceGetMemoryInfo(h).used / 2**30
        except Exception:
            m = None
        self._samples.append((p, u, m))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def start(self) -> "NvmlSampler":
        self._t0 = time.perf_counter()
        if self.available:
            self._e0 = self.energy.read()  # None on pre-Volta boards: no counter
            self._sample()
            self._thread = threading.Thread(target=self._loop, name="moebench-nvml", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        dur = time.perf_counter() - self._t0
        out: dict[str, Any] = {k: None for k in FIELDS}
        out["duration_s"] = dur
        if not self.available:
            return out
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        out["energy_j"] = self.energy.joules(self._e0, self.energy.read())
        power = [s[0] for s in self._samples if s[0] is not None]
        util = [s[1] for s in self._samples if s[1] is not None]
        mem = [s[2] for s in self._samples if s[2] is not None]
        out.update(
            power_w_mean=sum(power) / len(power) if power else None,
            power_w_max=max(power) if power else None,
            sm_util_pct_mean=sum(util) / len(util) if util else None,
            mem_used_gib_max=max(mem) if mem else None,
            n_samples=len(self._samples),
        )
        try:
            name = self.nv.nvmlDeviceGetName(self.h)
            out["device_name"] = name.decode() if isinstance(name, bytes) else name
        except Exception:
            pass
        return out


def energy_summary(per_rank: list[dict[str, Any]], tokens: int, wall_s: float) -> dict[str, Any]:
    """Sum the ranks' energy: J/token over the sampled window, and tokens per MW of *measured board* power (the
    tokenomics formula with the mean board kW per GPU in place of the catalog's all-in kW). None where any rank
    had no counter."""
    from moebench.tokenomics import joules_per_token, tokens_per_mw

    e = [r.get("energy_j") for r in per_rank]
    p = [r.get("power_w_mean") for r in per_rank]
    energy = sum(e) if e and all(x is not None for x in e) else None
    power = sum(p) if p and all(x is not None for x in p) else None
    tps = tokens / wall_s if wall_s > 0 else 0.0
    n = len(per_rank)
    return {
        "energy_j": energy,
        "tokens": tokens,
        "wall_s": wall_s,
        "joules_per_token": joules_per_token(energy, tokens),
        "board_power_w": power,
        "tokens_per_mw_board": tokens_per_mw(tps, power / n / 1e3, n) if power else None,
        "basis": "measured (NVML board power over the profiled window)",
        "per_rank": per_rank,
    }
