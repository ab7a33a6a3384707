"""A results file with no records (`records: []`, a run that recorded nothing): `report` and `compare` refuse it
as bad input (exit 3, one line naming the file) and write nothing, instead of an empty report that exits 0."""

from __future__ import annotations

import json

from tests.report.conftest import make_doc


def _empty(tmp_path):
    p = tmp_path / "empty.json"
    p.write_text(json.dumps({**make_doc("h100_sxm", "NVIDIA H100 SXM", 2.5, 1.0), "records": []}))
    return p


def test_report_refuses_a_file_with_no_records_and_writes_nothing(docs, tmp_path, run_cli):
    empty = _empty(tmp_path)
    for argv in ([str(empty)], [str(docs["h100.json"]), str(empty)]):
        out_dir = tmp_path / "report"
        code, out, err = run_cli(["report", *argv, "--out", str(out_dir)])
        assert (code, out, err) == (3, "", f"error: {empty}: no records\n")
        assert not out_dir.exists()
        code, out, err = run_cli(["report", *argv, "--out", str(out_dir), "--json"])
        assert (code, out) == (3, "") and not out_dir.exists()


def test_compare_refuses_a_file_with_no_records(docs, tmp_path, run_cli):
    empty = _empty(tmp_path)
    for argv in ([str(docs["h100.json"]), str(empty)], [str(empty), str(docs["b200.json"]), "--json"]):
        code, out, err = run_cli(["compare", *argv])
        assert (code, out, err) == (3, "", f"error: {empty}: no records\n")
    code, _, _ = run_cli(["compare", str(docs["h100.json"]), str(docs["b200.json"])])
    assert code == 0
