"""`moebench run … --nproc N` end to end: one merged result, and a dead or hung rank as exit 5 in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.parallel.helpers import leftover_pids

pytestmark = pytest.mark.slow

# Small enough for 4 ranks on 2 cores: per batch size (1 warm-up + 2 repeats) × 4 forwards = 12 forwards.
SMALL = {
    "name": "ep4-small",
    "models": ["mixtral:debug"],
    "device": "cpu",
    "parallel": {"world_size": 4, "expert": 4, "collective_timeout_s": 5},
    "scenario": {"prompt_tokens": 16, "output_tokens": 4, "batch_sizes": [4, 8]},
    "timing": {"warmup": 1, "repeats": 2},
    "price": {"fallback_usd_per_gpu_hour": 0.1},
}


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 240) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "moebench", "run", *args], cwd=cwd, env={**os.environ, **env},
                       capture_output=True, text=True, timeout=timeout)
    return p, time.monotonic() - t0


@pytest.fixture
def small(tmp_path) -> Path:
    p = tmp_path / "ep4-small.yaml"
    p.write_text(yaml.safe_dump(SMALL))
    return p


def test_nproc_4_ep4_writes_one_merged_result(repo, small, tmp_path):
    marker = f"moebench-nproc-{uuid.uuid4().hex}"
    p, _ = _run([str(small), "--nproc", "4", "--out", str(tmp_path / "out"), "--json"], repo,
                {"MOEBENCH_TEST_MARKER": marker})
    assert p.returncode == 0, p.stderr[-3000:]
    assert "CPU oversubscribed" not in p.stderr  # OMP_NUM_THREADS unset: the launcher gives each rank its share
    doc = json.loads(p.stdout)  # exactly one JSON document on stdout, from rank 0
    assert doc["complete"] is True and doc["world_size"] == 4 and len(doc["ranks"]) == 4
    assert doc["parallel"]["expert"] == 4 and doc["parallel"]["backend"] == "gloo"
    assert [t["local_batch"] for t in doc["ranks"][3]["timings"]] == [1, 2]
    roofs = doc["hardware"]["measured_roofs"]
    for rec in doc["records"]:
        assert rec["cost"]["n_gpus"] == 4
        # the whole run's bytes/s over the four ranks' roof (one rank's, as it was, read 4x too high)
        eff, tpot = rec["metrics"]["efficiency"], rec["metrics"]["tpot_ms"]["median"]
        assert eff["mbu_decode_measured_roof"] == pytest.approx(
            eff["decode_bytes_per_step"] / (tpot / 1e3) / (4 * roofs["mem_gbps"] * 1e9), rel=1e-6)
        # the deployment's latency per repeat is its slowest rank's
        slowest = [max(r["timings"][doc["records"].index(rec)]["tpot_ms"]["samples"][i] for r in doc["ranks"])
                   for i in range(2)]
        assert rec["metrics"]["tpot_ms"]["samples"] == slowest
    assert [json.loads(f.read_text())["run_id"] for f in (tmp_path / "out").glob("*.json")] == [doc["run_id"]]
    assert leftover_pids(marker) == []


@pytest.mark.parametrize("fault", ["kill", "hang"])
def test_dead_or_hung_rank_exits_5_in_one_line_with_partial_results(repo, tmp_path, fault):
    """Rank 1 of an EP=2 run dies (SIGKILL) or hangs during the second batch size; the first record survives.

    Two ranks rather than four: the failure path is the same, and each rank's start-up is the cost here."""
    wl = tmp_path / "ep2-small.yaml"
    wl.write_text(yaml.safe_dump({**SMALL, "parallel": {"world_size": 2, "expert": 2, "collective_timeout_s": 5}}))
    marker = f"moebench-fault-{uuid.uuid4().hex}"
    stamp = tmp_path / "fault-time"
    env = {"MOEBENCH_TEST_MARKER": marker, f"MOEBENCH_TEST_{fault.upper()}_RANK": "1",
           "MOEBENCH_TEST_KILL_AFTER_STEPS": "14", "MOEBENCH_TEST_FAULT_STAMP": str(stamp)}
    p, _ = _run([str(wl), "--nproc", "2", "--out", str(tmp_path / "out")], repo, env, timeout=240)
    ended = time.time()
    assert p.returncode == 5, p.stderr[-3000:]
    assert ended - float(stamp.read_text()) < 60, "the failure took a minute or more to surface"
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, p.stderr
    assert "Traceback" not in p.stderr and "ChildFailedError" not in p.stderr, p.stderr
    line = errors[0]
    assert line.startswith("error: rank 1 of 2 ")
    assert ("SIGKILL" if fault == "kill" else "hung") in line
    (partial,) = (tmp_path / "out").glob("*.json")
    assert str(partial) in line
    doc = json.loads(partial.read_text())
    assert doc["complete"] is False and doc["failed_ranks"] == [1]
    assert len(doc["records"]) == 1 and doc["records"][0]["batch_size"] == 4
    assert line.startswith(f"error: {doc['error']}")
    deadline = time.monotonic() + 5  # the launcher has reaped its ranks when it returns; allow for /proc lag
    while leftover_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftover_pids(marker) == []


