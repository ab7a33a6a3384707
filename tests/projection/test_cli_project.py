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
    # no published band applies to a calibration: the table says how well it reproduces its own records instead
    table = _invoke(app, "--model", "mixtral:8x7b", "--hardware", "h200_sxm", "--calibrate", str(path)).stdout
    said = next(ln for ln in table.splitlines() if ln.startswith("how far to trust it:"))
    assert f"calibrated from {out['calibration']['source']}: it reproduces its own 4 TTFT/TPOT figures" in said
    assert "(in sample)" in said and "held-out" not in table


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
    (("--model", "mixtral:8x7b", "--layout", "tp=8,ep=4"), "--layout"),
    (("--model", "mixtral:8x7b", "--layout", "tp=2", "--gpus", "4"), "disagree"),
    (("--model", "mixtral:8x7b", "--mem-util", "1.5"), "--mem-util"),
    (("--model", "mixtral:8x7b", "--overlap", "half"), "--overlap"),
    (("--model", "mixtral:8x7b", "--rate", "0"), "--rate"),
    (("--model", "mixtral:8x7b", "--max-seqs", "0"), "--max-seqs"),
    # options that would otherwise be ignored or print an impossible number
    (("--model", "mixtral:8x7b", "--gpus", "64", "--max-gpus", "8"), "--gpus 64 is more than --max-gpus 8"),
    (("--model", "llama3:70b", "--hardware", "b200", "--gpus", "3"), "--gpus 3: no layout of that many b200 GPUs"),
    (("--model", "deepseek-v3:671b", "--hardware", "gb200_nvl72", "--gpus", "100000"), "expert parallelism at most 512"),
    (("--model", "mixtral:8x7b", "--spec-accept", "0.5"), "it needs --spec-tokens"),
    (("--model", "mixtral:8x7b", "--spec-tokens", "2", "--spec-accept", "1.5"), "not a probability"),
    (("--model", "mixtral:8x7b", "--spec-tokens", "300", "--output", "256"), "fewer tokens than a request's 256"),
    (("--model", "llama3:8b", "--expert-imbalance", "3"), "llama3:8b is dense"),
    (("--model", "llama3:8b", "--prompt", "200000"), "beyond llama3:8b's context of 131,072"),
    (("--model", "llama3:8b", "--prompt", "5", "--lengths", "l.csv"), "--lengths replaces --prompt and --output"),
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


def test_a_fixed_deployment_with_its_memory_share_loads_and_trust_band(app):
    """Llama-3.1-70B fp8 on one H100 at 128/2048 as TensorRT-LLM ran it: it fits with 95 % of HBM and fp8 KV; a
    concurrency beyond what the KV cache holds queues; the output says how far to trust it."""
    args = ("--model", "llama3:70b", "--hardware", "h100_sxm", "--dtype", "fp8", "--kv-dtype", "fp8", "--prompt", "128",
            "--output", "2048", "--gpus", "1", "--batch", "8,256", "--engine", "trt-llm")
    r = _invoke(app, *args, "--mem-util", "0.95", "--rate", "0.05", "--offline", "--json")
    assert r.exit_code == 0, r.output
    h = json.loads(r.stdout)["hardware"][0]
    assert h["min_gpus"] == 1 and [rec["batch_size"] for rec in h["records"]] == [8]
    assert h["unfit_batch_sizes"] == [256]
    loads = {row["load"]: row for row in h["under_load"]}
    assert loads["concurrency"]["requested"] == 256 and loads["concurrency"]["queue_ms"] > 0
    assert loads["concurrency"]["batch_in_flight"] == loads["offline"]["kv_capacity_sequences"] < 256
    assert not loads["rate"]["overloaded"]
    band = h["error_band"]
    assert band["n"] >= 3 and 1.0 <= band["median_error"] <= band["worst_error"]
    assert band["group"].startswith("NVIDIA")
    assert band["median_speed_ratio"] > 0 and "projected speed" in band["text"]
    ttft = band["ttft_under_load"]  # beside the throughput band: TTFT is never fitted, so every published one counts
    assert ttft["metric"] == "ttft" and ttft["n"] >= 3 and 1.0 <= ttft["median_error"] <= ttft["worst_error"]
    assert ttft["group"].startswith("NVIDIA") and "never fitted" in ttft["text"]
    preset = json.loads(r.stdout)["efficiency_preset"]
    assert preset["name"] == "fitted"
    stacks = preset["published_stacks"]  # the fit's factors of trt-llm's stacks: where an unknown one may sit
    assert stacks["engine"] == "trt-llm" and stacks["stacks"] >= 2
    every = json.loads(_invoke(app, *args[:-2], "--json").stdout)["efficiency_preset"]["published_stacks"]
    assert every["engine"] == "any" and every["stacks"] > stacks["stacks"]  # --engine any: every engine's stacks

    low = json.loads(_invoke(app, *args, "--mem-util", "0.8", "--json").stdout)["hardware"][0]
    assert low["records"] == [] and "does not fit in 1 GPU at any batch" in " ".join(low["notes"])

    table = _invoke(app, *args, "--mem-util", "0.95")
    assert "how far to trust it: NVIDIA" in table.stdout and "held-out median" in table.stdout
    assert f"  {ttft['text']}" in table.stdout
    assert f"the fit's {stacks['stacks']} published trt-llm stacks ran" in table.stdout


