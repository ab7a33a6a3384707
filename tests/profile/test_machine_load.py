"""The guard of the timing checks counts other processes' CPU, not ours and not our reaped children's."""

import subprocess
import sys
import time

import pytest

from tests.profile.machine_load import OthersCpu

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")

SPIN = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < {s}: pass\n"


def test_our_own_work_and_our_childrens_is_subtracted():
    # Asserted on the parts, not on `cores`, which other processes on this machine may raise at any time.
    with OthersCpu() as load:
        exec(SPIN.format(s=0.6))
        subprocess.run([sys.executable, "-c", SPIN.format(s=0.6)], check=True)
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
