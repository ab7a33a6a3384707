"""One 4-rank gloo run of the EP harness, shared by the end-to-end tests (spawning ranks is the slow part)."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="session")
def ep(tmp_path_factory):
    """({run name: profile section}, output dir, cores other processes kept busy during the run)."""
    from tests.profile import ep_harness
    from moebench.machine import OthersCpu

    out = tmp_path_factory.mktemp("ep4")
    with OthersCpu() as load:
        res = ep_harness.run(ep_harness.SPEC, out)
    (out / "results.json").write_text(json.dumps(res))
    return res, out, load.cores
