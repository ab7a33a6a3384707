"""Other processes' CPU counts neither ours nor our reaped children's; ranks on one host are not each other's
contention; a record or result says why it was contended."""

import os
import subprocess
import sys
import time

import pytest

from moebench.machine import (CONTENDED_SHARE, OthersCpu, contended, contention_record, contention_summary,
                              cpu_oversubscription, other_gpu_processes)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")

SPIN = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < {s}: pass\n"
CPU_SPIN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"  # load-proof


def test_our_own_work_and_our_childrens_is_subtracted():
    # Asserted on the parts, not on `cores`, which other processes on this machine may raise at any time.
    with OthersCpu() as load:
        exec(CPU_SPIN.format(s=0.6))
        subprocess.run([sys.executable, "-c", CPU_SPIN.format(s=0.6)], check=True)
    assert load.own_s >= 1.1, load.own_s  # this process's spin and the reaped child's
    assert load.machine_s >= 0.9 * load.own_s, (load.machine_s, load.own_s)  # the same work seen machine-wide


def test_a_process_that_is_not_ours_is_counted():
    # Double fork: the spinner is re-parented away from us, so its CPU never reaches our RUSAGE_CHILDREN.
    launcher = ("import subprocess, sys\n"
                f"subprocess.Popen([sys.executable, '-c', {SPIN.format(s=1.2)!r}], start_new_session=True)\n")
    with OthersCpu() as load:
        subprocess.run([sys.executable, "-c", launcher], check=True)
        time.sleep(1.3)
    assert load.cores > 0.6, load.cores


def test_usable_cpus_follow_the_affinity_mask():
    import os

    from moebench.machine import usable_cpus

    if not hasattr(os, "sched_getaffinity"):
        assert usable_cpus() == (os.cpu_count() or 1)
        return
    mask = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(mask)})
        assert usable_cpus() == 1
    finally:
        os.sched_setaffinity(0, mask)
    assert usable_cpus() == len(mask)


def _parts(host, machine, own, wall=2.0, cpus=2, gpu=None):
    return {"host": host, "machine_cpu_s": machine, "own_cpu_s": own, "wall_s": wall, "usable_cpus": cpus,
            "other_gpu_processes": gpu}


def test_sibling_ranks_on_one_host_are_not_other_processes():
    # 2 ranks on one 2-CPU host, each busy 1.8 s of 2 s: the host was busy 3.8 s, all of it ours
    both = [_parts("h", 3.8, 1.8), _parts("h", 3.8, 1.8)]
    c = contention_record(both)
    assert c["other_cpu_cores"] == pytest.approx(0.1) and c["contended"] is False and c["timed_s"] == 2.0
    # a second host that was busy with someone else speaks for the run
    c = contention_record(both + [_parts("g", 3.0, 1.0, cpus=4)])
    assert c["other_cpu_cores"] == pytest.approx(1.0) and c["usable_cpus"] == 4 and c["contended"] is True


def test_the_threshold_and_the_reason():
    assert CONTENDED_SHARE == 0.25
    quiet = {"contention": contention_record([_parts("h", 1.9, 1.0, wall=2.0, cpus=2)])}  # 0.45 of 2 CPUs
    busy = {"contention": contention_record([_parts("h", 2.0, 1.0, wall=2.0, cpus=2)])}  # 0.5 of 2 CPUs
    gpu = {"contention": contention_record([_parts("h", 1.0, 1.0, gpu=1)])}
    assert contended(quiet) is None
    assert contended(busy) == "other processes kept 0.50 of 2 usable CPUs busy (threshold 0.25 per CPU)"
    assert contended(gpu) == "1 other process(es) on the GPU"
    doc = {"records": [{"model": "m", "batch_size": 1, **quiet}, {"model": "m", "batch_size": 4, **busy}]}
    assert contended(doc) == "m batch 4: " + contended(busy)
    assert contended({"records": [{"model": "old"}]}) is None  # a result from before contention was recorded
    summary = contention_summary(doc["records"])
    assert summary["contended"] is True and summary["max_other_cpu_cores"] == pytest.approx(0.5)
    assert summary["reason"] == contended(doc)


def test_other_gpu_processes_leave_us_out_even_under_another_pid_namespace():
    import os
    from types import SimpleNamespace as P

    class Nv:
        def __init__(self, pids):
            self.pids = pids

        def nvmlDeviceGetComputeRunningProcesses(self, h):
            return [P(pid=p) for p in self.pids]

        def nvmlDeviceGetGraphicsRunningProcesses(self, h):
            return []

    assert other_gpu_processes(Nv([os.getpid(), 99999999]), [0]) == 1
    assert other_gpu_processes(Nv([12345678]), [0]) == 0  # a container: the host's pid for us
    assert other_gpu_processes(Nv([12345678, 23456789]), [0]) == 1





def test_only_the_cpus_we_may_use_count(tmp_path, monkeypatch):
    """A pinned run (taskset, Slurm, cpusets): other people's work on cores outside our mask is not contention."""
    from moebench import machine

    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal: cpu0 busy 100+10+0+5 ticks, cpu1 busy 900 (idle/iowait excluded)
    stat.write_text("cpu  1000 10 0 500 50 5 0 0\n"
                    "cpu0 100 10 0 400 50 5 0 0\n"
                    "cpu1 900 0 0 100 0 0 0 0\n")
    tick = os.sysconf("SC_CLK_TCK")
    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda pid: {0})
    assert machine.machine_busy_s(str(stat)) == pytest.approx(115 / tick)
    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda pid: {0, 1})
    assert machine.machine_busy_s(str(stat)) == pytest.approx(1015 / tick)
