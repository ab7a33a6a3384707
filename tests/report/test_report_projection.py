"""Projections (`moebench project --json`) sit next to measured results in report and compare, labelled projected."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from moebench.report.rows import CSV_DTYPES


def _project(tmp_path, run_cli, *extra: str, name: str = "proj.json", model: str = "mixtral:8x7b",
             hardware: str = "h100_sxm,b200", batch: str = "1,8"):
    code, out, _ = run_cli(["project", "--model", model, "--hardware", hardware, "--batch", batch,
                            "--prompt", "128", "--output", "32", *extra, "--json"])
    assert code == 0
    p = tmp_path / name
    p.write_text(out)
    return p


@pytest.fixture
def projection(tmp_path, run_cli):
    """Continuous serving, the projection's default."""
    return _project(tmp_path, run_cli)


@pytest.fixture
def static_projection(tmp_path, run_cli):
    """Static serving: what `moebench run` measures."""
    return _project(tmp_path, run_cli, "--serving", "static", name="static.json")


def test_report_reads_projections_beside_measurements(projection, docs, run_cli, tmp_path):
    code, _, _ = run_cli(["report", str(docs["h100.json"]), str(projection), "--out", str(tmp_path / "r")])
    assert code == 0
    df = pd.read_csv(tmp_path / "r" / "report.csv", dtype=CSV_DTYPES)
    proj = df[df.basis == "projected"]
    assert set(proj.hardware_id) == {"h100_sxm", "b200"} and set(proj.batch_size) == {1, 8}
    assert (proj.model == "mixtral:8x7b").all() and (proj.kind == "moe").all()
    assert proj.tpot_ms_median.notna().all() and proj.usd_per_mtok_blended_median.notna().all()
    assert (proj.energy_source == "not measured").all() and proj.joules_per_token_median.isna().all()
    # the GPUs paid for: per batch size from the projection's layout (mixtral 8x7b in bf16 needs 2 H100s)
    gpus = {(r["id"], rec["batch_size"]): rec["cost"]["n_gpus"]
            for r in json.loads(projection.read_text())["hardware"] for rec in r["records"]}
    assert {(h, b): w for h, b, w in zip(proj.hardware_id, proj.batch_size, proj.world_size)} == gpus
    assert gpus[("h100_sxm", 1)] >= 2
    html = (tmp_path / "r" / "report.html").read_text()
    assert html.count('class="basis-projected"') == 4 and "projection of mixtral:8x7b" in html


def test_compare_measured_against_projected(static_projection, docs, run_cli):
    code, out, _ = run_cli(["compare", str(docs["h100.json"]), str(static_projection), "--json"])
    res = json.loads(out)
    assert code == 0 and [r["file"] for r in res["runs"]] == ["h100.json", "static.json [h100_sxm]", "static.json [b200]"]
    g = next(g for g in res["groups"] if g["model"] == "mixtral:8x7b" and g["batch_size"] == 8)
    assert g["serving"] == "static" and g["note"] is None
    assert g["basis"] == {res["runs"][0]["label"]: "extrapolated", res["runs"][1]["label"]: "projected",
                          res["runs"][2]["label"]: "projected"}
    tpot = next(m for m in g["metrics"] if m["metric"] == "tpot_ms")
    assert all(r is not None and r > 0 for r in tpot["ratios"].values())


def test_a_continuous_projection_gets_no_ratio_against_a_static_run(projection, docs, run_cli):
    """A static batch's TTFT is the whole batch's prefill, a continuous server's one prompt's: never one ratio."""
    code, out, _ = run_cli(["compare", str(docs["h100.json"]), str(projection), "--json"])
    res = json.loads(out)
    assert code == 0
    measured, h100, b200 = (r["label"] for r in res["runs"])
    groups = [g for g in res["groups"] if g["model"] == "mixtral:8x7b" and g["batch_size"] == 8]
    assert [g["serving"] for g in groups] == ["static", "continuous"]  # the measured run's group first
    static, continuous = groups
    assert static["basis"] == {measured: "extrapolated", h100: None, b200: None}
    assert continuous["basis"] == {measured: None, h100: "projected", b200: "projected"}
    for g in groups:
        ttft = next(m for m in g["metrics"] if m["metric"] == "ttft_ms")
        assert sum(v is not None for v in ttft["values"].values()) == (1 if g is static else 2)
        assert "--serving static" in g["note"]
    assert "continuous serving in " + h100 in static["note"] and "static serving in " + measured in continuous["note"]

    code, text, _ = run_cli(["compare", str(docs["h100.json"]), str(projection)])
    assert code == 0
    block = text[text.index("mixtral:8x7b · batch 8 · prompt 128 + output 32 · static serving"):]
    block = block[: block.index("mixtral:8x7b · batch 8 · prompt 128 + output 32 · continuous serving")]
    assert "×" not in block and "not compared" in block and "moebench project --serving static" in block


