"""What other processes took of this machine's CPUs while a timing test's ranks ran: the guard of the timing
checks (`timing_check` in test_ep_profile.py).

Why not the load average: its 1-minute decay still holds the suite's own earlier tests (it read 3.5-4.7 in CI
runs with nothing else on the machine), so a guard on it skipped the checks exactly where they should assert.
Here: CPU time the whole machine spent busy (steal included: a noisy neighbour on a VM) minus the CPU time of
this process and the children it reaped (the ranks), over the wall time. Linux only; elsewhere, the load
average before the run scaled by BUSY_SHARE, so that the skip threshold there stays "load above the cores".
"""

from __future__ import annotations

import os
import resource
import time

# Other processes' share of the CPUs during a run above which a failed timing check skips instead of failing.
BUSY_SHARE = 0.25


def _machine_busy_s() -> float | None:
    try:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in f.readline().split()[1:9])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    return sum(getattr(resource.getrusage(who), part) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for part in ("ru_utime", "ru_stime"))


class OthersCpu:
    """`with OthersCpu() as load: ...`; afterwards `load.cores` is the mean number of cores that processes other
    than ours (and steal) kept busy during the block; `machine_s` and `own_s` are the CPU seconds it came from."""

    def __enter__(self) -> "OthersCpu":
        self.cores = os.getloadavg()[0] * BUSY_SHARE  # the fallback (see the module docstring)
        self.machine_s = self.own_s = None
        self._t0, self._busy0, self._own0 = time.monotonic(), _machine_busy_s(), _own_cpu_s()
        return self

    def __exit__(self, *exc) -> None:
        busy = _machine_busy_s()
        wall = time.monotonic() - self._t0
        if busy is not None and self._busy0 is not None and wall > 0:
            self.machine_s, self.own_s = busy - self._busy0, _own_cpu_s() - self._own0
            self.cores = max(0.0, self.machine_s - self.own_s) / wall
