"""report.csv: one row per model × batch size × hardware, every documented column, round-trips through pandas."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from moebench.cli import main
from moebench.report.rows import COLUMNS, CSV_DTYPES, STAT_SUFFIXES
from moebench.results import _umask

DOC = Path(__file__).resolve().parents[2] / "docs" / "report.md"


def documented_columns() -> list[str]:
    """Column names from docs/report.md's tables; `name_*` stands for name_median, _p20, _p80, _p90, _p99, _n."""
    cols = []
    for line in DOC.read_text().splitlines():
        m = re.match(r"^\| `([a-z0-9_*]+)` \|", line)
        if m:
            name = m.group(1)
            cols += [name[:-1] + s for s in STAT_SUFFIXES] if name.endswith("_*") else [name]
    return cols


def test_docs_list_exactly_the_columns_written():
    assert documented_columns() == list(COLUMNS)


def test_csv_round_trips_through_pandas(docs, tmp_path, capsys):
    out = tmp_path / "rep"
    with pytest.raises(SystemExit) as e:
        main(["report", str(docs["h100.json"]), str(docs["b200.json"]), "--out", str(out), "--json"])
    assert e.value.code == 0
    written = json.loads(capsys.readouterr().out)
    assert written["rows"] == 6 + 9

    df = pd.read_csv(out / "report.csv", dtype=CSV_DTYPES)
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 15 and set(df["hardware_id"]) == {"h100_sxm", "b200"}
    assert not df.duplicated(["model", "batch_size", "hardware_id"]).any()
    for col in COLUMNS:
        if col.endswith(("_median", "_p20", "_p80", "_n", "_ms", "_fraction")) or col.startswith("params_"):
            assert pd.api.types.is_numeric_dtype(df[col]), col

    src = json.loads(docs["b200.json"].read_text())
    rec = next(r for r in src["records"] if r["model"] == "mixtral:8x7b" and r["batch_size"] == 8)
    row = df[(df.hardware_id == "b200") & (df.model == "mixtral:8x7b") & (df.batch_size == 8)].iloc[0]
    assert row["ttft_ms_median"] == pytest.approx(rec["metrics"]["ttft_ms"]["median"], rel=1e-12)
    assert row["usd_per_mtok_blended_p80"] == pytest.approx(rec["metrics"]["usd_per_mtok"]["blended"]["p80"], rel=1e-12)
    assert row["tpot_ms_n"] == rec["metrics"]["tpot_ms"]["n"]
    assert row["ttft_ms_p99"] == pytest.approx(rec["metrics"]["ttft_ms"]["p99"], rel=1e-12)
    assert row["itl_ms_p90"] == pytest.approx(rec["metrics"]["itl_ms"]["p90"], rel=1e-12)
    assert row["dtype"] == "bf16"  # the run wrote "bfloat16"; projections write "bf16"
    assert row["basis"] == "extrapolated" and row["git_sha"] == "2" * 40
    assert pd.isna(row["joules_per_token_median"])  # null in the result -> empty cell -> NaN


def test_unknown_future_metric_is_kept(doc_factory, tmp_path):
    d = doc_factory("h100_sxm", "H100", 2.5, 1.0)
    for r in d["records"]:
        r["metrics"]["goodput_tokens_per_s"] = {"median": 5.0, "p20": 4.0, "p80": 6.0, "n": 3, "basis": "measured",
                                                "unit": "tokens/s", "samples": [4, 5, 6]}
    p = tmp_path / "d.json"
    p.write_text(json.dumps(d))
    with pytest.raises(SystemExit):
        main(["report", str(p), "--out", str(tmp_path / "o")])
    df = pd.read_csv(tmp_path / "o" / "report.csv")
    assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert (df["goodput_tokens_per_s_median"] == 5.0).all()


def test_corrupt_result_is_one_line_exit_3(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit) as e:
        main(["report", str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert e.value.code == 3 and err.startswith("error:") and err.count("\n") == 1


def test_bad_out_is_one_line_and_a_failed_report_leaves_the_old_one(doc_factory, tmp_path, capsys, monkeypatch):
    p = tmp_path / "d.json"
    p.write_text(json.dumps(doc_factory("h100_sxm", "H100", 2.5, 1.0)))
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(SystemExit) as e:
        main(["report", str(p), "--out", str(afile)])
    err = capsys.readouterr().err
    assert e.value.code == 3 and "--out" in err and "not a folder" in err and err.count("\n") == 1

    out = tmp_path / "rep"
    with pytest.raises(SystemExit):
        main(["report", str(p), "--out", str(out)])
    before = {f: (out / f).read_bytes() for f in ("report.csv", "report.html")}
    assert oct((out / "report.csv").stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # not mkstemp's 0600

    def broken(*a, **k):
        raise RuntimeError("plot failed")

    monkeypatch.setattr("moebench.report.html.render", broken)
    with pytest.raises(SystemExit) as e:
        main(["report", str(p), "--out", str(out)])
    assert e.value.code != 0
    assert {f: (out / f).read_bytes() for f in ("report.csv", "report.html")} == before  # neither half-replaced
    assert sorted(f.name for f in out.iterdir()) == ["report.csv", "report.html"]  # no temp files left
