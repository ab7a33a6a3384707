"""`moebench gate` given results that cannot be compared: bad input (exit 3), not a regression verdict (exit 1)."""

import json

from tests.cli.conftest import assert_one_line_error
from tests.test_gate import _doc, noisy


def _write(path, doc):
    path.write_text(json.dumps(doc))
    return str(path)


def test_two_different_workloads_are_bad_input(cli, tmp_path):
    base = _doc(noisy(15, 10, 0.03, 1), noisy(15, 50, 0.03, 2))
    cur = {**_doc(noisy(15, 10, 0.03, 3), noisy(15, 50, 0.03, 4), models=("mixtral:debug",)),
           "workload": {"name": "other"}}
    proc = cli("gate", _write(tmp_path / "cur.json", cur), "--baseline", _write(tmp_path / "base.json", base))
    assert_one_line_error(proc, 3, "baseline ran workload t and current other", "moebench compare")


def test_one_workload_whose_sides_share_no_record_is_bad_input(cli, tmp_path):
    base = _doc(noisy(15, 10, 0.03, 1), noisy(15, 50, 0.03, 2))
    cur = _doc(noisy(15, 10, 0.03, 3), noisy(15, 50, 0.03, 4), models=("mixtral:debug",))
    proc = cli("gate", _write(tmp_path / "cur.json", cur), "--baseline", _write(tmp_path / "base.json", base))
    assert_one_line_error(proc, 3, "share no model × batch size")


def test_the_same_workload_with_a_record_dropped_still_fails_the_gate(cli, tmp_path):
    base = _doc(noisy(15, 10, 0.03, 1), noisy(15, 50, 0.03, 2), models=("llama3:debug", "mixtral:debug"))
    cur = _doc(noisy(15, 10, 0.03, 3), noisy(15, 50, 0.03, 4))
    proc = cli("gate", _write(tmp_path / "cur.json", cur), "--baseline", _write(tmp_path / "base.json", base))
    assert proc.returncode == 1 and "missing" in proc.stdout, proc.stderr


def test_the_same_workload_name_with_other_sizes_is_bad_input(cli, tmp_path):
    """Same name, prompt edited: every record would read as missing (exit 1) for what is another workload."""
    base = _doc(noisy(15, 10, 0.03, 1), noisy(15, 50, 0.03, 2))
    cur = _doc(noisy(15, 10, 0.03, 3), noisy(15, 50, 0.03, 4))
    cur["records"][0]["prompt_tokens"] = 512
    proc = cli("gate", _write(tmp_path / "cur.json", cur), "--baseline", _write(tmp_path / "base.json", base))
    assert_one_line_error(proc, 3, "share no model × batch size × scenario")


def test_a_projection_on_either_side_is_named_as_one(cli, tmp_path):
    """`moebench project --json` writes no schema_version: the gate says it got a projection, not a results file."""
    proc = cli("project", "--model", "llama3:8b", "--hardware", "h100_sxm", "--batch", "8", "--json")
    assert proc.returncode == 0, proc.stderr
    proj = tmp_path / "proj.json"
    proj.write_text(proc.stdout)
    run = _write(tmp_path / "run.json", _doc(noisy(15, 10, 0.03, 1), noisy(15, 50, 0.03, 2)))
    for argv in (("--baseline", str(proj), run), ("--baseline", run, str(proj))):
        got = cli("gate", *argv)
        assert_one_line_error(got, 3, f"{proj}: a projection (`moebench project --json`), not a measured run",
                              "the gate compares measured runs")
        assert "no schema_version" not in got.stderr
    # a file that is neither still gets the results file's own message
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"kind": "projection", "hardware": "h100_sxm"}))
    assert_one_line_error(cli("gate", "--baseline", str(other), run), 3, "not a moebench results file")
