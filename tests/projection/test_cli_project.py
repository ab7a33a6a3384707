"""`moebench project` as a user runs it: one JSON document on stdout, tables otherwise, one-line bad input."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from moebench.catalog import get_hardware
from moebench.errors import BadInput
from moebench.projection import Assumptions
from moebench.projection.device import device_from_hardware
from tests.projection.synthetic import synthetic_result


@pytest.fixture()
def app():
    from moebench.cli.project import register

    a = typer.Typer()
    register(a)

    @a.callback()
    def _root() -> None:  # a second command keeps `project` a sub-command, as in the real app
        """test app"""

    return a


def _invoke(app, *args):
    return CliRunner().invoke(app, ["project", *args])


def test_json_is_one_document_with_projected_rows(app):
    r = _invoke(app, "--model", "mixtral:8x7b", "--hardware", "h100_sxm,b200", "--batch", "1,64", "--prompt", "512",
                "--output", "128", "--dtype", "fp8", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["kind"] == "projection" and doc["basis"] == "projected"
    assert [h["id"] for h in doc["hardware"]] == ["h100_sxm", "b200"]
    h100 = doc["hardware"][0]
    assert h100["min_gpus"] == 1  # Mixtral fp8 (~47 GB) fits one H100
    assert [r["batch_size"] for r in h100["records"]] == [1, 64]
    row = h100["records"][1]
    assert row["basis"] == "projected" and row["calibration_source"] is None
    m = row["metrics"]
    assert m["tpot_ms"]["basis"] == "projected"
    assert m["interactivity_tokens_per_s_per_user"]["median"] == pytest.approx(1000 / m["tpot_ms"]["median"])
    assert m["usd_per_mtok"]["blended"]["median"] > 0
    assert {x["target_tokens_per_s_per_user"] for x in h100["at_interactivity"]} == {10, 20, 50, 100}
    assert set(row["phases"]["decode"]["phases_ms"]) >= {"attn", "router", "experts", "lm_head"}


def test_table_names_layout_and_price(app):
    r = _invoke(app, "--model", "deepseek-v3:671b", "--hardware", "gb200_nvl72", "--dtype", "fp4", "--batch", "8")
    assert r.exit_code == 0, r.output
    assert "GB200" in r.stdout and "GPUs" in r.stdout and "$/Mtok" in r.stdout


def test_calibrated_projection_carries_its_source(app, tmp_path, cfgs):
    cfg = cfgs["mixtral:debug"]
    roofs = {"mem_gbps": 11.5, "matmul_gflops": 95.0}
    dev = device_from_hardware(get_hardware("cpu"), measured_roofs=roofs)
    doc = synthetic_result("mixtral:debug", cfg, dev, Assumptions(), hardware={"id": "cpu", "measured_roofs": roofs},
                           dtype="fp32", prompt=64, output=16, batches=(1, 8))
    doc["environment"] = {}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    r = _invoke(app, "--model", "mixtral:8x7b", "--hardware", "h200_sxm", "--calibrate", str(path), "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["calibration"]["source"].startswith(str(path))
    assert all(rec["calibration_source"] == out["calibration"]["source"] for rec in out["hardware"][0]["records"])

    # back onto the machine it was measured on: a CPU has no catalog peaks, the result's measured roofs stand in
    r = _invoke(app, "--model", "mixtral:debug", "--hardware", "cpu", "--calibrate", str(path), "--json",
                "--price", "0")
    assert r.exit_code == 0, r.output
    cpu = json.loads(r.stdout)["hardware"][0]
    assert cpu["roofs"]["hbm_bytes_per_s"] == pytest.approx(11.5e9) and cpu["records"]
    assert cpu["price"]["usd_per_gpu_hour"] == 0


@pytest.mark.parametrize("args, needle", [
    (("--model", "mixtral:8x7b", "--hardware", "h100_sxmm"), "did you mean"),
    (("--model", "mixtrall:8x7b", "--hardware", "h100_sxm"), "unknown model"),
    (("--model", "mixtral:8x7b", "--batch", "1,x"), "--batch"),
    (("--model", "mixtral:8x7b", "--interactivity", "-5"), "--interactivity"),
    (("--model", "mixtral:8x7b", "--hardware", "h200_sxm", "--price-tier", "spot"), "no price tier"),
    (("--model", "mixtral:8x7b", "--hardware", "cpu"), "measured_roofs"),
    (("--model", "mixtral:8x7b", "--hardware", ""), "--hardware"),
    (("--model", "mixtral:8x7b", "--hardware", " , "), "--hardware"),
    (("--model", "mixtral:8x7b", "--interactivity", "nan,inf"), "--interactivity: 'nan'"),
    (("--model", "mixtral:8x7b", "--interactivity", "20,inf"), "--interactivity: 'inf'"),
    (("--model", "mixtral:8x7b", "--interactivity", "0"), "--interactivity"),
    (("--model", "mixtral:8x7b", "--price", "2.5", "--price-tier", "rental"), "either"),
    (("--model", "mixtral:8x7b", "--price", "inf"), "--price"),
    (("--model", "mixtral:8x7b", "--keep-host-time"), "--calibrate"),
])
def test_bad_input_raises_one_line_error(app, args, needle):
    r = _invoke(app, *args)
    assert isinstance(r.exception, BadInput), r.output
    assert needle in str(r.exception) and "\n" not in str(r.exception)


def test_calibrate_unreadable_file_is_bad_input(app, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = _invoke(app, "--model", "mixtral:8x7b", "--calibrate", str(bad))
    assert isinstance(r.exception, BadInput)


def test_bad_flags_exit_3_in_one_line_through_the_real_cli():
    from tests.cli.conftest import assert_one_line_error, moebench

    proc = moebench("project", "--model", "mixtral:8x7b", "--hardware", "h100_sxm", "--interactivity", "nan")
    assert_one_line_error(proc, 3, "error: --interactivity")


def test_repeated_hardware_is_projected_once(app):
    r = _invoke(app, "--model", "mixtral:8x7b", "--hardware", "b200,h100_sxm,b200", "--batch", "1", "--json")
    assert r.exit_code == 0, r.output
    assert [h["id"] for h in json.loads(r.stdout)["hardware"]] == ["b200", "h100_sxm"]


def test_title_counts_one_gpu_in_the_singular(app):
    r = _invoke(app, "--model", "mixtral:8x7b", "--hardware", "b200", "--batch", "1", "--price", "0")
    assert r.exit_code == 0, r.output
    assert "min 1 GPU " in r.stdout and "1 GPUs" not in r.stdout and "1 GPU (1 domain)" in r.stdout
    assert "$0.00/GPU-h" in r.stdout
