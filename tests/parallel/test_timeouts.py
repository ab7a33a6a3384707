"""Which clock ends a hung collective: gloo's own timeout (it raises, the guard names the collective); on NCCL,
moebench's watchdog before NCCL's (the elastic agent makes NCCL abort the waiting ranks, which would then be
reported as the ones that died)."""

import pytest

from moebench.parallel.mesh import group_timeout_s, watchdog_limit_s


@pytest.mark.parametrize("t", [1.0, 60.0, 600.0])
def test_the_watchdog_fires_after_gloo_and_before_nccl(t):
    assert group_timeout_s("gloo", t) == t < watchdog_limit_s(t)
    # the watchdog checks every heartbeat (0.5 s) and diagnoses for ~1.5 s more: NCCL must wait well beyond
    assert group_timeout_s("nccl", t) >= watchdog_limit_s(t) + 10
