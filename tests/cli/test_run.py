"""`moebench run` end to end on CPU: the table, the result file, --json printing the same record."""

import json
import textwrap

import pytest

from moebench.results import load_result

SMALL = """\
name: small
models: [llama3:debug, mixtral:debug]
device: cpu
scenario: {prompt_tokens: 16, output_tokens: 4, batch_sizes: [1, 2]}
timing: {warmup: 1, repeats: 3}
price: {fallback_usd_per_gpu_hour: 0.5}
"""


@pytest.fixture(scope="module")
def json_run(tmp_path_factory):
    from tests.cli.conftest import moebench

    d = tmp_path_factory.mktemp("run")
    wl = d / "small.yaml"
    wl.write_text(SMALL)
    proc = moebench("run", str(wl), "--json", "--out", str(d / "out"))
    assert proc.returncode == 0, proc.stderr
    return proc, d


def test_json_is_one_document_and_matches_the_file(json_run):
    proc, d = json_run
    doc = json.loads(proc.stdout)  # fails if anything else was printed on stdout
    files = list((d / "out").glob("*.json"))
    assert len(files) == 1
    assert load_result(files[0]) == doc
    assert doc["complete"] is True and doc["schema_version"] == 2 and doc["kind"] == "engine"
    for key in ("workload", "hardware", "environment", "records"):
        assert key in doc
    assert doc["environment"]["libraries"]["torch"]


def test_records_cover_every_model_and_batch_with_costs(json_run):
    doc = json.loads(json_run[0].stdout)
    recs = {(r["model"], r["batch_size"]): r for r in doc["records"]}
    assert set(recs) == {(m, b) for m in ("llama3:debug", "mixtral:debug") for b in (1, 2)}
    for r in recs.values():
        m = r["metrics"]
        assert r["basis"] == "measured" and m["ttft_ms"]["n"] == 3 and m["tpot_ms"]["median"] > 0
        assert m["ttft_ms"]["p20"] <= m["ttft_ms"]["median"] <= m["ttft_ms"]["p80"]
        usd = m["usd_per_mtok"]
        # blended is the 3:1 mix of the per-sample input and output costs
        assert usd["blended"]["median"] == pytest.approx((3 * usd["input"]["median"] + usd["output"]["median"]) / 4, rel=0.2)
        # $/M output = price / (output tok/s × 3600) × 1e6 for one device
        out_tps = m["output_tokens_per_s"]["median"]
        assert usd["output"]["median"] == pytest.approx(0.5 / (out_tps * 3600) * 1e6, rel=1e-6)
        assert m["intelligence_per_usd"] is None  # debug flavors have no published score
        # a CPU host has no catalog power: energy is read from RAPL where readable, never guessed
        assert (r["energy_source"], m["joules_per_token"] is None) in {("rapl", False), ("not measured", True)}
        assert r["contention"]["usable_cpus"] >= 1 and isinstance(r["contention"]["contended"], bool)
    assert recs[("mixtral:debug", 1)]["params"]["active_ratio"] < 1 == recs[("llama3:debug", 1)]["params"]["active_ratio"]