def test_projected_rows_carry_what_the_measured_formulas_give(tmp_path, run_cli):
    p = _project(tmp_path, run_cli)
    doc = json.loads(p.read_text())
    code, _, _ = run_cli(["report", str(p), "--out", str(tmp_path / "r")])
    assert code == 0
    df = pd.read_csv(tmp_path / "r" / "report.csv", dtype=CSV_DTYPES)
    assert (df.serving == "continuous").all() and (df.dtype == "bf16").all()
    assert (df.layers_run == 32).all() and (df.layers_total == 32).all()  # mixtral 8x7b, all layers modelled
    for hw in doc["hardware"]:
        kw = {"h100_sxm": 1.73, "b200": 2.17}[hw["id"]]
        for rec in hw["records"]:
            row = df[(df.hardware_id == hw["id"]) & (df.batch_size == rec["batch_size"])].iloc[0]
            m, n, b = rec["metrics"], rec["cost"]["n_gpus"], rec["batch_size"]
            step, prefill = rec["phases"]["decode"]["time_ms"], rec["phases"]["prefill"]["time_ms"]
            total = m["total_tokens_per_s_per_gpu"]["median"] * n
            assert row["total_tokens_per_s_median"] == pytest.approx(total, rel=1e-9)
            assert row["decode_tokens_per_s_median"] == pytest.approx(b / (step / 1e3), rel=1e-9)
            assert row["decode_tokens_per_s_per_gpu_median"] == pytest.approx(m["decode_tokens_per_s_per_gpu"]["median"])
            assert row["prefill_tokens_per_s_median"] == pytest.approx(b * 128 / (prefill / 1e3), rel=1e-9)
            assert row["tokens_per_s_per_mw_median"] == pytest.approx(total / (kw * n / 1000), rel=1e-9)
            blended = m["usd_per_mtok"]["blended"]["median"]
            assert row["intelligence_score_per_usd_per_mtok_median"] == pytest.approx(3.0 / blended, rel=1e-9)
            assert row["output_tokens_per_s_per_gpu_median"] == m["output_tokens_per_s_per_gpu"]["median"]
            # phase-attributed $/M: the prefill priced into the input tokens, the decode into the output tokens
            usd_per_ms = rec["cost"]["usd_per_gpu_hour"] * n / 3.6e6
            o = rec["output_tokens"]
            assert row["usd_per_mtok_phase_input_median"] == pytest.approx(usd_per_ms * prefill / (b * 128) * 1e6)
            assert row["usd_per_mtok_phase_output_median"] == pytest.approx(usd_per_ms * (o - 1) * step / (b * o) * 1e6)


def test_a_given_price_is_explicit_in_the_csv(tmp_path, run_cli):
    p = _project(tmp_path, run_cli, "--price", "3")
    code, _, _ = run_cli(["report", str(p), "--out", str(tmp_path / "r")])
    assert code == 0
    df = pd.read_csv(tmp_path / "r" / "report.csv", dtype=CSV_DTYPES)
    assert (df.price_tier == "explicit").all() and (df.usd_per_gpu_hour == 3.0).all()


def test_a_projection_at_price_0_reports_no_score_per_dollar(tmp_path, run_cli):
    """`--price 0` (a machine you own): $/M is 0 and a score per $ has no value; report and compare crashed on it."""
    p = _project(tmp_path, run_cli, "--price", "0", name="free.json", model="gpt-oss:120b", hardware="b200", batch="8")
    code, _, err = run_cli(["report", str(p), "--out", str(tmp_path / "r")])
    assert code == 0, err
    df = pd.read_csv(tmp_path / "r" / "report.csv", dtype=CSV_DTYPES)
    assert df.intelligence_score.notna().all()  # the model has a score: only its price makes score per $ void
    assert (df.usd_per_mtok_blended_median == 0).all() and df.intelligence_score_per_usd_per_mtok_median.isna().all()
    paid = tmp_path / "paid.json"
    paid.write_text(p.read_text().replace('"usd_per_gpu_hour": 0.0', '"usd_per_gpu_hour": 3.0'))
    code, out, err = run_cli(["compare", str(p), str(paid), "--json"])
    assert code == 0, err


