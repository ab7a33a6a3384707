"""benchmarks/gpu_truth.py: the dry run (what CI can run of the lease's one GPU check) and its stage budgets."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from moebench.results import load_result
from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_truth.py"


@pytest.fixture(scope="module")
def gt():
    sys.path.insert(0, str(SCRIPT.parent))  # gpu_truth imports gpu_check beside it
    spec = importlib.util.spec_from_file_location("gpu_truth", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_truth"] = mod  # its dataclasses look their module up while the class is made
    spec.loader.exec_module(mod)
    yield mod
    del sys.modules["gpu_truth"]
    sys.path.remove(str(SCRIPT.parent))


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gt")
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "OMP_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "kernels"), env.get("PYTHONPATH", "")])
    p = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out)], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    return p, out


def test_dry_run_plans_every_stage_within_8_minutes_and_runs_each(dry_run):
    p, out = dry_run
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads((out / "gpu_truth.json").read_text())
    md = (out / "gpu_truth.md").read_text()
    assert [s["name"] for s in doc["plan"]] == ["gpu_check", "kernels", "engine", "projection"]
    assert all(s["est_s"] > 0 and s["basis"] and s["steps"] for s in doc["plan"])
    assert doc["plan_total_s"] == pytest.approx(sum(s["est_s"] for s in doc["plan"]))
    assert doc["plan_total_s"] <= 480
    for name, st in doc["stages"].items():
        assert st["status"] == "ok" or (st["status"] in ("skipped", "partial") and st["reason"]), (name, st)
    # on CPU every stage can run at tiny sizes, and does
    assert {n: s["status"] for n, s in doc["stages"].items()} == dict.fromkeys(doc["stages"], "ok")
    assert "| projection | ok |" in md and p.stdout.startswith("# gpu_truth")


def test_dry_run_checks_both_gemm_paths_under_the_interpreter(dry_run):
    doc = json.loads((dry_run[1] / "gpu_truth.json").read_text())
    check = doc["stages"]["gpu_check"]["result"]
    assert check["failed"] == [] and all(c["ok"] for c in check["checks"])
    assert check["paths"]["pointer"] > 0 and check["paths"]["tma"] > 0 and check["paths"]["tma asked, pointer ran"] > 0


def test_dry_run_engine_results_are_result_documents_the_projection_reads(dry_run):
    doc = json.loads((dry_run[1] / "gpu_truth.json").read_text())
    engine = doc["stages"]["engine"]["result"]
    assert set(engine) == {"cuda_graph", "eager"}
    for mode, run in engine.items():
        result = load_result(run["path"])  # a real `moebench run` document: report/compare/project read it
        assert result["workload"]["cuda_graph"] is (mode == "cuda_graph")
        assert [(r["model"], r["batch"]) for r in run["rows"]] == [
            (m, b) for m in ("llama3:debug", "qwen3-moe:debug") for b in (1, 2)]
        assert all(r["decode_mode"] == "eager" for r in run["rows"])  # no CUDA: graphs cannot be what ran
    proj = doc["stages"]["projection"]["result"]
    assert proj["source"] == engine["cuda_graph"]["path"]
    assert len(proj["uncalibrated"]) == len(proj["calibrated"]) == 4 and proj["fit"]["roofs_basis"] == "measured"
    kernels = doc["stages"]["kernels"]["result"]
    assert [k["workload"]["name"] for k in kernels] == ["qwen3-30b-a3b", "mixtral-8x7b", "gpt-oss-120b", "deepseek-v3"]
    # triton is not timed on CPU and says why; the torch providers are checked against the reference and timed
    for k in kernels:
        by = {p["provider"]: p for p in k["points"]}
        assert by["triton"]["status"] == "skipped" and "CUDA" in by["triton"]["reason"]
        assert by["torch-ref"]["status"] == "ok" and by["torch-ref"]["check"]["passed"]
    # a CPU run claims nothing about the GPU targets
    assert doc["targets"] and all(t["met"] is None for t in doc["targets"])


def test_the_h100_plan_fits_and_shares_the_budget_in_proportion(gt):
    plan = gt.make_plan(gt.GPU)
    assert sum(p.est_s for p in plan) <= gt.PLAN_LIMIT_S
    assert sum(p.budget_s for p in plan) == pytest.approx(gt.PLAN_LIMIT_S)
    ratios = {round(p.budget_s / p.est_s, 9) for p in plan}
    assert len(ratios) == 1 and ratios.pop() >= 1.0


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_a_spent_budget_stops_a_stage_between_steps_and_says_so(gt, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(gt.time, "monotonic", clock)

    def three_steps(st):
        st.result = []
        for label in ("a", "b", "c"):
            st.step(label)
            st.result.append(label)
            clock.t += 6.0

    st = gt.run_stage(gt.StageRun("kernels", budget_s=10.0), three_steps, lambda m: None)
    assert (st.status, st.steps_done, st.steps_skipped) == ("partial", ["a", "b"], ["c"])
    assert st.result == ["a", "b"]  # what the finished steps made is kept
    assert "budget of 10 s spent" in st.reason and st.wall_s == 12.0
    st = gt.run_stage(gt.StageRun("engine", budget_s=0.0), three_steps, lambda m: None)
    assert (st.status, st.steps_done) == ("skipped", []) and "before a" in st.reason


def test_a_stage_that_raises_is_recorded_as_failed(gt):
    def boom(st):
        st.step("only")
        raise RuntimeError("kernel exploded\nsecond line")

    st = gt.run_stage(gt.StageRun("gpu_check", budget_s=None), boom, lambda m: None)
    assert st.status == "failed" and st.reason == "RuntimeError: kernel exploded" and "Traceback" in st.error


def test_projection_without_an_engine_result_fails_with_a_reason(gt):
    st = gt.run_stage(gt.StageRun("projection", budget_s=None), lambda s: gt.stage_projection(None, s, print),
                      lambda m: None)
    assert st.status == "failed" and "no engine result" in st.reason


def test_a_kernel_point_that_disagrees_with_the_reference_fails_the_stage(gt):
    points = [{"tokens": 8, "provider": "triton", "status": "failed"}, {"tokens": 8, "provider": "torch-ref", "status": "ok"}]
    assert gt.failed_checks("kernels", [{"workload": {"name": "qwen3"}, "points": points}]) == ["qwen3 T=8 triton"]
    assert gt.failed_checks("gpu_check", {"failed": ["fused_moe tma x"]}) == ["fused_moe tma x"]
    assert gt.failed_checks("engine", {"cuda_graph": {}}) == []


def test_unknown_stage_is_a_usage_error(gt, capsys):
    assert gt.main(["--out", "/nonexistent", "--stages", "gpu_check,typo"]) == 2
    assert "unknown typo" in capsys.readouterr().err
