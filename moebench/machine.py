"""The host's CPUs: how many this process may use, how many ranks share them, and how busy the machine was with
other work while we timed: CPU other processes took, other processes on the GPU.

Other processes' CPU = CPU time the whole machine spent busy (/proc/stat, steal included: a noisy neighbour on a
VM) minus the CPU time of this process and of the children it reaped, over the wall time of the timed region.
Not the load average: its one-minute decay still holds work that ended before the region began. Linux only;
elsewhere the figure is None (not measured).

A timed region is **contended** when other processes kept at least CONTENDED_SHARE of the usable CPUs busy
(a run that uses every usable core then lost about that share of its CPU time: more than the few-percent
differences a gate looks for), or when another process held a context on one of the run's GPUs.
Importing this module does not import torch.
"""

from __future__ import annotations

import itertools
import os
import platform
import resource
import time
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Sequence

CONTENDED_SHARE = 0.25


def usable_cpus() -> int:
    """The CPUs this process may run on (taskset, cpusets), not the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def local_ranks(world_size: int) -> int | None:
    """Ranks on this host: torchrun's LOCAL_WORLD_SIZE, Slurm's tasks per node, or (launched by nothing that
    says) the world size on one host; None under Slurm without a per-node count (multi-node: unknown)."""
    env = os.environ
    for key in ("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"):
        digits = "".join(itertools.takewhile(str.isdigit, env.get(key, "")))
        if digits:
            return int(digits)
    return None if "SLURM_JOB_ID" in env else world_size


def cpu_oversubscription(ranks: int, threads: int, cores: int | None) -> str | None:
    """One line when the ranks on this host ask for more CPU threads than it has cores, else None. Each rank's
    intra-op threads spin while they wait for each other; oversubscribed, they spin against the ranks doing the
    work (measured on 2 cores, 4 ranks x 2 threads: prefill 3.5x and decode 12x slower than 4 x 1, and who
    arrives last at a collective becomes the scheduler's choice)."""
    if not cores or ranks * threads <= cores:
        return None
    if threads > 1:
        return (f"CPU oversubscribed: {ranks} ranks x {threads} threads on {cores} cores; timings are "
                f"inflated (OMP_NUM_THREADS={max(1, cores // ranks)} is what moebench sets when it is unset)")
    return (f"{ranks} single-thread ranks share {cores} cores: each rank's times include waiting for a core "
            f"(fine for the mechanics of a parallel plan, not for its absolute speed)")


def machine_busy_s(stat_path: str = "/proc/stat") -> Optional[float]:
    """CPU seconds the CPUs this process may use (its affinity mask) have spent busy since boot, steal included;
    None if unreadable. Only those CPUs: on a pinned run (taskset, Slurm or container cpusets) other people's work
    on other cores takes nothing from it."""
    try:
        mask = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        mask = None
    try:
        with open(stat_path) as f:
            lines = [ln.split() for ln in f if ln.startswith("cpu")]
    except OSError:
        return None
    rows = [ln for ln in lines if ln[0] != "cpu" and int(ln[0][3:]) in mask] if mask else []
    try:
        if not rows:  # no mask (not Linux) or no per-CPU lines: the whole machine
            rows = [next(ln for ln in lines if ln[0] == "cpu")]
        busy = sum(int(v) for ln in rows for i, v in enumerate(ln[1:9]) if i not in (3, 4))  # not idle, iowait
    except (StopIteration, ValueError):
        return None
    return busy / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process (every thread) and of the children it has reaped."""
    return sum(getattr(resource.getrusage(who), part) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for part in ("ru_utime", "ru_stime"))


class OthersCpu:
    """CPU that other processes took during one or more windows: `with load.window(): ...` (or `with OthersCpu()
    as load: ...` for a single one). `cores` is the mean number of cores they kept busy (None where /proc/stat
    cannot be read); `machine_s`, `own_s` and `wall_s` are the sums it comes from."""

    def __init__(self) -> None:
        self.machine_s: Optional[float] = 0.0
        self.own_s = self.wall_s = 0.0

    @contextmanager
    def window(self) -> Iterator["OthersCpu"]:
        t0, busy0, own0 = time.monotonic(), machine_busy_s(), own_cpu_s()
        try:
            yield self
        finally:
            busy = machine_busy_s()
            self.own_s += own_cpu_s() - own0
            self.wall_s += time.monotonic() - t0
            if busy is None or busy0 is None or self.machine_s is None:
                self.machine_s = None
            else:
                self.machine_s += busy - busy0

    def __enter__(self) -> "OthersCpu":
        self._single = self.window()
        return self._single.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._single.__exit__(*exc)

    @property
    def cores(self) -> Optional[float]:
        if self.machine_s is None or self.wall_s <= 0:
            return None
        return max(0.0, self.machine_s - self.own_s) / self.wall_s


def other_gpu_processes(nv: Any, handles: Sequence[Any]) -> Optional[int]:
    """Processes other than this one holding a context on these GPUs (NVML); None if NVML cannot say.

    In a container NVML reports the host's process ids, in which this process is not found by its own id: then
    one of the processes listed is taken to be this one."""
    me = os.getpid()
    total = 0
    try:
        for h in handles:
            pids = {p.pid for fn in (nv.nvmlDeviceGetComputeRunningProcesses, nv.nvmlDeviceGetGraphicsRunningProcesses)
                    for p in fn(h)}
            total += len(pids - {me}) if me in pids else max(0, len(pids) - 1)
    except Exception:  # noqa: BLE001 - an NVML without process queries (some vGPUs, MIG without rights)
        return None
    return total


class ContentionMeter:
    """Accumulates the contention of one model × batch size's timed repeats: `with meter.window(): <repeat>`,
    and `gpu_sample()` now and then (other processes on the GPUs, the most seen is kept). `parts()` is the raw
    record one rank sends to rank 0; `contention_record` turns one or more ranks' parts into the result's."""

    def __init__(self, nv: Any = None, handles: Sequence[Any] = ()):
        self.cpu = OthersCpu()
        self.nv, self.handles = nv, list(handles)
        self.gpu_others: Optional[int] = None

    def window(self):
        return self.cpu.window()

    def gpu_sample(self) -> None:
        if self.nv is None or not self.handles:
            return
        n = other_gpu_processes(self.nv, self.handles)
        if n is not None:
            self.gpu_others = max(n, self.gpu_others or 0)

    def parts(self) -> dict[str, Any]:
        return {"host": platform.node(), "machine_cpu_s": self.cpu.machine_s, "own_cpu_s": self.cpu.own_s,
                "wall_s": self.cpu.wall_s, "usable_cpus": usable_cpus(), "other_gpu_processes": self.gpu_others}


def open_contention(device: str, cuda_indices: Sequence[int] = ()) -> ContentionMeter:
    """A contention meter for this run's devices (GPU processes through NVML where it can list them)."""
    if device != "cuda" or not cuda_indices:
        return ContentionMeter()
    from moebench.energy import nvml, nvml_handle

    nv = nvml()
    try:
        return ContentionMeter(nv, [nvml_handle(nv, i) for i in cuda_indices]) if nv is not None else ContentionMeter()
    except Exception:  # noqa: BLE001 - no handle: CPU contention only
        return ContentionMeter()


def contention_record(parts: Sequence[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The record's `contention` from every rank's `parts()`: ranks on one host see the same machine, so their
    own CPU is summed and subtracted from the host's busy time (a sibling rank is not another process); the
    busiest host speaks for the run. `timed_s` is the wall time it was measured over: /proc/stat counts in
    clock ticks (10 ms per CPU), so over a fraction of a second the figure is coarse. None without parts."""
    parts = [p for p in parts if p]
    if not parts:
        return None
    hosts: dict[str, list[dict[str, Any]]] = {}
    for p in parts:
        hosts.setdefault(p["host"], []).append(p)
    cores: Optional[float] = None
    usable, timed = 0, 0.0
    worst = -1.0
    for ps in hosts.values():
        n = len(ps)
        machine = [p["machine_cpu_s"] for p in ps]
        wall = sum(p["wall_s"] for p in ps) / n
        if any(m is None for m in machine) or wall <= 0:
            continue
        others = max(0.0, sum(machine) / n - sum(p["own_cpu_s"] for p in ps)) / wall
        usable_here = max(p["usable_cpus"] for p in ps)
        if others / usable_here > worst:
            worst, cores, usable, timed = others / usable_here, others, usable_here, wall
    gpus = [p["other_gpu_processes"] for p in parts if p.get("other_gpu_processes") is not None]
    rec = {"other_cpu_cores": cores, "usable_cpus": usable or max(p["usable_cpus"] for p in parts),
           "timed_s": timed, "other_gpu_processes": sum(gpus) if gpus else None, "threshold_share": CONTENDED_SHARE}
    rec["contended"] = _reason(rec) is not None
    return rec


def _reason(c: dict[str, Any]) -> Optional[str]:
    why = []
    cores, usable = c.get("other_cpu_cores"), c.get("usable_cpus") or 1
    if cores is not None and cores >= c.get("threshold_share", CONTENDED_SHARE) * usable:
        why.append(f"other processes kept {cores:.2f} of {usable} usable CPUs busy "
                   f"(threshold {c.get('threshold_share', CONTENDED_SHARE):g} per CPU)")
    if c.get("other_gpu_processes"):
        why.append(f"{c['other_gpu_processes']} other process(es) on the GPU")
    return "; ".join(why) or None


def contended(doc_or_record: dict[str, Any]) -> Optional[str]:
    """Why a result (or one record) was timed on a contended machine, as one line; None if it was not, or if it
    predates contention recording. For a result: the first contended record, named."""
    if "records" in doc_or_record:
        for r in doc_or_record.get("records") or []:
            why = contended(r) if isinstance(r, dict) else None
            if why:
                return f"{r.get('model')} batch {r.get('batch_size')}: {why}"
        return None
    c = doc_or_record.get("contention")
    return _reason(c) if isinstance(c, dict) else None


def contention_summary(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The result's `contention`: whether any record was timed contended, why, and the most other CPU seen."""
    cs = [r["contention"] for r in records if isinstance(r.get("contention"), dict)]
    cores = [c["other_cpu_cores"] for c in cs if c.get("other_cpu_cores") is not None]
    gpus = [c["other_gpu_processes"] for c in cs if c.get("other_gpu_processes") is not None]
    reason = contended({"records": list(records)})
    return {"contended": reason is not None, "reason": reason, "max_other_cpu_cores": max(cores, default=None),
            "max_other_gpu_processes": max(gpus, default=None), "threshold_share": CONTENDED_SHARE}
