"""Two identical runs, one beside a CPU hog this test starts on our cores: the hog's run says it was contended,
the quiet one does not (or, when the machine is busy with someone else's work, the test skips saying so)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from moebench.engine.runner import run_workload
from moebench.machine import contended, usable_cpus
from moebench.workload import parse_workload

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")

WL = {
    "name": "contention", "models": ["llama3:debug"], "device": "cpu", "roofs": False,
    "scenario": {"prompt_tokens": 16, "output_tokens": 4, "batch_sizes": [1]},
    "timing": {"warmup": 1, "repeats": 5},
}
HOG_S = 120  # a hog outlives no run by more than this, even if the test is killed before it kills it


def hogs(cores: set[int], per_core: int = 1) -> list[subprocess.Popen]:
    """`per_core` busy loops per usable core, pinned to our cores, each bounded in time (`go` once it spins)."""
    code = ("import os, sys, time\n"
            f"os.sched_setaffinity(0, {sorted(cores)!r})\n"
            "sys.stdout.write('go\\n'); sys.stdout.flush()\n"
            f"t = time.monotonic()\nwhile time.monotonic() - t < {HOG_S}: pass\n")
    return [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
            for _ in range(per_core * len(cores))]


def test_a_run_beside_a_cpu_hog_says_it_was_contended(tmp_path):
    quiet, _ = run_workload(parse_workload(WL), out_dir=tmp_path / "quiet")
    cores = os.sched_getaffinity(0)
    procs = hogs(cores)
    try:
        assert [p.stdout.readline() for p in procs] == ["go\n"] * len(procs)  # all spinning (EOF if one died)
        busy, _ = run_workload(parse_workload(WL), out_dir=tmp_path / "busy")
    finally:
        for p in procs:
            p.kill()
            p.wait()

    rec = busy["records"][0]["contention"]
    assert rec["usable_cpus"] == usable_cpus() and rec["timed_s"] > 0
    why = contended(busy)
    assert why is not None and "other processes kept" in why, rec
    assert busy["contention"]["contended"] is True and busy["contention"]["reason"] == why
    # the hogs had about half of every core: well past the 0.25 threshold
    assert rec["other_cpu_cores"] >= 0.25 * rec["usable_cpus"], rec

    outside = contended(quiet)
    if outside is not None:
        pytest.skip(f"the machine was busy with other work during the quiet run: {outside}")
    assert quiet["contention"] == {**quiet["contention"], "contended": False, "reason": None}
    assert quiet["records"][0]["contention"]["contended"] is False