def test_measured_and_projected_dtypes_are_spelled_alike(static_projection, docs, run_cli, tmp_path):
    code, _, err = run_cli(["report", str(docs["h100.json"]), str(static_projection), "--out", str(tmp_path / "r")])
    assert code == 0 and "from 2 file(s) (3 runs" in err
    df = pd.read_csv(tmp_path / "r" / "report.csv", dtype=CSV_DTYPES)
    assert set(df.dtype) == {"bf16"}  # the run recorded "bfloat16", the projection "bf16"
    assert set(df[df.basis != "projected"].serving) == {"static"}  # a result file written before `serving`
    html = (tmp_path / "r" / "report.html").read_text()
    assert "2 file(s) (3 runs" in html  # as the command's own line says, not "3 result file(s)"
    assert "static serving, communication overlap none, uncalibrated" in html and "'dim'>, CPUs" not in html
    assert "host" in html and "test <span class='dim'>linux, 2 CPUs</span>" in html


def test_projected_single_values_print_without_a_spread(static_projection, docs, run_cli):
    code, out, _ = run_cli(["compare", str(docs["h100.json"]), str(static_projection)])
    assert code == 0
    block = out[out.index("mixtral:8x7b · batch 8"):]
    ttft = next(line for line in block.splitlines() if "ttft_ms" in line)
    cells = [c.strip() for c in ttft.split("│") if c.strip()]
    assert re.fullmatch(r"[\d.,]+ \([\d.,]+–[\d.,]+\)", cells[2])  # measured: median (p20–p80)
    assert re.fullmatch(r"[\d.,]+", cells[3]) and re.fullmatch(r"[\d.,]+", cells[4])  # projected: the value alone
    assert "p90" in block.splitlines()[block.splitlines().index(ttft) + 1]  # measured latency: its tail below


@pytest.mark.parametrize("doc, needle", [
    ({"kind": "projection", "hardware": "x"}, "model is not a string"),
    ({"kind": "projection", "model": "m", "hardware": "x"}, "hardware is 'x', not a list"),
    ({"kind": "projection", "model": "m", "hardware": [{"id": "h", "records": [{"model": "m"}]}]},
     "hardware[0].records[0].batch_size is missing"),
    ({"kind": "projection", "model": "m", "assumptions": [], "hardware": []}, "assumptions is [], not an object"),
])
def test_a_malformed_projection_is_one_line_exit_3(doc, needle, docs, tmp_path, run_cli):
    p = tmp_path / "p.json"
    p.write_text(json.dumps(doc))
    code, out, err = run_cli(["compare", str(docs["h100.json"]), str(p)])
    assert code == 3 and out == "" and err.count("\n") == 1
    assert str(p) in err and needle in err and "internal error" not in err


def test_a_file_that_is_neither_is_one_line_exit_3(tmp_path, run_cli):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"kind": "something"}))
    code, out, err = run_cli(["report", str(p), "--out", str(tmp_path / "o")])
    assert code == 3 and out == "" and "no schema_version" in err and err.count("\n") == 1


@pytest.mark.parametrize("edit, needle", [
    (lambda r: r.pop("prompt_tokens"), None),  # loads: only what the projection states
    (lambda r: r.update(prompt_tokens=None), None),
    (lambda r: r["phases"].update(prefill=5), "records[0].phases.prefill is 5, not an object"),
    (lambda r: r["cost"].update(usd_per_gpu_hour="2"), "records[0].cost.usd_per_gpu_hour is '2', not a number"),
])
def test_a_hand_edited_projection_loads_or_is_one_line(edit, needle, tmp_path, run_cli):
    code, out, _ = run_cli(["project", "--model", "llama3:8b", "--hardware", "h100_sxm", "--batch", "1,8", "--json"])
    assert code == 0
    doc = json.loads(out)
    edit(doc["hardware"][0]["records"][0])
    p = tmp_path / "p.json"
    p.write_text(json.dumps(doc))
    code, out, err = run_cli(["report", str(p), "--out", str(tmp_path / "o")])
    if needle is None:
        assert code == 0, err
    else:
        assert code == 3 and needle in err and err.count("\n") == 1 and "internal error" not in err


