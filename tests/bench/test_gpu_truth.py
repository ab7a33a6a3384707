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
    spec = importlib.util.spec_from_file_location("gpu_truth", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_truth"] = mod  # its dataclasses look their module up while the class is made
    spec.loader.exec_module(mod)
    yield mod
    del sys.modules["gpu_truth"]


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


def test_engine_rows_take_energy_from_the_records_only(gt, dry_run):
    doc = load_result(json.loads((dry_run[1] / "gpu_truth.json").read_text())["stages"]["engine"]["result"]["eager"]["path"])
    rec = doc["records"][0]
    rec["metrics"]["joules_per_token"] = {"median": 0.25}
    rec["energy_source"], rec["energy_scope"] = "nvml", "NVML total energy of GPU 0 (board power)"
    rows = gt.engine_rows(doc)
    assert (rows[0]["joules_per_token"], rows[0]["energy_source"]) == (0.25, "nvml")
    assert rows[0]["energy_scope"] == "NVML total energy of GPU 0 (board power)"
    # a record without a figure stays without one: no second meter fills it in
    assert all(r["joules_per_token"] is None or r["energy_source"] != "not measured" for r in rows)
    assert not hasattr(gt, "BatchEnergy")


def _point(T, provider, us, pct, vs, rows_per_expert):
    return {"tokens": T, "provider": provider, "status": "ok", "rows_per_expert": rows_per_expert,
            "time_us": {"median": us}, "gbps": {"median": 1.0}, "pct_roof_measured": pct, "vs": vs,
            "cuda_graph": True}


def test_targets_read_a_gpu_run_the_way_the_issue_states_them(gt):
    roofs = {"mem_gbps": 3000.0, "mem_probe": "copy", "matmul_tflops": 790.0, "matmul_probe": "mm"}
    kernels = [{"workload": {"name": "qwen3-30b-a3b"}, "hardware": {"measured_roofs": roofs}, "points": [
        _point(8, "triton", 100.0, 83.0, {"torch-grouped": 2.0, "dense-equiv": 0.1}, 0.5),
        _point(64, "triton", 200.0, 68.0, {"torch-grouped": 1.5}, 4.0),  # the decode bar missed here
        _point(8192, "triton", 900.0, 50.0, {"torch-grouped": 0.9, "dense-equiv": 0.85}, 512.0)]}]
    row = {"decode_note": None, "basis": "extrapolated", "layers": "4/32", "ttft_ms": 30.0,
           "mfu_prefill_measured_roof": 0.5, "joules_per_token": 0.1, "energy_source": "x"}
    engine = {"cuda_graph": {"rows": [row | {"model": "llama3:8b", "batch": 1, "decode_mode": "cuda_graph", "tpot_ms": 6.0,
                                              "mbu_decode_measured_roof": 0.65}], "roofs": None, "kernels": "triton"},
              "eager": {"rows": [row | {"model": "llama3:8b", "batch": 1, "decode_mode": "eager", "tpot_ms": 15.0,
                                        "mbu_decode_measured_roof": 0.26}], "roofs": None, "kernels": "triton"}}
    stages = {"kernels": gt.StageRun("kernels", None, result=kernels), "engine": gt.StageRun("engine", None, result=engine),
              "projection": gt.StageRun("projection", None, result={
        "source": "runs/g.json", "uncalibrated": [], "calibrated": [], "fit": None, "worst_uncalibrated_factor": 1.25})}
    got = {t["target"]: (t["measured"], t["met"]) for t in gt.targets(stages, dry_run=False)}
    detail = {t["target"]: t["detail"] for t in gt.targets(stages, dry_run=False)}
    for name in ("engine CUDA-graph decode MBU, Llama B=1", "CUDA graphs vs eager decode, Llama B=1"):
        assert "measured on 4 of 32 layers" in detail[name]  # not a full-depth figure
    assert got == {
        "engine CUDA-graph decode MBU, Llama B=1": (0.65, True),
        "CUDA graphs vs eager decode, Llama B=1": (2.5, False),  # 15 ms eager / 6 ms graph
        "fused MoE decode, 8 <= T <= 64": (68.0, False),
        "fused MoE never slower than grouped-mm": (0.9, False),  # the prefill point counts too
        "fused MoE prefill, >= 512 rows per expert": (0.85, True),
        "uncalibrated projection vs measurement": (1.25, True),
    }
    assert all(t["met"] is None for t in gt.targets(stages, dry_run=True))
    doc = {"device_name": "H100", "dry_run": False, "created_utc": "now", "environment": {}, "plan": [],
           "plan_total_s": 1.0, "wall_s": 2.0, "targets": gt.targets(stages, dry_run=False)}
    md = gt.summary_md(doc, stages)
    assert "| llama3:8b | 1 | cuda_graph / eager | 30.0 | 6.00 | 15.00 | 2.50 | 65% | 26% |" in md
    assert "| qwen3-30b-a3b | 8192 | 512.0 | triton (graph) | 900.0 |" in md
    assert "× dense at 512 rows/expert 0.85" in gt.summary_md(doc, stages, brief=True)


def test_an_uninstalled_tree_still_finds_its_models_hardware_and_kernels(tmp_path):
    # the lease runs the working tree, not an installed moebench: hide the installed distribution as the lease lacks it
    code = """
import importlib.metadata as md
orig = md.distributions
md.distributions = lambda **kw: (d for d in orig(**kw)
                                 if d.metadata["Name"] != "moebench" or "gpu_truth-" in str(getattr(d, "_path", "")))
assert not md.entry_points(group="moebench.models")
import importlib.util, sys
spec = importlib.util.spec_from_file_location("gpu_truth", sys.argv[1])
gt = importlib.util.module_from_spec(spec); sys.modules["gpu_truth"] = gt; spec.loader.exec_module(gt)
tmp = gt.ensure_entry_points()
assert tmp is not None and gt.ensure_entry_points() is None  # found now: no second copy
from moebench.catalog import get_hardware
from moebench.models import resolve_name
from moebench.models.common.ops import backend_names
print(resolve_name("qwen3-moe:30b-a3b")[1].n_routed_experts, get_hardware("h100_sxm").id, backend_names())
import shutil; shutil.rmtree(tmp)
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "kernels")])}
    p = subprocess.run([sys.executable, "-c", code, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split()[:2] == ["128", "h100_sxm"] and "triton" in p.stdout


def test_the_h100_plan_fits_and_shares_the_budget_in_proportion(gt):
    plan = gt.make_plan(gt.GPU)
    assert sum(p.est_s for p in plan) <= gt.PLAN_LIMIT_S
    assert sum(p.budget_s for p in plan) == pytest.approx(gt.PLAN_LIMIT_S)
    ratios = {round(p.budget_s / p.est_s, 9) for p in plan}
    assert len(ratios) == 1 and ratios.pop() >= 1.0
    # a rerun of two stages gives them the whole budget it is given, in the same proportion
    rerun = {p.name: p for p in gt.make_plan(gt.GPU, 200.0, ["engine", "projection"])}
    assert rerun["engine"].budget_s + rerun["projection"].budget_s == pytest.approx(200.0)
    assert rerun["gpu_check"].budget_s == rerun["kernels"].budget_s == 0.0
    assert rerun["engine"].budget_s / rerun["projection"].budget_s == pytest.approx(
        rerun["engine"].est_s / rerun["projection"].est_s)


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


def test_the_projection_of_an_earlier_run_needs_no_gpu(gt, dry_run, tmp_path):
    graph = json.loads((dry_run[1] / "gpu_truth.json").read_text())["stages"]["engine"]["result"]["cuda_graph"]["path"]
    assert gt.main(["--out", str(tmp_path), "--stages", "projection", "--engine-result", graph]) == 0
    doc = json.loads((tmp_path / "gpu_truth.json").read_text())
    assert [doc["stages"][n]["status"] for n in ("gpu_check", "kernels", "engine", "projection")] == [
        "skipped", "skipped", "skipped", "ok"]
    assert doc["stages"]["projection"]["result"]["source"] == graph
    assert gt.main(["--out", str(tmp_path), "--stages", "projection"]) == 5  # nothing to project: a failed stage


def test_a_kernel_point_that_disagrees_with_the_reference_fails_the_stage(gt):
    points = [{"tokens": 8, "provider": "triton", "status": "failed"}, {"tokens": 8, "provider": "torch-ref", "status": "ok"}]
    assert gt.failed_checks("kernels", [{"workload": {"name": "qwen3"}, "points": points}]) == ["qwen3 T=8 triton"]
    assert gt.failed_checks("gpu_check", {"failed": ["fused_moe tma x"]}) == ["fused_moe tma x"]
    assert gt.failed_checks("engine", {"cuda_graph": {}}) == []


def test_a_plan_over_8_minutes_fails_before_anything_runs(gt, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what the dry run sets, undone at teardown: later launches must not inherit it
    monkeypatch.setattr(gt, "PLAN_LIMIT_S", 100.0)
    assert gt.main(["--dry-run", "--out", str(tmp_path), "--stages", "projection"]) == 1
    assert "over the 100 s" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_unknown_stage_is_a_usage_error(gt, capsys):
    assert gt.main(["--out", "/nonexistent", "--stages", "gpu_check,typo"]) == 2
    assert "unknown typo" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--stages", ","], "--stages: no stage named"),
    (["--stages", "projection", "--budget-s", "0"], "--budget-s: 0 is not a positive"),
    (["--stages", "projection", "--budget-s", "-5"], "--budget-s: -5 is not a positive"),
    (["--stages", "projection", "--budget-s", "nan"], "--budget-s: nan is not a positive"),
])
def test_an_empty_stage_list_or_a_non_positive_budget_is_a_usage_error(gt, capsys, tmp_path, argv, message):
    assert gt.main(["--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_a_summary_that_raises_keeps_every_stage_s_result(gt, dry_run, tmp_path, monkeypatch, capsys):
    graph = json.loads((dry_run[1] / "gpu_truth.json").read_text())["stages"]["engine"]["result"]["cuda_graph"]["path"]

    def broken(*a, **k):
        raise KeyError("mbu_decode_measured_roof")

    monkeypatch.setattr(gt, "targets", broken)
    assert gt.main(["--out", str(tmp_path), "--stages", "projection", "--engine-result", graph]) == 70
    doc = json.loads((tmp_path / "gpu_truth.json").read_text())
    assert doc["stages"]["projection"]["status"] == "ok" and doc["stages"]["projection"]["result"]["uncalibrated"]
    assert doc["summary_error"] == "KeyError: 'mbu_decode_measured_roof'"
    assert "internal error: targets/summary" in capsys.readouterr().err
