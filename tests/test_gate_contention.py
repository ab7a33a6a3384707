"""The gate on a contended machine: a side timed while other processes took its CPUs gives `inconclusive` with
the reason, never `regressed` (and a contended baseline settles nothing); `compare` says which side was busy."""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

import pytest

from moebench.gate import gate
from moebench.machine import CONTENDED_SHARE
from tests.report.conftest import run_main

REAL_RUN = Path(__file__).parent / "report" / "data" / "runs" / "tiny-extrapolated.json"
BUSY = {"other_cpu_cores": 1.8, "usable_cpus": 2, "timed_s": 3.0, "other_gpu_processes": None,
        "threshold_share": CONTENDED_SHARE, "contended": True}
QUIET = {**BUSY, "other_cpu_cores": 0.05, "contended": False}


def _run(slower: float = 1.0, contention: dict | None = None, run_id: str = "r") -> dict:
    """The real run, its timing samples scaled by `slower` (every derived metric with them), each record marked
    with `contention`."""
    doc = copy.deepcopy(json.loads(REAL_RUN.read_text()))
    doc["run_id"] = run_id
    for rec in doc["records"]:
        rec["contention"] = contention
        m = rec["metrics"]
        for path, f in (("ttft_ms", slower), ("tpot_ms", slower), ("output_tokens_per_s_per_gpu", 1 / slower)):
            m[path] = {**m[path], "samples": [x * f for x in m[path]["samples"]], "median": m[path]["median"] * f}
        blended = m["usd_per_mtok"]["blended"]
        m["usd_per_mtok"]["blended"] = {**blended, "samples": [x * slower for x in blended["samples"]]}
    return doc


