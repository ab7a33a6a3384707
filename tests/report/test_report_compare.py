"""`moebench compare` across hardware generations and commits: per-metric ratios, grouped by model × batch."""

from __future__ import annotations

import json

import pytest

from tests.report.conftest import run_main as run


def test_compare_two_hardware_prints_per_metric_ratios(docs, capsys):
    code, out, _ = run(["compare", str(docs["h100.json"]), str(docs["b200.json"])], capsys)
    assert code == 0
    assert "NVIDIA H100 SXM" in out and "NVIDIA B200" in out and "B/A" in out
    block = out[out.index("mixtral:8x7b · batch 8"):]
    block = block[: block.index("└")]
    tpot = next(line for line in block.splitlines() if "tpot_ms" in line)
    assert "×0.476" in tpot  # B200 run is 2.1× faster: 1/2.1
    cost = next(line for line in block.splitlines() if "usd_per_mtok_blended" in line)
    assert "×0.762" in cost  # 4.0/2.5 price ÷ 2.1 speed


def test_compare_json_groups_and_ratios(docs, capsys):
    code, out, _ = run(["compare", str(docs["h100.json"]), str(docs["b200.json"]), "--json"], capsys)
    res = json.loads(out)
    assert code == 0
    assert [r["hardware_id"] for r in res["runs"]] == ["h100_sxm", "b200"]
    assert [r["git_sha"][:1] for r in res["runs"]] == ["1", "2"]
    g = next(g for g in res["groups"] if g["model"] == "mixtral:8x7b" and g["batch_size"] == 32)
    ratios = {m["metric"]: m["ratios"]["NVIDIA B200"] for m in g["metrics"]}
    assert ratios["ttft_ms"] == pytest.approx(1 / 2.1, rel=1e-9)
    assert ratios["decode_tokens_per_s"] == pytest.approx(2.1, rel=1e-9)
    # a model only one run has still gets its group, with the other side empty
    only = next(g for g in res["groups"] if g["model"] == "qwen3-moe:235b-a22b")
    assert only["reference"] == "NVIDIA B200" and only["basis"]["NVIDIA H100 SXM"] is None


def test_compare_across_commits_on_one_machine_labels_by_sha(doc_factory, tmp_path, capsys):
    paths = []
    for i, sha in enumerate(("abcdef1" + "0" * 33, "1234567" + "0" * 33)):
        p = tmp_path / f"run{i}.json"
        p.write_text(json.dumps(doc_factory("cpu", "CPU host", 0.1, 1.0 + i, sha=sha)))
        paths.append(str(p))
    code, out, _ = run(["compare", *paths], capsys)
    assert code == 0 and "CPU host @abcdef1" in out and "CPU host @1234567" in out


def test_compare_needs_two_files(docs, capsys):
    code, out, err = run(["compare", str(docs["h100.json"])], capsys)
    assert code == 3 and "at least two" in err and out == ""


def test_compare_says_when_price_tiers_or_routing_differ(doc_factory, tmp_path, capsys):
    a, b = doc_factory("a100_sxm_80gb", "NVIDIA A100", 2.21, 1.0), doc_factory("h100_sxm", "NVIDIA H100 SXM", 2.5, 2.0)
    a["hardware"]["price"]["tier"], b["hardware"]["price"]["tier"] = "on-demand", "hyperscaler"
    a["workload"]["routing"], b["workload"]["routing"] = "uniform", "hot:0"
    paths = []
    for name, d in (("a.json", a), ("b.json", b)):
        (tmp_path / name).write_text(json.dumps(d))
        paths.append(str(tmp_path / name))
    code, out, _ = run(["compare", *paths, "--json"], capsys)
    notes = json.loads(out)["notes"]
    assert code == 0 and len(notes) == 2
    assert "different tiers (NVIDIA A100: on-demand, NVIDIA H100 SXM: hyperscaler)" in notes[0]
    assert "routing differs (NVIDIA A100: uniform, NVIDIA H100 SXM: hot:0)" in notes[1]
    code, out, _ = run(["compare", *paths], capsys)
    assert "note: prices come from different tiers" in " ".join(out.split()) and "$2.21/GPU-h (on-demand)" in out
    # one tier and one routing: nothing to say
    b["hardware"]["price"]["tier"], b["workload"]["routing"] = "on-demand", "uniform"
    (tmp_path / "b.json").write_text(json.dumps(b))
    code, out, _ = run(["compare", *paths, "--json"], capsys)
    assert json.loads(out)["notes"] == []
    # one side profiled (its times carry the profiler's overhead), the other partial
    b["records"][0]["profile"] = {"overhead": {}}
    b["complete"] = False
    (tmp_path / "b.json").write_text(json.dumps(b))
    code, out, _ = run(["compare", *paths, "--json"], capsys)
    notes = json.loads(out)["notes"]
    assert notes[0].startswith("profiled with --profile: NVIDIA H100 SXM;") and "overhead" in notes[0]
    assert notes[1] == "partial results (the run failed or was interrupted): NVIDIA H100 SXM"


