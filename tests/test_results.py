import json
import math
from pathlib import Path

import pytest

from moebench.errors import BadInput
from moebench.results import (
    SCHEMA_VERSION, derive, dumps, load_result, make_record, migrate, new_doc, percentile, stat, validated,
    write_atomic, write_result,
)

ROOT = Path(__file__).resolve().parents[1]


def test_percentile_matches_linear_interpolation():
    xs = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert percentile(xs, 50) == 3.0
    assert percentile(xs, 20) == pytest.approx(1.8)  # position 0.8 between 1 and 2
    assert percentile(xs, 80) == pytest.approx(4.2)


def test_stat_and_derive_keep_samples_and_basis():
    s = stat([10.0, 20.0, 30.0], "extrapolated", "ms")
    assert (s["median"], s["n"], s["basis"], s["unit"]) == (20.0, 3, "extrapolated", "ms")
    d = derive(s, lambda ms: 1000.0 / ms, "tok/s")
    assert d["median"] == pytest.approx(50.0) and d["basis"] == "extrapolated"
    assert d["p20"] < d["median"] < d["p80"]


def test_stat_reports_the_tail_measure_md_asks_for():
    s = stat([float(x) for x in range(1, 101)], "measured", "ms")
    assert (s["p90"], s["p99"]) == (pytest.approx(90.1), pytest.approx(99.01))
    assert s["median"] <= s["p80"] <= s["p90"] <= s["p99"]
    assert derive(s, lambda ms: 2 * ms)["p99"] == pytest.approx(198.02)


def test_a_file_from_before_p90_p99_still_loads(tmp_path):
    doc = _valid_doc()
    for st in (doc["records"][0]["metrics"]["ttft_ms"], doc["records"][0]["metrics"]["usd_per_mtok"]["blended"]):
        del st["p90"], st["p99"]
    p = tmp_path / "old.json"
    p.write_text(json.dumps(doc))
    assert "p99" not in load_result(p)["records"][0]["metrics"]["ttft_ms"]


def test_write_atomic_leaves_no_temp_files(tmp_path):
    p = write_atomic(tmp_path / "sub" / "r.json", {"a": 1})
    assert json.loads(p.read_text()) == {"a": 1}
    assert [f.name for f in p.parent.iterdir()] == ["r.json"]


def test_write_atomic_keeps_old_file_when_serialisation_fails(tmp_path):
    p = write_atomic(tmp_path / "r.json", {"a": 1})
    with pytest.raises(TypeError):
        write_atomic(p, {"a": object()})
    assert json.loads(p.read_text()) == {"a": 1}
    assert len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize(
    "content, needle",
    [
        ("{not json", "corrupt results file"),
        ('{"x": 1}', "no schema_version"),
        (json.dumps({"schema_version": 999}), "not supported"),
        (json.dumps({"schema_version": SCHEMA_VERSION}), "kind is missing"),
        (json.dumps({"schema_version": 1}), "complete is missing"),
        ('{"schema_version": 2, "wall_s": NaN}', "NaN is not a JSON number"),
        ('{"schema_version": 2, "wall_s": -Infinity}', "-Infinity is not a JSON number"),
    ],
)
def test_load_result_rejects_bad_files_in_one_line(tmp_path, content, needle):
    p = tmp_path / "r.json"
    p.write_text(content)
    with pytest.raises(BadInput) as e:
        load_result(p)
    assert needle in str(e.value) and "\n" not in str(e.value)


def _valid_doc() -> dict:
    return {"schema_version": SCHEMA_VERSION, "kind": "engine", "complete": True, "workload": {}, "hardware": {},
            "environment": {},
            "records": [{"model": "m", "batch_size": 1, "prompt_tokens": 8, "output_tokens": 4,
                         "metrics": {"ttft_ms": stat([1.0, 2.0], "measured", "ms"), "joules_per_token": None,
                                     "usd_per_mtok": {"blended": stat([3.0, 4.0], "measured", "$")}}}]}


def _set(doc, path, value):
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


@pytest.mark.parametrize("path, value, needle", [
    (("records", 0), None, "records[0] is None, not an object"),
    (("records", 0, "batch_size"), "eight", "records[0].batch_size is 'eight', not a whole number"),
    (("records", 0, "batch_size"), True, "records[0].batch_size is True"),
    (("records", 0, "model"), 7, "records[0].model is 7, not a string"),
    (("kind",), "model", "kind: Input should be 'engine'"),
    (("complete",), "yes", "complete is 'yes', not true or false"),
    (("runid",), "x", "runid: not a field of schema 2"),
    (("records", 0, "metrics", "ttft_ms"), "fast", "records[0].metrics.ttft_ms is 'fast'"),
    (("records", 0, "metrics", "ttft_ms", "samples"), [1.0, "x"], "records[0].metrics.ttft_ms.samples"),
    (("records", 0, "metrics", "usd_per_mtok", "blended", "median"), "3", "usd_per_mtok.blended.median is '3'"),
    (("records", 0, "metrics", "ttft_ms", "p99"), "slow", "records[0].metrics.ttft_ms.p99 is 'slow'"),
    (("records",), {}, "records is {}, not a list"),
    # valid JSON of the right types, but no time, rate or price is negative and no run has 0 ranks
    (("records", 0, "metrics", "ttft_ms", "median"), -5.0, "records[0].metrics.ttft_ms.median is -5.0, not a number ≥ 0"),
    (("records", 0, "metrics", "ttft_ms", "samples"), [1.0, -2.0], "ttft_ms.samples must be a list of numbers ≥ 0"),
    (("world_size",), 0, "world_size is 0, not a count of ranks"),
    (("records", 0, "batch_size"), -3, "records[0].batch_size is -3, not a count ≥ 0"),
    (("records", 0, "prompt_tokens"), -1, "records[0].prompt_tokens is -1, not a count ≥ 0"),
    (("hardware", "price"), {"usd_per_gpu_hour": -1.0}, "hardware.price.usd_per_gpu_hour is -1.0, not a price ≥ 0"),
    (("records", 0, "cost"), {"usd_per_gpu_hour": -1.0, "n_gpus": 1}, "records[0].cost.usd_per_gpu_hour is -1.0"),
    (("hardware", "price"), 2.5, "hardware.price is 2.5, not an object"),  # was an AttributeError, exit 70
])
def test_load_result_names_the_first_bad_field(tmp_path, path, value, needle):
    p = tmp_path / "r.json"
    write_atomic(p, _valid_doc())
    assert load_result(p)["records"][0]["model"] == "m"
    p.write_text(json.dumps(_set(_valid_doc(), path, value)))
    with pytest.raises(BadInput) as e:
        load_result(p)
    assert "corrupt results file" in str(e.value) and needle in str(e.value) and "\n" not in str(e.value)