@pytest.mark.parametrize("rank", ["0", "1"])
def test_a_rank_aborted_in_the_teardown_after_the_work_leaves_the_run_whole(repo, tmp_path, rank):
    """gloo sometimes aborts a rank (SIGABRT) while destroying the process group, after every collective returned:
    the results rank 0 saved are whole, so the run stands (exit 0, complete) and a note says what happened."""
    wl = tmp_path / "ep2-small.yaml"
    wl.write_text(yaml.safe_dump({**SMALL, "parallel": {"world_size": 2, "expert": 2, "collective_timeout_s": 5}}))
    p, _ = _run([str(wl), "--nproc", "2", "--out", str(tmp_path / "out")], repo,
                {"MOEBENCH_TEST_ABORT_TEARDOWN_RANK": rank}, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    (result,) = (tmp_path / "out").glob("*.json")
    doc = json.loads(result.read_text())
    assert doc["complete"] is True and "error" not in doc and len(doc["records"]) == 2
    notes = [line for line in p.stderr.splitlines() if line.startswith("note: rank")]
    assert notes == [f"note: rank {rank} (killed by SIGABRT) of 2 died in the process group's teardown, after every "
                     f"rank had finished; the results in {result} are whole"], p.stderr
    assert "error:" not in p.stderr and "Traceback" not in p.stderr


def _main(args: list[str], capsys) -> tuple[int, str]:
    """The CLI in this process (no subprocess start-up): (exit code, stderr)."""
    from moebench.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["run", *args])
    return exit_.value.code, capsys.readouterr().err


def test_world_size_must_match_the_launcher(small, tmp_path, capsys, monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    code, err = _main([str(small), "--out", str(tmp_path)], capsys)
    assert (code, err) == (3, f"error: {small}: parallel.world_size is 4 but 1 rank(s) were launched; run with --nproc 4\n")
    code, err = _main([str(small), "--nproc", "2", "--out", str(tmp_path)], capsys)
    assert (code, err) == (3, f"error: {small}: parallel.world_size is 4 but --nproc is 2\n")
    monkeypatch.setenv("WORLD_SIZE", "2")  # under torchrun with 2 ranks
    monkeypatch.setenv("RANK", "0")
    code, err = _main([str(small), "--out", str(tmp_path)], capsys)
    assert (code, err) == (3, f"error: {small}: parallel.world_size is 4 but 2 rank(s) were launched; run with world_size: 2 in the workload\n")


def test_plan_that_cannot_split_the_model_is_bad_input(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    cases = [
        ({"world_size": 3, "expert": 3}, SMALL["scenario"], "parallel.expert: 3 does not divide the 8 experts of mixtral:debug"),
        ({"world_size": 4, "expert": 4}, {**SMALL["scenario"], "batch_sizes": [6]},
         "scenario.batch_sizes: 6 is not divisible by the 4 data-parallel attention replicas (world_size / dense group 1)"),
        ({"world_size": 3, "tensor": 3}, SMALL["scenario"],
         "parallel.tensor = 3 does not divide the 8 attention heads of mixtral:debug"),
    ]
    for par, scenario, msg in cases:
        path = tmp_path / "plan.yaml"
        path.write_text(yaml.safe_dump({**SMALL, "parallel": par, "scenario": scenario}))
        code, err = _main([str(path), "--nproc", str(par["world_size"]), "--out", str(tmp_path)], capsys)
        assert (code, err) == (3, f"error: {path}: {msg}\n")


def test_threads_that_oversubscribe_the_cpu_are_named(repo, small, tmp_path):
    from moebench.machine import usable_cpus

    cores = usable_cpus()  # what the note counts: the affinity mask, not the host
    p, _ = _run([str(small), "--nproc", "4", "--out", str(tmp_path / "out")], repo, {"OMP_NUM_THREADS": str(cores)})
    assert p.returncode == 0, p.stderr[-3000:]
    lines = [x for x in p.stderr.splitlines() if "CPU oversubscribed" in x]
    assert len(lines) == 1, lines  # rank 0 says it once for the host
    assert f"4 ranks x {cores} threads on {cores} cores" in lines[0]


def test_only_a_death_by_signal_after_every_rank_finished_counts_as_teardown(tmp_path):
    """A crash of its own after the work (exit 70 printing the table) is still a failure; a rank the agent stopped
    (SIGTERM, or 130 through moebench's handler) is never what went wrong."""
    from types import SimpleNamespace as F

    from moebench.parallel.launch import _torn_down

    for r in range(2):
        (tmp_path / f"rank{r}.done").touch()
    assert _torn_down({1: F(exitcode=-6)}, tmp_path, 2)
    assert _torn_down({0: F(exitcode=130), 1: F(exitcode=-6)}, tmp_path, 2)
    assert not _torn_down({0: F(exitcode=70)}, tmp_path, 2)
    (tmp_path / "rank1.done").unlink()
    assert not _torn_down({1: F(exitcode=-6)}, tmp_path, 2)  # rank 1's work was not whole


def test_a_rank_stopped_before_its_report_is_not_named_when_another_failed_by_itself(tmp_path):
    """Rank 0 failed by itself (its report says so) and the agent stopped rank 1 before rank 1 wrote one: the line
    names rank 0, whether rank 1 went by the signal itself or through moebench's handler (130)."""
    from types import SimpleNamespace as F

    from moebench.parallel.launch import _verdict

    launch = tmp_path / "launch"
    launch.mkdir()
    (launch / "rank0.json").write_text(json.dumps(
        {"rank": 0, "kind": "local", "culprits": [0], "message": "rank 0 of 2 failed: disk full"}))
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"records": [{"batch_size": 2}]}))
    wl = F(model_entries=[F(name="m")], scenario=F(batch_sizes=[2, 4]))
    for stopped in (-15, 130):
        exc = _verdict({0: F(exitcode=5), 1: F(exitcode=stopped)}, launch, 2, partial, wl, "wl.yaml")
        assert str(exc).startswith("rank 0 of 2 failed: disk full; partial results in "), (stopped, str(exc))
    exc = _verdict({0: F(exitcode=5), 1: F(exitcode=-9)}, launch, 2, partial, wl, "wl.yaml")
    assert str(exc).startswith("rank 1 of 2 died (killed by SIGKILL) (during m batch 4)"), str(exc)


