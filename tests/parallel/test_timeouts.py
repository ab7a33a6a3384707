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


@pytest.mark.slow
@pytest.mark.parametrize("after", ["batch 4:", "batch 2:"])
def test_sigterm_to_the_launcher_stops_every_rank_and_names_the_partial_results(tmp_path, after):
    """What a scheduler does to `moebench run --nproc 2`: SIGTERM once measuring began. As with Ctrl-C: exit 130,
    one line naming the partial results (marked incomplete, with the reason), and no rank left running; inside the
    first batch size, nothing whole to save: no file, and the line says so."""
    import json
    import signal
    import time
    import uuid

    import yaml

    from tests.cli.conftest import read_stderr_until, start_moebench
    from tests.parallel.helpers import leftover_pids

    wl = tmp_path / "ep2.yaml"
    wl.write_text(yaml.safe_dump({
        "name": "ep2", "models": ["mixtral:debug"], "device": "cpu", "roofs": False,
        "parallel": {"world_size": 2, "expert": 2, "collective_timeout_s": 20},
        "scenario": {"prompt_tokens": 16, "output_tokens": 4, "batch_sizes": [2, 4, 8]},
        "timing": {"warmup": 1, "repeats": 100}, "price": {"fallback_usd_per_gpu_hour": 0.1}}))
    marker = f"moebench-term-{uuid.uuid4().hex}"
    p = start_moebench("run", str(wl), "--nproc", "2", "--out", str(tmp_path / "out"),
                       env={"MOEBENCH_TEST_MARKER": marker})
    try:
        seen = read_stderr_until(p, after)  # measuring has begun (batch 4: batch 2 is whole)
        time.sleep(1.0)
        p.send_signal(signal.SIGTERM)
        _, rest = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, (seen, rest)
    assert "Traceback" not in rest
    errors = [ln for ln in rest.splitlines() if ln.startswith("error:")]
    if after == "batch 2:":
        assert errors == ["error: interrupted (SIGTERM) before the first record was whole; nothing saved"], rest
        assert not list((tmp_path / "out").glob("*.json"))
    else:
        assert len(errors) == 1 and errors[0].startswith("error: interrupted (SIGTERM); partial results in "), rest
        doc = json.loads(open(errors[0].rsplit(" ", 1)[1]).read())
        assert doc["complete"] is False and doc["error"] == "interrupted (SIGTERM)"
        assert [r["batch_size"] for r in doc["records"]] == [2]
    deadline = time.monotonic() + 5
    while leftover_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftover_pids(marker) == []
