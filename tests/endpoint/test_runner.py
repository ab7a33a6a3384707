"""The endpoint runner in-process: what it writes, sends and saves when things go wrong."""

import errno
import os
from pathlib import Path

import pytest
import yaml

from moebench import outdir
from moebench.endpoint.runner import run_endpoint_workload
from moebench.endpoint.workload import EndpointWorkload
from moebench.errors import ExitCode
from moebench.results import load_result
from moebench.results import schema


def endpoint_workload(base_url: str, **extra) -> EndpointWorkload:
    fields = {
        "kind": "endpoint", "name": "stub", "endpoint": {"base_url": base_url},
        "deployment": {"hardware": "h100_sxm", "gpus": 1, "price": {"usd_per_gpu_hour": 2.0}},
        "dataset": {"kind": "random", "prompt_tokens": 8, "output_tokens": 4},
        "load": {"concurrency": [1, 2], "requests_per_level": 4},
        "timing": {"warmup_requests": 1, "repeats": 2},
        **extra,
    }
    return EndpointWorkload.model_validate(yaml.safe_load(yaml.safe_dump(fields)))


def test_a_full_disk_at_the_second_write_saves_the_levels_done_elsewhere(stub, tmp_path, monkeypatch):
    server = stub()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "spare"))
    (tmp_path / "spare").mkdir()
    monkeypatch.setattr(outdir.tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    real, writes = schema.write_atomic, []

    def full_after_one(path, doc):
        if Path(path).parent == tmp_path / "out":
            writes.append(path)
            if len(writes) >= 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, doc)

    monkeypatch.setattr(schema, "write_atomic", full_after_one)
    with pytest.raises(outdir.ResultNotSaved) as err:
        run_endpoint_workload(endpoint_workload(server.base_url), out_dir=tmp_path / "out")
    assert err.value.code == ExitCode.RUN_FAILED and "No space left on device" in str(err.value)
    [spare] = (tmp_path / "spare").glob("moebench-unsaved-*.json")
    assert str(spare) in str(err.value)
    doc = load_result(spare)
    assert not doc["complete"] and [r["load"]["label"] for r in doc["records"]] == ["concurrency 1", "concurrency 2"]


def sent_prompts(server) -> list[str]:
    """Every prompt the runner sent after the probe (chat: the user message)."""
    return [b["messages"][-1]["content"] for b in server.log.bodies[1:]]


@pytest.mark.parametrize("dataset", ["random", "jsonl", "shared_prefix"])
def test_no_prompt_is_sent_twice_across_levels_repeats_and_warm_ups(stub, tmp_path, dataset):
    server = stub()
    f = tmp_path / "d.jsonl"
    f.write_text("".join(f'{{"prompt": "question {i}", "output_tokens": 4}}\n' for i in range(5)))
    ds = {"random": {"kind": "random", "prompt_tokens": 16, "output_tokens": 4},
          "jsonl": {"kind": "jsonl", "path": str(f)},  # 5 entries for 2 × (1 + 2 × 4) requests: cycled
          "shared_prefix": {"kind": "shared_prefix", "groups": 2, "prefix_tokens": 8, "prompt_tokens": 8,
                            "output_tokens": 4}}[dataset]
    run_endpoint_workload(endpoint_workload(server.base_url, dataset=ds), out_dir=tmp_path / "out")
    sent = sent_prompts(server)
    assert len(sent) == 2 * (1 + 2 * 4) and len(set(sent)) == len(sent)
    if dataset == "shared_prefix":  # the prefixes are shared on purpose; the questions after them differ
        assert len({" ".join(p.split()[:8]) for p in sent}) == 2
    if dataset == "jsonl":
        assert sorted(sent[:5]) == [f"question {i}" for i in range(5)]  # each entry as written, first
        assert sum(p.startswith("[request ") for p in sent) == len(sent) - 5


def test_the_callers_signal_handlers_are_put_back(stub, tmp_path):
    import signal

    server = stub()
    mine = lambda *_: None  # noqa: E731 - the CLI's handler, as far as the runner can tell
    old = signal.signal(signal.SIGTERM, mine)
    interrupt = signal.getsignal(signal.SIGINT)  # Python's Ctrl-C handler, or SIG_IGN in a background job
    try:
        run_endpoint_workload(endpoint_workload(server.base_url, load={"concurrency": [1], "requests_per_level": 1}),
                              out_dir=tmp_path / "out")
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is interrupt
    finally:
        signal.signal(signal.SIGTERM, old)


