"""One 4-rank gloo run of the EP harness, shared by the end-to-end tests (spawning ranks is the slow part)."""

from __future__ import annotations

import json
import os

import pytest


@pytest.fixture(scope="session")
def ep(tmp_path_factory):
    """({run name: profile section}, output dir, load average before the run)."""
    from tests.profile import ep_harness

    out = tmp_path_factory.mktemp("ep4")
    busy = os.getloadavg()[0]  # before our 4 ranks start: other people's work on this machine
    res = ep_harness.run(ep_harness.SPEC, out)
    (out / "results.json").write_text(json.dumps(res))
    return res, out, busy
