"""`compare`, `report` and `gate` on the committed baseline (results/baselines/cpu-ci-gate/) and a projection give
the verdicts and numbers they gave before result documents were typed and metrics declared in one table
(tests/report/data/baselines_before/, captured with the commands below at the commit before that change).

New columns, metrics and fields may appear; every value that existed must be unchanged.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BEFORE = Path(__file__).parent / "data" / "baselines_before"
FILES = sorted((ROOT / "results" / "baselines" / "cpu-ci-gate").glob("*.json"))
PROJECTION = ROOT / "tests" / "projection" / "data" / "h200_check.json"

pytestmark = pytest.mark.skipif(len(FILES) != 5, reason="the committed baseline has 5 runs")


def _rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def _same(before: Any, after: Any, at: str = "") -> None:
    """`after` holds everything `before` held, with the same values (numbers to 1e-12 relative); it may hold more."""
    if isinstance(before, dict):
        assert isinstance(after, dict), at
        for k, v in before.items():
            assert k in after, f"{at}.{k} disappeared"
            _same(v, after[k], f"{at}.{k}")
    elif isinstance(before, list) and at.endswith(".metrics"):  # the gated metric names: a new one may join
        assert isinstance(after, list) and after[:len(before)] == before, at
    elif isinstance(before, list):
        assert isinstance(after, list) and len(after) == len(before), at
        for i, (a, b) in enumerate(zip(before, after)):
            _same(a, b, f"{at}[{i}]")
    elif isinstance(before, float) and not isinstance(after, bool) and isinstance(after, (int, float)):
        assert math.isclose(before, after, rel_tol=1e-12, abs_tol=0) or before == after, f"{at}: {before} != {after}"
    else:
        assert before == after, f"{at}: {before!r} != {after!r}"


@pytest.fixture
def in_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the captured outputs name the files relative to the repository


def test_compare_is_unchanged(run_cli, in_root):
    argv = ["compare", _rel(FILES[0]), _rel(FILES[1]), _rel(FILES[4]), _rel(PROJECTION), "--json"]
    code, out, err = run_cli(argv)
    assert code == 0, err
    before = json.loads((BEFORE / "compare.json").read_text())
    after = json.loads(out)
    _same(before["runs"], after["runs"], "runs")
    assert before["notes"] == after["notes"]
    assert len(after["groups"]) == len(before["groups"])
    for i, (gb, ga) in enumerate(zip(before["groups"], after["groups"])):
        _same({k: v for k, v in gb.items() if k != "metrics"}, ga, f"groups[{i}]")
        shown = {m["metric"]: m for m in ga["metrics"]}
        for m in gb["metrics"]:  # a metric may be added, none dropped or changed
            _same(m, shown.get(m["metric"]), f"groups[{i}].{m['metric']}")


def test_report_csv_is_unchanged(run_cli, in_root, tmp_path):
    code, _, err = run_cli(["report", *map(_rel, FILES), _rel(PROJECTION), "--out", str(tmp_path), "--json"])
    assert code == 0, err
    read = lambda p: list(csv.DictReader(p.open(newline="")))  # noqa: E731
    before, after = read(BEFORE / "report.csv"), read(tmp_path / "report.csv")
    assert len(before) == len(after)
    cols = list(before[0])
    assert [c for c in after[0] if c in cols] == cols, "existing columns keep their names and order"
    for i, (rb, ra) in enumerate(zip(before, after)):
        for c in cols:
            if rb[c] == ra[c]:
                continue
            assert math.isclose(float(rb[c]), float(ra[c]), rel_tol=1e-12), f"row {i} {c}: {rb[c]} != {ra[c]}"


@pytest.mark.parametrize("name, argv, code", [
    ("gate", ["--baseline", 0, "--baseline", 1, "--baseline", 2, 3, 4], 0),
    ("gate_tight", ["--baseline", 0, "--baseline", 1, "--baseline", 2, 3, 4, "--factor", "0.01", "--metric",
                    "ttft_ms", "--metric", "itl_ms", "--metric", "decode_tokens_per_s", "--metric",
                    "interactivity_tokens_per_s_per_user", "--metric", "usd_per_mtok.input", "--metric",
                    "output_tokens_per_s_per_gpu"], 0),
    ("gate_single", ["--baseline", 1, 3, "--factor", "0.01", "--metric", "ttft_ms", "--metric", "tpot_ms",
                     "--metric", "itl_ms", "--metric", "decode_tokens_per_s", "--metric",
                     "interactivity_tokens_per_s_per_user", "--metric", "usd_per_mtok.input", "--metric",
                     "output_tokens_per_s_per_gpu"], 1),
])
def test_gate_verdicts_are_unchanged(run_cli, in_root, name, argv, code):
    argv = [_rel(FILES[a]) if isinstance(a, int) else a for a in argv]
    got, out, err = run_cli(["gate", *argv, "--json"])
    assert got == code, err
    before = json.loads((BEFORE / f"{name}.json").read_text())
    after = json.loads(out)
    assert after["verdict"] == before["verdict"] and after["counts"] == before["counts"]
    _same(before, after)
