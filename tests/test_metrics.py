"""The metric table (moebench.metrics) is the one declaration every view reads: CSV, HTML, compare, the gate's
direction and defaults, and docs/report.md. Adding a metric is a declaration here plus the producer's formula."""

from __future__ import annotations

import copy
import csv
import json
import re
from pathlib import Path

import pytest

from moebench import metrics as mt
from moebench.gate import DEFAULT_METRICS, better, gate
from moebench.results import stat
from tests.report.conftest import make_doc, run_main

DOC = Path(__file__).resolve().parents[1] / "docs" / "report.md"


def _block(shape: str) -> re.Pattern:
    return re.compile(rf"(<!-- metrics:{shape} -->\n)(.*?)(<!-- /metrics:{shape} -->)", re.S)


def regenerate() -> None:
    """Rewrite docs/report.md's metric tables from the declarations:
    python -c 'from tests.test_metrics import regenerate; regenerate()'"""
    text = DOC.read_text()
    for shape in ("stat", "scalar"):
        text = _block(shape).sub(lambda m: m.group(1) + mt.doc_table(shape) + m.group(3), text)
    DOC.write_text(text)


@pytest.mark.parametrize("shape", ["stat", "scalar"])
def test_docs_metric_tables_are_the_declared_ones(shape):
    m = _block(shape).search(DOC.read_text())
    assert m, f"docs/report.md lacks the generated {shape} table"
    assert m.group(2) == mt.doc_table(shape), "regenerate: " + " ".join(regenerate.__doc__.split("\n")[1].split())


def test_directions_and_defaults_come_from_the_table():
    assert DEFAULT_METRICS == ("ttft_ms", "tpot_ms", "output_tokens_per_s_per_gpu", "usd_per_mtok.blended",
                               "failure_ratio")
    assert better("tokens_per_joule") == "higher"  # a name-guess would call it lower (no "tokens_per_s" in it)
    assert better("joules_per_token") == "lower"
    for m in mt.stats():
        assert mt.lookup(m.name) is m and mt.lookup(m.path) is m
        if m.better:
            assert better(m.path) == m.better


def _with_energy(doc: dict, j_per_tok: list[float]) -> dict:
    """What engine/records.py writes for a run whose energy was measured: J/token and its reciprocal, per repeat."""
    d = copy.deepcopy(doc)
    for r in d["records"]:
        r["metrics"]["joules_per_token"] = stat(j_per_tok, "measured", "J/token")
        r["metrics"]["tokens_per_joule"] = stat([1 / j for j in j_per_tok], "measured", "tokens/J")
    return d


def test_tokens_per_joule_is_computed_by_the_producer():
    from moebench.catalog import get_hardware
    from moebench.engine.generate import GenerationSamples
    from moebench.engine.records import Peaks, Pricing, build_record
    from moebench.models import resolve_name

    _, cfg = resolve_name("llama3:debug")
    # repeats metered for over a second each: one J/token per repeat (shorter ones are pooled)
    samples = GenerationSamples(ttft_ms=[10.0, 11.0], tpot_ms=[2.0, 2.0], itl_ms=[2.0] * 8, energy_window_s=[1.2, 1.3])
    kw = dict(name="llama3:debug", kind="dense", run_cfg=cfg, samples=samples, batch=2, prompt=6, output=4,
              dtype_bytes=4, pricing=Pricing(None, None, None, 1), peaks=Peaks(None, None, None, None),
              intelligence=None)
    assert get_hardware("cpu")  # the catalog loads
    plain = build_record(**kw)["metrics"]
    assert plain["joules_per_token"] is None and plain["tokens_per_joule"] is None  # not measured: null
    m = build_record(**kw, energy_j_per_repeat=[40.0, 20.0])["metrics"]  # 2 × (6 + 4) = 20 tokens per repeat
    assert m["joules_per_token"]["samples"] == [2.0, 1.0]
    assert m["tokens_per_joule"]["samples"] == [0.5, 1.0] and m["tokens_per_joule"]["unit"] == "tokens/J"


def test_tokens_per_joule_reaches_csv_html_compare_and_gate(tmp_path, capsys):
    base = _with_energy(make_doc("h100_sxm", "H100", 2.0, 1.0), [2.0 + 0.01 * i for i in range(10)])
    worse = _with_energy(make_doc("h100_sxm", "H100", 2.0, 1.0), [3.0 + 0.01 * i for i in range(10)])
    paths = []
    for name, d in (("base.json", base), ("worse.json", worse)):
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps(d))
    code, _, err = run_main(["report", *map(str, paths), "--out", str(tmp_path / "rep")], capsys)
    assert code == 0, err
    row = next(csv.DictReader((tmp_path / "rep" / "report.csv").open()))
    assert float(row["tokens_per_joule_median"]) == pytest.approx(1 / 2.045, rel=1e-3)
    assert ">tok/J</th>" in (tmp_path / "rep" / "report.html").read_text()
    code, out, _ = run_main(["compare", *map(str, paths), "--json"], capsys)
    shown = {m["metric"]: m for m in json.loads(out)["groups"][0]["metrics"]}
    assert shown["tokens_per_joule"]["better"] == "higher"
    res = gate([base], [worse], metrics=["tokens_per_joule"])
    assert {r.better for r in res.rows} == {"higher"} and {r.status for r in res.rows} == {"regressed"}


def test_a_new_metric_is_one_declaration(monkeypatch, tmp_path, capsys):
    """Declare `goodput_tokens_per_s` (higher is better, shown in HTML and compare) and let the 'producer' write it:
    nothing else changes, and CSV, HTML, compare and the gate all carry it with its direction."""
    new = mt.Metric("goodput_tokens_per_s", "goodput_tokens_per_s", "tokens/s", "higher", mt.RUN,
                    "output tokens/s of requests that met their latency target", "goodput tok/s", mt.ALL_VIEWS)
    monkeypatch.setattr(mt, "METRICS", mt.METRICS + (new,))
    monkeypatch.setitem(mt.BY_NAME, new.name, new)
    monkeypatch.setitem(mt.BY_PATH, new.path, new)

    def produced(speed: float) -> dict:
        d = make_doc("h100_sxm", "H100", 2.0, 1.0)
        for r in d["records"]:
            r["metrics"]["goodput_tokens_per_s"] = stat([100.0 * speed + i for i in range(10)], "measured", "tokens/s")
        return d

    base, slow = produced(1.0), produced(0.5)
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for p, d in zip(paths, (base, slow)):
        p.write_text(json.dumps(d))
    code, _, err = run_main(["report", *map(str, paths), "--out", str(tmp_path / "rep")], capsys)
    assert code == 0, err
    header = (tmp_path / "rep" / "report.csv").read_text().splitlines()[0].split(",")
    assert {f"goodput_tokens_per_s_{s}" for s in mt.STAT_SUFFIXES} <= set(header)
    assert ">goodput tok/s</th>" in (tmp_path / "rep" / "report.html").read_text()
    code, out, _ = run_main(["compare", *map(str, paths), "--json"], capsys)
    shown = {m["metric"]: m for m in json.loads(out)["groups"][0]["metrics"]}
    assert shown["goodput_tokens_per_s"]["better"] == "higher"
    assert sorted(shown["goodput_tokens_per_s"]["ratios"].values())[0] == pytest.approx(0.5, rel=0.05)
    res = gate([base], [slow], metrics=["goodput_tokens_per_s"])
    assert {r.better for r in res.rows} == {"higher"} and {r.status for r in res.rows} == {"regressed"}