def test_a_failed_teardown_barrier_is_a_peers_failure_that_keeps_whole_results(tmp_path, monkeypatch):
    """Another rank failed after this one's work was whole: exit 5 with a peer report that names no culprit (the
    heartbeats stopped with the guard, so every rank would look dead), and rank 0 does not rewrite its whole
    results as partial. It was an internal error (exit 70), which the launcher then named as the culprit."""
    from types import SimpleNamespace as F

    from moebench.parallel import comm, faults

    class Store:
        def set(self, key, value):
            pass

    def barrier():
        raise comm.CollectiveFailed("barrier", RuntimeError("Connection closed by peer"))

    monkeypatch.setenv(faults.LAUNCH_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(faults, "shutdown", lambda: None)
    monkeypatch.setattr(faults.os, "_exit", lambda code: (_ for _ in ()).throw(SystemExit(code)))
    monkeypatch.setattr(faults.Guard, "diagnose", lambda self: pytest.fail("the heartbeats were read"))
    ctx = F(rank=0, world_size=2, is_rank0=True, store=Store(), barrier=barrier, timeout_s=60.0)
    guard = faults.Guard(ctx)
    guard.save = lambda msg, culprits: pytest.fail("whole results rewritten as partial")
    with pytest.raises(SystemExit) as e:
        guard.finish()
    assert e.value.code == 5
    report = json.loads((tmp_path / "rank0.json").read_text())
    assert report["kind"] == "peer" and report["culprits"] == [] and (tmp_path / "rank0.done").exists()
    assert report["message"] == ("the run stopped on rank 0 of 2: barrier fail: Connection closed by peer "
                                 "(during the teardown, after this rank's work was whole)")


def test_a_refusal_every_rank_makes_is_its_own_exit_code_once(tmp_path, repo, small):
    """Exit 3 or 4 from a rank that said why, beside ranks the agent then stopped, is that exit code (no culprit,
    no results file); a --device the machine lacks is refused before any rank starts."""
    from types import SimpleNamespace as F

    from moebench.parallel.launch import _verdict

    for stopped in (-15, 130, 4):
        exc = _verdict({0: F(exitcode=4), 1: F(exitcode=stopped)}, tmp_path, 2, tmp_path / "p.json", None, "w.yaml")
        assert isinstance(exc, SystemExit) and exc.code == 4, exc
    assert not (tmp_path / "p.json").exists()
    p, _ = _run([str(small), "--nproc", "4", "--device", "cuda", "--out", str(tmp_path / "out")], repo, {})
    assert p.returncode == 4 and p.stderr.count("error:") == 1 and "no CUDA GPU" in p.stderr, p.stderr
    assert not (tmp_path / "out").exists()
