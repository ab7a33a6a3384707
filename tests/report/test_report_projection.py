"""Projections (`moebench project --json`) sit next to measured results in report and compare, labelled projected."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from moebench.report.rows import CSV_DTYPES


@pytest.fixture
def projection(tmp_path, run_cli):
    code, out, _ = run_cli(["project", "--model", "mixtral:8x7b", "--hardware", "h100_sxm,b200", "--batch", "1,8",
                            "--prompt", "128", "--output", "32", "--json"])
    assert code == 0
    p = tmp_path / "proj.json"
    p.write_text(out)
    return p


def test_report_reads_projections_beside_measurements(projection, docs, run_cli, tmp_path):
    code, _, _ = run_cli(["report", str(docs["h100.json"]), str(projection), "--out", str(tmp_path / "r")])
    assert code == 0
    df = pd.read_csv(tmp_path / "r" / "report.csv", dtype=CSV_DTYPES)
    proj = df[df.basis == "projected"]
    assert set(proj.hardware_id) == {"h100_sxm", "b200"} and set(proj.batch_size) == {1, 8}
    assert (proj.model == "mixtral:8x7b").all() and (proj.kind == "moe").all()
    assert proj.tpot_ms_median.notna().all() and proj.usd_per_mtok_blended_median.notna().all()
    # the GPUs paid for: per batch size from the projection's layout (mixtral 8x7b in bf16 needs 2 H100s)
    gpus = {(r["id"], rec["batch_size"]): rec["cost"]["n_gpus"]
            for r in json.loads(projection.read_text())["hardware"] for rec in r["records"]}
    assert {(h, b): w for h, b, w in zip(proj.hardware_id, proj.batch_size, proj.world_size)} == gpus
    assert gpus[("h100_sxm", 1)] >= 2
    html = (tmp_path / "r" / "report.html").read_text()
    assert html.count('class="basis-projected"') == 4 and "projection of mixtral:8x7b" in html


def test_compare_measured_against_projected(projection, docs, run_cli):
    code, out, _ = run_cli(["compare", str(docs["h100.json"]), str(projection), "--json"])
    res = json.loads(out)
    assert code == 0 and [r["file"] for r in res["runs"]] == ["h100.json", "proj.json [h100_sxm]", "proj.json [b200]"]
    g = next(g for g in res["groups"] if g["model"] == "mixtral:8x7b" and g["batch_size"] == 8)
    assert g["basis"] == {res["runs"][0]["label"]: "extrapolated", res["runs"][1]["label"]: "projected",
                          res["runs"][2]["label"]: "projected"}
    tpot = next(m for m in g["metrics"] if m["metric"] == "tpot_ms")
    assert all(r is not None and r > 0 for r in tpot["ratios"].values())


def test_a_file_that_is_neither_is_one_line_exit_3(tmp_path, run_cli):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"kind": "something"}))
    code, out, err = run_cli(["report", str(p), "--out", str(tmp_path / "o")])
    assert code == 3 and out == "" and "no schema_version" in err and err.count("\n") == 1