def test_table_run_prints_dense_vs_moe(cli, tmp_path):
    wl = tmp_path / "w.yaml"
    wl.write_text(SMALL.replace("[1, 2]", "[1]").replace("repeats: 3", "repeats: 1"))
    proc = cli("run", str(wl), "--out", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    for needle in ("llama3:debug", "mixtral:debug", "dense", "moe", "$/M blended", "TPOT"):
        assert needle in proc.stdout
    assert "results:" in proc.stderr


def test_explicit_intelligence_score_gives_intelligence_per_dollar(cli, tmp_path):
    wl = tmp_path / "w.yaml"
    wl.write_text(textwrap.dedent(SMALL).replace("models: [llama3:debug, mixtral:debug]",
                  "models: [{name: mixtral:debug, intelligence: {score: 40, version: v3}}]")
                  .replace("[1, 2]", "[1]").replace("repeats: 3", "repeats: 2"))
    doc = json.loads(cli("run", str(wl), "--json", "--out", str(tmp_path / "o")).stdout)
    r = doc["records"][0]
    assert r["intelligence"]["score"] == 40
    # per repeat (a median of ratios is not the ratio of medians when the repeats differ, as on a busy machine)
    assert r["metrics"]["intelligence_per_usd"]["samples"] == pytest.approx(
        [40 / b for b in r["metrics"]["usd_per_mtok"]["blended"]["samples"]], rel=1e-9)


def _interrupted(tmp_path, sig: str, batch_sizes: list[int], repeats: int, after: str) -> tuple[int, str]:
    """A long llama3:debug run, signalled half a second after stderr says `after`: (exit code, its last line)."""
    import signal
    import time

    import yaml

    from tests.cli.conftest import read_stderr_until, start_moebench

    wl = tmp_path / "long.yaml"
    wl.write_text(yaml.safe_dump({
        "name": "long", "models": ["llama3:debug"], "device": "cpu", "roofs": False,
        "scenario": {"prompt_tokens": 16, "output_tokens": 4, "batch_sizes": batch_sizes},
        "timing": {"warmup": 1, "repeats": repeats}, "price": {"fallback_usd_per_gpu_hour": 0.1}}))
    p = start_moebench("run", str(wl), "--out", str(tmp_path / "out"))
    seen = read_stderr_until(p, after, timeout=120)
    time.sleep(0.5)
    p.send_signal(getattr(signal, sig))
    _, rest = p.communicate(timeout=60)
    assert "Traceback" not in rest, rest
    return p.returncode, [ln for ln in (seen + rest).splitlines() if ln.strip()][-1]


@pytest.mark.parametrize("sig, said, marked", [
    ("SIGINT", "interrupted", "interrupted (Ctrl-C)"),
    # what Slurm, Kubernetes and CI send: handled as Ctrl-C is, not the default death by signal (exit 143)
    ("SIGTERM", "interrupted by SIGTERM", "interrupted (SIGTERM)"),
])
def test_an_interrupt_is_one_line_naming_the_partial_results(tmp_path, sig, said, marked):
    code, last = _interrupted(tmp_path, sig, [1, 2, 4, 8], 400, "batch 2:")  # batch 1 whole, batch 2 measuring
    assert code == 130 and last.startswith(f"error: {said}; partial results in "), last
    doc = json.loads(open(last.rsplit(" ", 1)[1]).read())
    assert doc["complete"] is False and doc["error"] == marked
    assert [r["batch_size"] for r in doc["records"]] == [1]


def test_an_interrupt_inside_the_first_record_saves_no_empty_file(tmp_path):
    """A file of no records is one report, compare and the gate refuse: the line says nothing was saved."""
    code, last = _interrupted(tmp_path, "SIGINT", [1], 4000, "batch 1:")
    assert (code, last) == (130, "error: interrupted before the first record was whole; nothing saved")
    assert not list((tmp_path / "out").glob("*.json"))


def test_an_interrupt_before_anything_was_measured_says_nothing_was_saved(tmp_path):
    """SIGTERM while the roofs are measured: no record yet, so no file; the line said a bare "interrupted"."""
    import signal

    import yaml

    from tests.cli.conftest import read_stderr_until, start_moebench

    wl = tmp_path / "roofs.yaml"
    wl.write_text(yaml.safe_dump({
        "name": "roofs", "models": ["llama3:debug"], "device": "cpu", "roofs": True,
        "scenario": {"prompt_tokens": 16, "output_tokens": 4, "batch_sizes": [1]},
        "timing": {"warmup": 1, "repeats": 2}, "price": {"fallback_usd_per_gpu_hour": 0.1}}))
    p = start_moebench("run", str(wl), "--out", str(tmp_path / "out"))
    read_stderr_until(p, "measuring roofs", timeout=120)  # the probes take a second or more
    p.send_signal(signal.SIGTERM)
    _, rest = p.communicate(timeout=60)
    assert p.returncode == 130 and "Traceback" not in rest, rest
    last = [ln for ln in rest.splitlines() if ln.strip()][-1]
    assert last == "error: interrupted by SIGTERM before anything was measured; nothing saved", rest
    assert not list((tmp_path / "out").glob("*.json"))


def test_the_command_keeps_exiting_130_on_sigterm_after_its_work(monkeypatch):
    """A SIGTERM while the interpreter and torch shut down, after the results were written, exited 143."""
    import signal

    from moebench import cli

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr("sys.argv", ["moebench", "--version"])
    try:
        with pytest.raises(SystemExit):
            cli.main()
        assert signal.getsignal(signal.SIGTERM) is cli._late_sigterm
    finally:
        signal.signal(signal.SIGTERM, before)
    with pytest.raises(SystemExit):
        cli.main(["--version"])  # called in-process with its arguments: the caller's handler comes back
    assert signal.getsignal(signal.SIGTERM) is before
