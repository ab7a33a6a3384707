"""The run table: user-controlled names shown literally (rich markup in a model name is text, not style); a real
run in 100 columns with every number whole; --wide with everything; the caveats under it."""

import copy
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from moebench import metrics as mt
from moebench.report.caveats import caveats
from moebench.report.format import fmt
from moebench.report.tables import print_run_table, run_table, spread
from moebench.results import stat


def _doc(model: str) -> dict:
    s = stat([1.0, 2.0, 3.0])
    metrics = {k: s for k in ("ttft_ms", "tpot_ms", "decode_tokens_per_s", "output_tokens_per_s_per_gpu")}
    metrics.update(usd_per_mtok=None, intelligence_per_usd=None)
    rec = {"model": model, "kind": "moe", "basis": "measured", "layers_run": 2, "layers_total": 2, "batch_size": 1,
           "params": {"active": 10, "total": 20}, "intelligence": None, "metrics": metrics}
    hw = {"name": "CPU [bold]host[/bold]", "n_devices": 1, "device": "cpu", "dtype": "float32", "kernels": "torch",
          "price": {"usd_per_gpu_hour": None}}
    return {"workload": {"name": "w"}, "hardware": hw, "records": [rec]}


def test_markup_in_names_is_printed_literally():
    buf = io.StringIO()
    Console(file=buf, width=300, color_system=None).print(run_table(_doc("evil:[red]x[/red]")))
    text = buf.getvalue()
    assert "evil:[red]x[/red]" in text
    assert "CPU [bold]host[/bold]" in text


def test_a_single_value_prints_without_a_spread_and_a_tail_on_request():
    assert spread(stat([22.6], "projected")) == "22.6"  # not "22.6 (22.6–22.6)"
    assert spread(stat([5.0, 5.0, 5.0])) == "5"
    many = stat([float(x) for x in range(1, 101)])
    assert spread(many) == "50.5 [dim](20.8–80.2)[/dim]"
    assert spread(many, tail=True) == "50.5 [dim](20.8–80.2)[/dim]\n[dim]p90 90.1 · p99 99[/dim]"
    old = {k: v for k, v in many.items() if k not in ("p90", "p99")}  # a file from before p90/p99
    assert spread(old, tail=True) == "50.5 [dim](20.8–80.2)[/dim]"


# --------------------------------------------------------------------------------- a real run at 100 columns
# `moebench run` of llama3:debug on 2 of its 4 layers (extrapolated) and mixtral:debug (measured), batches 1 and 4
REAL_RUN = Path(__file__).parent / "report" / "data" / "runs" / "tiny-extrapolated.json"


@pytest.fixture
def real_doc() -> dict:
    return json.loads(REAL_RUN.read_text())


def _render(doc: dict, width: int, *, wide: bool = False) -> str:
    buf = io.StringIO()
    print_run_table(Console(file=buf, width=width, color_system=None), doc, wide=wide)
    return buf.getvalue()


def test_the_run_table_fits_100_columns_and_every_cell_is_whole(real_doc):
    text = _render(real_doc, 100)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "…" not in text  # nothing cut to an ellipsis
    words = set(text.replace("│", " ").split())
    for r in real_doc["records"]:
        m = r["metrics"]
        assert r["model"] in words
        for path in ("ttft_ms", "tpot_ms", "output_tokens_per_s_per_gpu", "usd_per_mtok.blended"):
            assert fmt(mt.at(m, path)["median"]) in words, path  # e.g. "0.558", never "0.0…"
    assert {"extrap.", "2/4L"} <= words  # the basis, with N of L layers
    assert "--wide" in text  # the caption says where the rest is


def test_wide_shows_every_metric_with_its_tail_at_natural_width(real_doc):
    narrow, wide = _render(real_doc, 100), _render(real_doc, 100, wide=True)
    for head in ("E2E ms", "$/M in (phase)", "$/M out (phase)", "$/M in", "decode tok/s", "MFU/roof"):
        assert head in wide
        assert head not in narrow
    assert "p90 " in wide and "p99 " in wide and "p90 " not in narrow
    assert "…" not in wide
    e2e = mt.at(real_doc["records"][0]["metrics"], "e2e_ms")
    assert f"p99 {fmt(e2e['p99'])}" in wide


def test_extrapolated_runs_say_so_and_point_to_project(real_doc):
    lines = caveats(real_doc)
    assert len(lines) == 1  # llama3:debug only; mixtral:debug ran every layer
    assert lines[0].startswith("llama3:debug ran 2 of its 4 layers")
    assert "moebench project --model llama3:debug --prompt 32 --output 8 --serving static" in lines[0]


def test_a_ratio_above_a_measured_roof_is_flagged(real_doc):
    doc = copy.deepcopy(real_doc)
    doc["records"][3]["metrics"]["efficiency"]["mfu_prefill_measured_roof"] = 1.21
    lines = [ln for ln in caveats(doc) if "roof" in ln]
    assert lines == ["mixtral:debug batch 4: MFU/roof 121% of the roof measured in this run — above 100 %, so "
                     "that roof undercounts this machine and is no ceiling here (docs/measure.md)"]
    assert "121%!" in _render(doc, 100, wide=True)
    assert not [ln for ln in caveats(real_doc) if "roof" in ln]


def test_moebench_run_prints_the_notes_under_its_table(real_doc, tmp_path, monkeypatch, capsys):
    """The command's own output, without the minutes of timing: the engine returns the real run's document."""
    from moebench.cli import main
    from moebench.engine import runner

    monkeypatch.setattr(runner, "run_workload", lambda wl, **kw: (real_doc, tmp_path / "r.json"))
    wl = tmp_path / "w.yaml"
    wl.write_text("name: w\nmodels: [llama3:debug]\ndevice: cpu\nscenario: {prompt_tokens: 32, output_tokens: 8, "
                  "batch_sizes: [1]}\n")
    for wide in (False, True):
        with pytest.raises(SystemExit) as e:
            main(["run", str(wl), "--out", str(tmp_path)] + (["--wide"] if wide else []))
        out = capsys.readouterr().out
        assert e.value.code == 0
        assert ("E2E ms" in out) == wide
        assert "note: llama3:debug ran 2 of its 4 layers" in " ".join(out.split())