def _committed() -> list[tuple[str, dict]]:
    """Every committed result document: baselines, benchmark results (a file may hold a list), tests' data."""
    out = []
    for pattern in ("results/baselines/**/*.json", "benchmarks/results/**/*.json", "tests/**/data/*.json"):
        for p in sorted(ROOT.glob(pattern)):
            doc = json.loads(p.read_text())
            if isinstance(doc, dict) and "schema_version" not in doc:
                continue  # not a result (captured command outputs)
            out += [(f"{p.relative_to(ROOT)}[{i}]", d) for i, d in enumerate(doc if isinstance(doc, list) else [doc])]
    return out


def test_every_committed_result_file_loads_through_the_migration():
    docs = _committed()
    assert len(docs) >= 15 and {d["schema_version"] for _, d in docs} == {1}
    kinds = {validated(d, name)["kind"] for name, d in docs}
    assert kinds == {"engine", "kernel"}


def test_v1_to_v2_moves_provenance_to_the_header_and_says_static():
    v1 = json.loads(next(ROOT.glob("results/baselines/cpu-ci-gate/*.json")).read_text())
    v2 = migrate(v1)
    assert v1["schema_version"] == 1 and v1["kind"] == "model"  # the input is left as it was
    assert (v2["schema_version"], v2["kind"]) == (2, "engine")
    assert v2["git_commit"] == v1["environment"]["git_sha"] and v2["moebench_version"] == v1["environment"]["moebench_version"]
    assert "git_sha" not in v2["environment"] and v2["environment"]["hostname"] == v1["environment"]["hostname"]
    assert {r["serving"] for r in v2["records"]} == {"static"}
    assert all(r["metrics"]["tokens_per_joule"] is None for r in v2["records"])
    assert v2["records"][0]["metrics"]["ttft_ms"] == v1["records"][0]["metrics"]["ttft_ms"]


def test_constructors_build_a_document_that_round_trips(tmp_path):
    doc = new_doc(kind="endpoint", workload={"name": "chat"}, hardware={"id": "h100_sxm"}, world_size=1)
    assert doc["run_id"].endswith(f"-chat-{doc['run_id'].rsplit('-', 1)[1]}") and doc["complete"] is False
    assert doc["moebench_version"] and "git_commit" in doc and "python" in doc["environment"]
    doc["records"].append(make_record(model="m", kind="dense", basis="measured", batch_size=4, prompt_tokens=8,
                                      output_tokens=2, metrics={"ttft_ms": stat([1.0, 2.0], "measured", "ms")}))
    doc["complete"] = True
    p = write_result(doc, tmp_path)
    assert p == tmp_path / f"{doc['run_id']}.json" and load_result(p) == doc
    with pytest.raises(TypeError, match="runid"):
        new_doc(kind="engine", workload={}, hardware={}, runid="x")
    with pytest.raises(ValueError, match="records\\[0\\].batch_size"):
        write_result({**doc, "records": [{**doc["records"][0], "batch_size": "4"}]}, tmp_path)


def test_non_finite_values_are_written_as_null_with_a_note(tmp_path):
    rec = make_record(model="m", kind="dense", basis="measured", batch_size=1, prompt_tokens=1, output_tokens=1,
                      metrics={"ttft_ms": stat([1.0, math.nan], "measured", "ms"), "joules_per_token": None,
                               "efficiency": {"mbu_decode": math.inf}})
    text = dumps({"records": [rec], "wall_s": math.nan})
    out = json.loads(text)  # strict JSON: no NaN / Infinity tokens
    assert "NaN" not in text and "Infinity" not in text
    r = out["records"][0]
    assert r["metrics"]["ttft_ms"] is None and r["metrics"]["efficiency"]["mbu_decode"] is None and out["wall_s"] is None
    assert r["notes"] == ["metrics.ttft_ms had a non-finite value, written as null",
                          "metrics.efficiency.mbu_decode was inf (not a finite number), written as null"]


def test_a_non_finite_statistic_is_still_written_as_null_not_refused(tmp_path):
    """The ≥ 0 check must not turn a NaN (which `dumps` writes as null with a note) into a schema failure."""
    doc = _valid_doc()
    doc["run_id"] = "nan"
    doc["records"][0]["metrics"]["ttft_ms"] = stat([1.0, math.nan], "measured", "ms")
    r = load_result(write_result(doc, tmp_path))["records"][0]
    assert r["metrics"]["ttft_ms"] is None and "metrics.ttft_ms had a non-finite value, written as null" in r["notes"]