def _pin_process(cpus: set[int]) -> None:
    """Every thread of this process onto `cpus` (threads started later inherit it from the main thread)."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:  # a thread that ended meanwhile
            pass


def _statuses(res) -> set[str]:
    return {r.status for r in res.rows}


def test_a_contended_current_run_is_inconclusive_not_regressed():
    base, cur = _run(run_id="base"), _run(slower=3.0, contention=BUSY, run_id="cur")
    plain = gate([base], [_run(slower=3.0, run_id="cur")])
    assert plain.verdict == "regression" and "regressed" in _statuses(plain)  # what it said before
    res = gate([base], [cur])
    assert res.verdict == "inconclusive" and "regressed" not in _statuses(res)
    held = [r for r in res.rows if r.status == "inconclusive"]
    assert len(held) == sum(r.status == "regressed" for r in plain.rows)
    assert all(r.contended.startswith("the current run ran contended (cur: other processes kept 1.80 of 2") for r in held)
    assert any(n.startswith("current: 4 record(s) timed on a contended machine") for n in res.notes)


def test_a_contended_current_run_that_passes_passes():
    res = gate([_run(run_id="base")], [_run(contention=BUSY, run_id="cur")])
    assert res.verdict == "ok" and _statuses(res) == {"ok"}


def test_against_a_contended_baseline_nothing_is_settled():
    res = gate([_run(contention=BUSY, run_id="base")], [_run(contention=QUIET, run_id="cur")])
    assert _statuses(res) == {"inconclusive"}
    assert all(r.contended.startswith("the baseline ran contended (base: ") for r in res.rows)


def test_the_command_exits_0_and_says_why(tmp_path, capsys):
    paths = []
    for name, d in (("base.json", _run(run_id="base")), ("cur.json", _run(slower=3.0, contention=BUSY, run_id="cur"))):
        (tmp_path / name).write_text(json.dumps(d))
        paths.append(str(tmp_path / name))
    code, out, err = run_main(["gate", "--baseline", paths[0], paths[1], "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["verdict"] == "inconclusive"
    assert "were timed on a contended machine" in " ".join(err.split())


def test_the_table_says_the_busy_reason_once(tmp_path, capsys):
    """Each held-back row says only "busy" and which side; the reason stands once, under the table; the JSON keeps
    it on every row."""
    paths = []
    for name, d in (("base.json", _run(run_id="base")), ("cur.json", _run(slower=3.0, contention=BUSY, run_id="cur"))):
        (tmp_path / name).write_text(json.dumps(d))
        paths.append(str(tmp_path / name))
    code, out, _ = run_main(["gate", "--baseline", *paths], capsys)
    assert code == 0
    held = [line for line in out.splitlines() if line.startswith("│") and "inconclusive" in line]
    assert len(held) == 9 and all(line.split("│")[-2].strip() == "inconclusive: busy current run, else regressed"
                                  for line in held)
    assert out.count("other processes kept") == 1
    (under,) = [line for line in out.splitlines() if "other processes kept" in line]
    assert under.startswith("busy machine: 9 verdict(s) held back as inconclusive — the current run ran contended")
    assert len(out.splitlines()) < 30  # 16 rows, a line each, not five
    code, out, _ = run_main(["gate", "--baseline", *paths, "--json"], capsys)
    rows = [r for r in json.loads(out)["rows"] if r["status"] == "inconclusive"]
    assert len(rows) == 9 and all("other processes kept 1.80" in r["reason"] and r["contended"] for r in rows)
    assert all("held_back" not in r for r in rows)  # the documented row fields, no more
    code, out, _ = run_main(["gate", "--baseline", paths[1], paths[0]], capsys)  # the busy run as the baseline
    assert all(line.split("│")[-2].strip().startswith("inconclusive: busy baseline, else ")
               for line in out.splitlines() if line.startswith("│"))


def test_compare_states_each_sides_contention(tmp_path, capsys):
    paths = []
    for name, d in (("quiet.json", _run(contention=QUIET, run_id="q")), ("busy.json", _run(contention=BUSY, run_id="b")),
                    ("old.json", _run(run_id="o"))):
        d["git_commit"] = name[0] * 40  # three labels
        (tmp_path / name).write_text(json.dumps(d))
        paths.append(str(tmp_path / name))
    code, out, _ = run_main(["compare", *paths, "--json"], capsys)
    assert code == 0
    res = json.loads(out)
    assert [r["contention"]["recorded"] for r in res["runs"]] == [True, True, False]
    assert [bool(r["contention"]["contended"]) for r in res["runs"]] == [False, True, False]
    busy = res["runs"][1]["label"]
    assert any(n.startswith(f"{busy} ran on a contended machine (llama3:debug batch 1: other processes kept 1.80")
               for n in res["notes"])
    code, out, _ = run_main(["compare", *paths], capsys)
    assert "contended" in out and "quiet" in out and "not recorded" in out


# --------------------------------------------------------------------------- must show: real runs, a real hog
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_two_identical_runs_one_beside_a_cpu_hog_gate_inconclusive_not_regressed(tmp_path, capsys):
    """The same tiny workload twice, the second beside one busy loop per usable core (tests/engine/
    test_contention.py's hogs, bounded in time, killed after): the hog's result says it was contended, and the
    gate holds back the regression its slowdown would otherwise be called."""
    from moebench.engine.runner import run_workload
    from moebench.machine import contended
    from moebench.workload import parse_workload
    from tests.engine.test_contention import WL, hogs

    wl = parse_workload({**WL, "timing": {"warmup": 1, "repeats": 7}})  # 7 vs 7: Mann-Whitney can reach p < 0.002
    quiet, quiet_path = run_workload(wl, out_dir=tmp_path / "quiet")
    # One busy loop per core beside a run free to use every core let the scheduler shield a run this small now and
    # then (CI runs: busy medians 8 % faster, only the tail slowed; a 31 % faster TTFT median, no metric regressed).
    # So the busy run is pinned, every thread of it (as taskset pins a process: pinning only the main thread leaves
    # the intra-op threads' CPU on another core, and the record reads the pinned core as quiet), to one core with two
    # loops on it: a slowdown the gate cannot miss. Three tries all the same: a recorded, regression-causing
    # contention is what this test needs the hog to cause.
    cores = os.sched_getaffinity(0)
    one = {min(cores)}
    for attempt in range(3):
        procs = hogs(one, per_core=2)
        try:
            assert [p.stdout.readline() for p in procs] == ["go\n"] * len(procs)  # all spinning (EOF if one died)
            _pin_process(one)
            busy, busy_path = run_workload(wl, out_dir=tmp_path / f"busy{attempt}")
        finally:
            _pin_process(cores)
            for p in procs:
                p.kill()
                p.wait()
        blind = gate([_without_contention(quiet)], [_without_contention(busy)])  # what the gate said before
        regressed = {(r.model, r.batch_size, r.metric) for r in blind.rows if r.status == "regressed"}
        if (regressed or contended(quiet)) and contended(busy):
            break

    why = contended(busy)
    assert why is not None and "other processes kept" in why
    res = gate([quiet], [busy])
    assert "regressed" not in _statuses(res) and res.verdict != "regression"
    held = {(r.model, r.batch_size, r.metric) for r in res.rows if r.status == "inconclusive" and r.contended}
    assert regressed <= held  # every regression the hog caused is held back, with the reason
    if contended(quiet):  # someone else's load during the quiet run: nothing against it is settled
        assert "inconclusive" in _statuses(res) <= {"inconclusive", "skipped"}  # skipped: no price, no $/M
    else:
        assert regressed, f"the hog did not slow the run enough to be called a regression: {blind.to_json()['rows']}"
        assert res.verdict == "inconclusive"

    code, out, err = run_main(["gate", "--baseline", str(quiet_path), str(busy_path)], capsys)
    assert code == 0, err
    assert "inconclusive" in out and "contended machine" in " ".join(err.split())


def _without_contention(doc: dict) -> dict:
    doc = copy.deepcopy(doc)
    for rec in doc["records"]:
        rec["contention"] = None
    return doc