def test_cpu_runs_say_per_process_not_per_gpu(doc_factory, tmp_path, capsys):
    """MEASURE.md: throughput and price per GPU, or on CPU per process, saying which — in every view."""
    paths = []
    for i in range(2):
        d = doc_factory("cpu", "CPU host", 0.1, 1.0 + i, sha=f"{i}" * 40)
        d["hardware"]["device"] = "cpu"
        (tmp_path / f"cpu{i}.json").write_text(json.dumps(d))
        paths.append(str(tmp_path / f"cpu{i}.json"))
    code, out, _ = run(["compare", *paths], capsys)
    assert code == 0 and "$0.1/process-h" in out and "GPU-h" not in out
    code, _, _ = run(["report", *paths, "--out", str(tmp_path / "r")], capsys)
    html = (tmp_path / "r" / "report.html").read_text()
    assert code == 0 and "out tok/s/process" in html and "out tok/s/GPU" not in html and "/process-h" in html
    plots = html.replace("\\u002f", "/")  # plotly's JSON escapes the slash
    assert "output tokens/s per process" in plots and "tokens/s per GPU" not in plots  # the throughput plot's axis
    assert "tok/s/%{customdata[7]}" in plots and '"process"' in plots  # and its hover


def test_compare_shows_phase_prices_and_flags_a_ratio_above_its_measured_roof(tmp_path, capsys):
    """Two real runs of one workload: the phase-attributed $/M are compared with ratios like every metric, and
    an efficiency above the roof measured in its own run is named in the notes."""
    from pathlib import Path

    real = json.loads((Path(__file__).parent / "data" / "runs" / "tiny-extrapolated.json").read_text())
    hot = json.loads(json.dumps(real))
    hot["git_commit"] = "f" * 40
    hot["records"][3]["metrics"]["efficiency"]["mfu_prefill_measured_roof"] = 1.21
    paths = []
    for name, d in (("a.json", real), ("b.json", hot)):
        (tmp_path / name).write_text(json.dumps(d))
        paths.append(str(tmp_path / name))
    code, out, _ = run(["compare", *paths, "--json"], capsys)
    assert code == 0
    res = json.loads(out)
    g = next(g for g in res["groups"] if g["model"] == "mixtral:debug" and g["batch_size"] == 4)
    shown = {m["metric"]: m for m in g["metrics"]}
    for name in ("usd_per_mtok_phase_input", "usd_per_mtok_phase_output", "usd_per_mtok_phase_blended", "e2e_ms"):
        assert list(shown[name]["ratios"].values())[1] == pytest.approx(1.0), name
    b = res["runs"][1]["label"]
    assert res["notes"] == [f"{b}: mixtral:debug batch 4: MFU/roof 121% of the roof measured in this run — above "
                            "100 %, so that roof undercounts this machine and is no ceiling here (docs/measure.md)"]


def _write(tmp_path, docs: dict) -> list[str]:
    for name, d in docs.items():
        (tmp_path / name).write_text(json.dumps(d))
    return [str(tmp_path / name) for name in docs]


def test_scores_of_different_index_versions_get_no_ratio(doc_factory, tmp_path, capsys):
    """MEASURE.md: scores of different index versions are never compared; compare put ×0.046 between v2 and v3."""
    a, b = doc_factory("h100_sxm", "NVIDIA H100 SXM", 2.5, 1.0), doc_factory("b200", "NVIDIA B200", 4.0, 2.0)
    for r in b["records"]:
        r["intelligence"]["version"] = "v2"
    code, out, _ = run(["compare", *_write(tmp_path, {"a.json": a, "b.json": b}), "--json"], capsys)
    res = json.loads(out)
    assert code == 0
    for g in res["groups"]:
        ratios = {m["metric"]: m["ratios"]["NVIDIA B200"] for m in g["metrics"]}
        assert ratios["intelligence_score_per_usd_per_mtok"] is None and ratios["tpot_ms"] is not None
    assert any("different index versions" in n and "v2" in n and "v3" in n for n in res["notes"])
    for r in b["records"]:  # the same version again: the ratio is back, and nothing to say
        r["intelligence"]["version"] = "v3"
    code, out, _ = run(["compare", *_write(tmp_path, {"a.json": a, "b.json": b}), "--json"], capsys)
    res = json.loads(out)
    assert all(next(m for m in g["metrics"] if m["metric"] == "intelligence_score_per_usd_per_mtok")["ratios"]["NVIDIA B200"]
               for g in res["groups"]) and res["notes"] == []