def test_a_projection_s_error_band_shows_in_the_html_and_the_csv(projection, docs, run_cli, tmp_path):
    bands = {h["id"]: h["error_band"]["text"] for h in json.loads(projection.read_text())["hardware"]}
    assert all(t.startswith("NVIDIA, MoE") for t in bands.values())
    code, _, _ = run_cli(["report", str(docs["h100.json"]), str(projection), "--out", str(tmp_path / "r")])
    assert code == 0
    df = pd.read_csv(tmp_path / "r" / "report.csv", dtype=CSV_DTYPES)
    proj = df[df.basis == "projected"]
    assert {h: set(g.error_band) for h, g in proj.groupby("hardware_id")} == {h: {t} for h, t in bands.items()}
    assert df[df.basis != "projected"].error_band.isna().all()  # a measured run has no band
    html = (tmp_path / "r" / "report.html").read_text().replace("&#x27;", "'")
    for t in bands.values():
        assert f"how far to trust it: {t}" in html
    ttft = {h["error_band"]["ttft_under_load"]["text"] for h in json.loads(projection.read_text())["hardware"]}
    assert ttft and all(t.startswith("TTFT under load, NVIDIA") and t in html for t in ttft)


def test_hardware_where_the_model_fits_nowhere_is_left_out_with_its_reason(tmp_path, run_cli):
    """llama3:70b on one GPU: it fits a B200, not an H100. The file was refused whole as "no records"."""
    p = _project(tmp_path, run_cli, "--gpus", "1", name="one_gpu.json", model="llama3:70b")
    code, _, err = run_cli(["report", str(p), "--out", str(tmp_path / "r")])
    assert code == 0, err
    df = pd.read_csv(tmp_path / "r" / "report.csv", dtype=CSV_DTYPES)
    assert set(df.hardware_id) == {"b200"} and len(df) == 2
    assert "one_gpu.json [h100_sxm]: does not fit in 1 GPU" in " ".join(err.split())
    assert "one_gpu.json [h100_sxm]: does not fit in 1 GPU" in (tmp_path / "r" / "report.html").read_text()
    code, out, err = run_cli(["compare", str(p), str(p), "--json"])
    assert code == 0, err
    assert sum("does not fit in 1 GPU" in n for n in json.loads(out)["notes"]) == 2
    # a file whose every hardware is empty is still refused
    doc = json.loads(p.read_text())
    doc["hardware"] = doc["hardware"][:1]
    p.write_text(json.dumps(doc))
    code, _, err = run_cli(["report", str(p), "--out", str(tmp_path / "r2")])
    assert code == 3 and "no records" in err and not (tmp_path / "r2").exists()


def test_compare_says_how_many_gpus_a_projection_took_and_how_far_to_trust_it(static_projection, docs, run_cli):
    code, out, _ = run_cli(["compare", str(docs["h100.json"]), str(static_projection), "--json"])
    res = json.loads(out)
    assert code == 0
    g = next(g for g in res["groups"] if g["model"] == "mixtral:8x7b" and g["batch_size"] == 8)
    proj = json.loads(static_projection.read_text())
    gpus = {h["id"]: next(r["cost"]["n_gpus"] for r in h["records"] if r["batch_size"] == 8) for h in proj["hardware"]}
    assert g["world_size"] == {res["runs"][0]["label"]: 1, res["runs"][1]["label"]: gpus["h100_sxm"],
                               res["runs"][2]["label"]: gpus["b200"]}
    bands = [n for n in res["notes"] if "how far to trust it" in n]
    assert len(bands) == 2 and all("held-out median" in n for n in bands)
    code, out, _ = run_cli(["compare", str(docs["h100.json"]), str(static_projection)])
    title = next(line for line in out.splitlines() if line.startswith("mixtral:8x7b · batch 8"))
    assert f"B {gpus['h100_sxm']} GPUs" in title