def test_an_explicit_layout_is_the_one_projected(app):
    r = _invoke(app, "--model", "deepseek-v3:671b", "--hardware", "gb200_nvl72", "--dtype", "fp8", "--prompt", "2000",
                "--output", "200", "--layout", "tp=1,ep=48,dp=48", "--batch", "4096", "--overlap", "0.5", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    rec = doc["hardware"][0]["records"][0]
    assert rec["layout"]["n_gpus"] == 48 and rec["layout"]["ep"] == 48 and rec["layout"]["dp_attention"] == 48
    assert doc["assumptions"]["comm_overlap"] == 0.5


def test_defaults_preset_prints_no_band(app):
    r = _invoke(app, "--model", "mixtral:8x7b", "--hardware", "b200", "--batch", "1", "--preset", "defaults", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["efficiency_preset"] is None and doc["hardware"][0]["error_band"] is None


def test_disaggregated_pools_are_balanced_and_priced_per_pool(app):
    r = _invoke(app, "--model", "deepseek-v3:671b", "--hardware", "h200_sxm", "--dtype", "fp8", "--kv-dtype", "fp8",
                "--prompt", "4096", "--output", "512", "--batch", "64,256,100000", "--disagg", "tp=8/tp=1,ep=16",
                "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["scenario"]["disaggregated"] == {"prefill_layout": "tp=8", "decode_layout": "tp=1,ep=16",
                                                "prefill_batch": 1}
    rows = doc["hardware"][0]["disaggregated"]
    assert [x["decode_batch"] for x in rows] == [64, 256, 100000]
    small, big, too_many = rows
    assert not too_many["fits"] and "decode instance holds" in too_many["why"]
    for x in (small, big):
        assert x["fits"] and x["decode"]["layout"]["n_gpus"] == 16 and x["prefill"]["layout"]["n_gpus"] == 8
        assert x["n_gpus"] == 8 * x["prefill"]["instances"] + 16
        # balanced: the prefill pool keeps up with the decode pool, one instance fewer would not
        assert x["prefill"]["requests_per_s"] >= x["decode"]["requests_per_s"]
        assert x["requests_per_s"] == pytest.approx(x["decode"]["requests_per_s"])
        c = x["usd_per_mtok"]
        # each pool priced into its own tokens: prompt tokens carry the prefill GPUs, output tokens the decode GPUs
        price = doc["hardware"][0]["price"]["usd_per_gpu_hour"]
        pre_gpus = 8 * x["prefill"]["instances"]
        assert c["input"] == pytest.approx(price * pre_gpus / (x["requests_per_s"] * 4096 * 3600) * 1e6)
        assert c["output"] == pytest.approx(price * 16 / (x["requests_per_s"] * 512 * 3600) * 1e6)
    # a larger decode batch: more sequences per decode step, more prefill instances to feed them, cheaper tokens
    assert big["prefill"]["instances"] >= small["prefill"]["instances"]
    assert big["output_tokens_per_s_per_gpu"] > small["output_tokens_per_s_per_gpu"]
    assert big["tpot_ms"] > small["tpot_ms"]


def test_disaggregated_table_and_bad_pool_spec(app):
    r = _invoke(app, "--model", "llama3:70b", "--hardware", "h100_sxm", "--dtype", "fp8", "--batch", "32",
                "--disagg", "tp=2/tp=4", "--prefill-batch", "2")
    assert r.exit_code == 0, r.output
    assert "disaggregated: prefill pool tp=2 (2 prompt(s) per forward), decode instance tp=4" in r.stdout
    for bad, said in (("tp=8", "PREFILL/DECODE"), ("tp=8/tq=2", "--disagg: 'tq=2'"), ("tp=8/tp=8,ep=4", "--disagg")):
        r = _invoke(app, "--model", "llama3:70b", "--hardware", "h100_sxm", "--batch", "8", "--disagg", bad)
        assert r.exit_code != 0
        assert isinstance(r.exception, BadInput) and said in str(r.exception), (bad, r.exception)
    r = _invoke(app, "--model", "llama3:70b", "--hardware", "h100_sxm", "--batch", "8", "--prefill-batch", "4")
    assert isinstance(r.exception, BadInput) and "needs --disagg" in str(r.exception)


def test_a_layout_the_model_cannot_run_is_a_one_line_error(app):
    """Engines assert that TP splits the heads and that EP runs over experts: a layout no engine could start is
    bad input, not a projection."""
    for model, flag, spec, said in (
            ("llama3:70b", "--layout", "tp=3", "attention TP 3 does not split llama3:70b's 64 query / 8 KV heads"),
            ("llama3:70b", "--layout", "tp=2,dp=1,ep=2", "needs an MoE model"),
            ("llama3:70b", "--layout", "tp=1,pp=100", "100 pipeline stages for 80 layers"),
            ("llama3:70b", "--layout", "tp=1,dp=8", "DP attention needs an MoE model"),
            ("mixtral:8x7b", "--layout", "tp=1,dp=64,ep=64", "expert parallelism 64 for mixtral:8x7b's 8 routed experts"),
            ("deepseek-v3:671b", "--disagg", "tp=8/tp=1,ep=1000", "(at most 512: two copies of each)"),
            ("deepseek-v3:671b", "--disagg", "tp=8/tp=3,dp=2,ep=6", "attention TP 3 does not split deepseek-v3:671b's")):
        r = _invoke(app, "--model", model, "--hardware", "h200_sxm", "--batch", "8", flag, spec)
        assert r.exit_code != 0
        assert isinstance(r.exception, BadInput) and said in str(r.exception), (spec, r.exception)
    r = _invoke(app, "--model", "deepseek-v3:671b", "--hardware", "h200_sxm", "--batch", "8", "--layout", "tp=1,ep=8")
    assert r.exit_code == 0, r.output  # DP attention over 8 ranks, 32 experts each: what SGLang runs
    r = _invoke(app, "--model", "deepseek-v3:671b", "--hardware", "h200_sxm", "--dtype", "fp8", "--batch", "8",
                "--layout", "tp=1,dp=8", "--json")
    assert r.exit_code == 0, r.output  # SGLang 0.4's --tp 8 --enable-dp-attention: experts tensor-parallel
    lay = json.loads(r.stdout)["hardware"][0]["records"][0]["layout"]
    assert (lay["dp_attention"], lay["ep"], lay["expert_tp"]) == (8, 1, 8)
    assert lay["text"] == "8 GPUs (1 domain): TP8 experts, DP8 attention"
    r = _invoke(app, "--model", "deepseek-v3:671b", "--hardware", "h200_sxm", "--batch", "8", "--disagg",
                "tp=8/tp=1,ep=320")
    assert r.exit_code == 0, r.output  # DeepSeek's decode unit: 320 GPUs, 256 experts and redundant copies


def test_a_prefill_instance_holds_prompts_not_outputs(app):
    """A prefill instance keeps a prompt's KV cache until the hand-off, never the output's: a long generation does
    not shrink the prompts it can prefill at once."""
    r = _invoke(app, "--model", "llama3:70b", "--hardware", "h100_sxm", "--dtype", "fp8", "--prompt", "2048",
                "--output", "65536", "--batch", "1", "--disagg", "tp=2/tp=8", "--prefill-batch", "12", "--json")
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)["hardware"][0]["disaggregated"][0]
    assert row["fits"], row  # 12 prompts of 2k fit beside 70B fp8 on 2 GPUs; 12 × (2k + 64k) tokens would not


def test_the_engines_published_cap_bounds_the_sequences_in_flight(app):
    """vLLM's --max-num-seqs as deployed: offline, the batch in flight stops at the cap where the KV cache holds
    more, and a concurrency beyond the cap queues."""
    args = ("--model", "llama3:8b", "--hardware", "h100_sxm", "--dtype", "fp8", "--prompt", "512", "--output", "256",
            "--gpus", "1", "--batch", "8,100", "--engine", "vllm", "--offline", "--json")
    free = json.loads(_invoke(app, *args).stdout)
    capped = json.loads(_invoke(app, *args, "--max-seqs", "32").stdout)
    assert free["scenario"]["max_seqs"] is None and capped["scenario"]["max_seqs"] == 32
    off = lambda doc: next(r for r in doc["hardware"][0]["under_load"] if r["load"] == "offline")  # noqa: E731
    assert off(capped)["kv_capacity_sequences"] == 32 < off(free)["kv_capacity_sequences"]
    assert off(capped)["point"]["output_tokens_per_s_per_gpu"] < off(free)["point"]["output_tokens_per_s_per_gpu"]
    queued = [r for r in capped["hardware"][0]["under_load"] if r["load"] == "concurrency"]
    assert [(r["requested"], r["batch_in_flight"]) for r in queued] == [(100, 32)] and queued[0]["queue_ms"] > 0
    assert not [r for r in free["hardware"][0]["under_load"] if r["load"] == "concurrency"]  # the cache holds 100


def test_lengths_csv_projects_that_distribution(app, tmp_path):
    csv = tmp_path / "lengths.csv"
    csv.write_text("input_length,output_length\n" + "".join(f"{p},{o}\n" for p, o in
                                                           [(400, 50), (600, 3000), (500, 100), (500, 250)]))
    r = _invoke(app, "--model", "mixtral:8x7b", "--hardware", "h100_sxm", "--batch", "64", "--dtype", "fp8",
                "--lengths", str(csv), "--json")
    assert r.exit_code == 0, r.output
    sc = json.loads(r.stdout)["scenario"]
    assert (sc["prompt_tokens"], sc["output_tokens"]) == (500, 850)
    ln = sc["lengths"]
    assert ln["requests"] == 4 and ln["source"] == str(csv)
    # the 3000-token output dominates the decode steps: far beyond the means' 500 + 850/2
    assert ln["decode_context_tokens"] == pytest.approx((400 * 50 + 600 * 3000 + 500 * 100 + 500 * 250 + (
        50**2 + 3000**2 + 100**2 + 250**2) / 2) / 3400)
    fixed = _invoke(app, "--model", "mixtral:8x7b", "--hardware", "h100_sxm", "--batch", "64", "--dtype", "fp8",
                    "--prompt", "500", "--output", "850", "--json")
    rec = json.loads(r.stdout)["hardware"][0]["records"][0]
    rec_fixed = json.loads(fixed.stdout)["hardware"][0]["records"][0]
    assert json.loads(fixed.stdout)["scenario"]["lengths"] is None
    assert rec["metrics"]["tpot_ms"]["median"] > rec_fixed["metrics"]["tpot_ms"]["median"]
    text = _invoke(app, "--model", "mixtral:8x7b", "--hardware", "h100_sxm", "--batch", "64", "--lengths", str(csv))
    assert text.exit_code == 0 and "4 requests' lengths" in text.stdout


@pytest.mark.parametrize("content, needle", [
    ("prompt,answer\n10,20\n", "needs a prompt column"),
    ("input_length,output_length\n100,20\n100,x\n", "row 3"),
    ("input_length,output_length\n", "no rows"),
    ("", "not a readable CSV"),
    # a field beyond the header on every row: read as written, the first column would become the index
    ("input_length,output_length\n100,200,9\n300,400,9\n", "not a readable CSV"),
    ("input_length,output_length\n100,20\n100.5,20\n", "row 3 is not a whole count"),
])
def test_bad_lengths_file_is_one_line(app, tmp_path, content, needle):
    f = tmp_path / "l.csv"
    f.write_text(content)
    r = _invoke(app, "--model", "mixtral:8x7b", "--hardware", "h100_sxm", "--lengths", str(f))
    assert isinstance(r.exception, BadInput), r.output
    assert needle in str(r.exception) and "\n" not in str(r.exception)
    r = _invoke(app, "--model", "mixtral:8x7b", "--hardware", "h100_sxm", "--lengths", str(tmp_path / "none.csv"))
    assert isinstance(r.exception, BadInput) and "does not exist" in str(r.exception)


def test_range_ratio_projects_a_clients_random_lengths(app, tmp_path):
    """--range-ratio R is the distribution a benchmark client's random dataset sends (each length uniform on
    [int(R·n), n]): the same projection as a --lengths file listing every pair of that grid once."""
    grid = tmp_path / "grid.csv"
    grid.write_text("input_length,output_length\n" + "".join(f"{p},{o}\n" for p in range(100, 201)
                                                             for o in range(25, 51)))
    args = ("--model", "mixtral:8x7b", "--hardware", "h100_sxm", "--batch", "8", "--dtype", "fp8", "--json")
    r = _invoke(app, *args, "--prompt", "200", "--output", "50", "--range-ratio", "0.5")
    g = _invoke(app, *args, "--lengths", str(grid))
    assert r.exit_code == 0 and g.exit_code == 0, r.output + g.output
    sr, sg = json.loads(r.stdout)["scenario"], json.loads(g.stdout)["scenario"]
    assert (sr["prompt_tokens"], sr["output_tokens"]) == (sg["prompt_tokens"], sg["output_tokens"]) == (150, 38)
    assert sr["lengths"]["requests"] is None and "range ratio 0.5 of 200 in / 50 out" in sr["lengths"]["source"]
    for k in ("decode_context_tokens", "kv_tokens_per_sequence", "prefill_attention_tokens"):
        assert sr["lengths"][k] == pytest.approx(sg["lengths"][k], rel=1e-9), k
    tpot = [json.loads(x.stdout)["hardware"][0]["records"][0]["metrics"]["tpot_ms"]["median"] for x in (r, g)]
    assert tpot[0] == pytest.approx(tpot[1], rel=1e-9)
    for extra, needle in ((("--range-ratio", "0"), "not in (0, 1]"),
                          (("--range-ratio", "0.8", "--lengths", str(grid)), "give either, not both")):
        bad = _invoke(app, "--model", "mixtral:8x7b", "--hardware", "h100_sxm", *extra)
        assert isinstance(bad.exception, BadInput) and needle in str(bad.exception), bad.output


def test_the_best_point_at_an_interactivity_includes_the_largest_batch_that_fits(app):
    """A low interactivity target is met best by the largest batch the KV cache holds (25 sequences here, between
    the powers of two the batches are swept at): the interactivity table finds it, as the offline load does."""
    r = _invoke(app, "--model", "llama3:70b", "--hardware", "h100_sxm", "--dtype", "fp8", "--kv-dtype", "fp8",
                "--prompt", "128", "--output", "2048", "--gpus", "1", "--mem-util", "0.95", "--engine", "trt-llm",
                "--batch", "8", "--interactivity", "30", "--offline", "--json")
    h = json.loads(r.stdout)["hardware"][0]
    off = next(row for row in h["under_load"] if row["load"] == "offline")
    best = h["at_interactivity"][0]["point"]
    assert off["point"]["interactivity_tokens_per_s_per_user"] >= 30 and off["batch_in_flight"] == 25
    assert best["batch_size"] == 25
    assert best["output_tokens_per_s_per_gpu"] == pytest.approx(off["point"]["output_tokens_per_s_per_gpu"])


def test_an_explicit_tp_across_domains_is_projected_with_a_note(app):
    """The search keeps attention TP inside one scale-up domain; a deployment that stretches it over the NIC (SGLang's
    two-node TP16) is projected as given, and says so."""
    r = _invoke(app, "--model", "llama3:70b", "--hardware", "b200", "--layout", "tp=16", "--batch", "1", "--json")
    h = json.loads(r.stdout)["hardware"][0]
    assert h["records"][0]["layout"]["text"] == "16 GPUs (2 domains): TP16"
    assert any("attention TP 16 spans 2 scale-up domains of 8" in n for n in h["notes"])
    r = _invoke(app, "--model", "llama3:70b", "--hardware", "b200", "--layout", "tp=8", "--batch", "1", "--json")
    assert not any("spans" in n for n in json.loads(r.stdout)["hardware"][0]["notes"])