def test_records_carry_the_deployments_catalog_model_and_the_served_name(stub, tmp_path):
    server = stub()
    one_level = {"concurrency": [1], "requests_per_level": 1}
    dep = {"hardware": "h100_sxm", "gpus": 1, "price": {"usd_per_gpu_hour": 2.0}, "model": "llama3:8b"}
    doc, _ = run_endpoint_workload(endpoint_workload(server.base_url, load=one_level, deployment=dep),
                                   out_dir=tmp_path / "a")
    [rec] = doc["records"]
    assert (rec["model"], rec["served_model"], rec["kind"]) == ("llama3:8b", "stub-model", "dense")
    assert rec["params"]["total"] == pytest.approx(8.03e9, rel=0.01) and rec["params"]["active_ratio"] == 1.0
    doc, _ = run_endpoint_workload(endpoint_workload(server.base_url, load=one_level), out_dir=tmp_path / "b")
    assert doc["records"][0]["model"] == doc["records"][0]["served_model"] == "stub-model"  # no catalog name given
    assert doc["records"][0]["params"] is None


@pytest.mark.parametrize("deployment, said", [
    ({"hardware": "h100_sxm", "gpus": 1, "price": {"usd_per_gpu_hour": 2.0}}, "estimated"),  # catalog all-in power
    ({"gpus": 1, "price": {"usd_per_gpu_hour": 2.0}}, "not measured"),  # no counter, no catalog hardware
])
def test_the_header_names_the_energy_source_the_records_carry(stub, tmp_path, deployment, said):
    server = stub()
    lines: list[str] = []
    doc, _ = run_endpoint_workload(
        endpoint_workload(server.base_url, deployment=deployment, load={"concurrency": [1], "requests_per_level": 1}),
        out_dir=tmp_path / "out", log=lines.append)
    [header] = [ln for ln in lines if ln.startswith("endpoint ")]
    assert f", energy {said}" in header and "catalog estimate" not in header, header
    assert {r["energy_source"] for r in doc["records"]} == {said}


def test_no_counted_tokens_means_no_energy_label(stub, tmp_path):
    """A server that reports no usage, and no tokenizer: nobody counted the tokens, so there is no J/token, and the
    record does not name an energy source for the figure it lacks (it said `estimated` beside a null)."""
    server = stub(usage="none")
    doc, _ = run_endpoint_workload(
        endpoint_workload(server.base_url, deployment={"hardware": "h100_sxm", "gpus": 1},
                          load={"concurrency": [1], "requests_per_level": 2}), out_dir=tmp_path / "out")
    [rec] = doc["records"]
    assert rec["metrics"]["joules_per_token"] is None
    assert rec["energy_source"] == "not measured" and "no token usage" in rec["energy_scope"]


def test_failed_and_short_answers_are_counted_as_such(stub, tmp_path):
    """Every other request aborted by the server: the level sends all of them and fails half (ok, they had halved
    TPOT and doubled the request rate). A server that stops at its own end of sequence says so beside the level."""
    load = {"concurrency": [2], "requests_per_level": 8}
    doc, _ = run_endpoint_workload(
        endpoint_workload(stub(abort_every=2).base_url, load=load, dataset={"kind": "random", "prompt_tokens": 8,
                                                                               "output_tokens": 6},
                          timing={"warmup_requests": 0, "repeats": 1}, max_failure_ratio=0.6), out_dir=tmp_path / "a")
    req = doc["records"][0]["requests"]
    assert (req["sent"], req["ok"], req["failed"], req["cut"]) == (8, 4, 4, 0)
    assert req["failure_ratio"] == pytest.approx(0.5) and "finish_reason 'abort'" in " ".join(req["error_examples"].values())
    doc, _ = run_endpoint_workload(
        endpoint_workload(stub(eos_after=2).base_url, load=load, dataset={"kind": "random", "prompt_tokens": 8,
                                                                             "output_tokens": 16},
                          timing={"warmup_requests": 0, "repeats": 1}), out_dir=tmp_path / "b")
    req = doc["records"][0]["requests"]
    assert req["output_tokens_counted"] == 2 and "a median 2 of the 16 output tokens asked" in req["note"]