def test_a_contended_reference_is_said_to_flatter_the_others(doc_factory, tmp_path, capsys):
    """The first run is the denominator: its inflated times make the others' slowdowns look smaller, not larger."""
    a, b = doc_factory("h100_sxm", "NVIDIA H100 SXM", 2.5, 1.0), doc_factory("b200", "NVIDIA B200", 4.0, 2.0)
    busy = {"other_cpu_cores": 1.2, "usable_cpus": 2, "timed_s": 0.1, "other_gpu_processes": None,
            "threshold_share": 0.25, "contended": True}
    for d in (a, b):
        for r in d["records"]:
            r["contention"] = dict(busy)
    code, out, _ = run(["compare", *_write(tmp_path, {"a.json": a, "b.json": b}), "--json"], capsys)
    notes = [n for n in json.loads(out)["notes"] if "contended" in n]
    assert code == 0 and len(notes) == 2, notes
    assert notes[0].startswith("NVIDIA H100 SXM ran on a contended machine") and "understate any slowdown" in notes[0]
    assert notes[1].startswith("NVIDIA B200 ran on a contended machine") and "overstate any slowdown" in notes[1]


def test_compare_names_estimated_energy_and_never_prints_none(doc_factory, tmp_path, capsys):
    a, b = doc_factory("h100_sxm", "NVIDIA H100 SXM", 2.5, 1.0), doc_factory("b200", "NVIDIA B200", 4.0, 2.0)
    a["hardware"]["dtype"] = a["hardware"]["kernels"] = None  # as an endpoint result has them
    for r in b["records"]:
        r["energy_source"] = "estimated"
        r["metrics"]["joules_per_token"] = {**r["metrics"]["tpot_ms"], "unit": "J/token"}
    code, out, _ = run(["compare", *_write(tmp_path, {"a.json": a, "b.json": b})], capsys)
    assert code == 0 and "None" not in out and "cuda · — · —" in out
    assert "B energy estimated" in out


def test_interpreted_kernels_are_named_under_the_run_and_in_compare(doc_factory, tmp_path, capsys):
    """Triton on CPU runs its interpreter: a run recorded plain `triton`, its times read as the kernels'."""
    from moebench.report.caveats import caveats

    a, b = doc_factory("cpu", "CPU host", 0.1, 1.0), doc_factory("cpu", "CPU host", 0.1, 2.0, sha="b" * 40)
    b["hardware"]["kernels"] = "triton (interpreted)"
    assert not any("interpreter" in c for c in caveats(a))
    assert any(c.startswith("kernels triton (interpreted): Triton's interpreter") for c in caveats(b))
    code, out, _ = run(["compare", *_write(tmp_path, {"a.json": a, "b.json": b}), "--json"], capsys)
    notes = json.loads(out)["notes"]
    assert code == 0 and sum("measure the interpreter" in n for n in notes) == 1


def test_a_folder_stands_for_the_results_in_it(doc_factory, tmp_path, capsys):
    """`moebench report results/runs` read the folder as a file: "cannot read results file (Is a directory)"."""
    runs = tmp_path / "runs"
    runs.mkdir()
    _write(runs, {"a.json": doc_factory("h100_sxm", "NVIDIA H100 SXM", 2.5, 1.0),
                  "b.json": doc_factory("b200", "NVIDIA B200", 4.0, 2.0)})
    code, out, _ = run(["compare", str(runs), "--json"], capsys)
    assert code == 0 and [r["hardware_id"] for r in json.loads(out)["runs"]] == ["h100_sxm", "b200"]
    code, out, _ = run(["report", str(runs), "--out", str(tmp_path / "r"), "--json"], capsys)
    assert code == 0 and json.loads(out)["files"] == [str(runs / "a.json"), str(runs / "b.json")]
    (tmp_path / "empty").mkdir()
    code, _, err = run(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r2")], capsys)
    assert code == 3 and "no result files (*.json) in this folder" in err and not (tmp_path / "r2").exists()
