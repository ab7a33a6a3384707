"""SGLang's expert distribution per load level, against the stub serving SGLang's three endpoints and writing
`stat`-mode dumps (layer 0 spreads tokens evenly over 4 experts, layer 1 sends all to expert 0)."""

from moebench.endpoint.runner import run_endpoint_workload
from moebench.endpoint.workload import EndpointWorkload


def sweep(tmp_path, base_url, **deployment):
    wl = EndpointWorkload.model_validate({
        "kind": "endpoint", "name": "e", "endpoint": {"base_url": base_url}, "deployment": deployment,
        "dataset": {"kind": "random", "prompt_tokens": 8, "output_tokens": 4},
        "load": {"concurrency": [1, 2], "requests_per_level": 4}, "timing": {"warmup_requests": 2, "repeats": 2}})
    doc, _ = run_endpoint_workload(wl, out_dir=tmp_path / "out")
    return [r["expert_load"] for r in doc["records"]]


def test_each_level_records_expert_load_per_layer_and_balancedness(stub, tmp_path):
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    server = stub(expert_distribution_dir=str(dumps), tokens_per_chunk=2)
    for load in sweep(tmp_path, server.base_url, expert_distribution_dir=str(dumps)):
        assert load["available"]
        even, hot = load["layers"]
        # 2 repeats × 4 requests × 4 tokens, warm-up excluded: recording starts after it
        assert sum(even["tokens_per_expert"]) == sum(hot["tokens_per_expert"]) == 32
        assert even["balancedness"] == 1.0 and even["tokens_per_expert"] == [8, 8, 8, 8]
        assert hot["balancedness"] == 0.25 and hot["hottest_expert"] == 0
        assert load["most_imbalanced_layer"]["layer"] == 1
        assert load["n_steps"] == 16  # forward passes: one per 2-token chunk
        assert hot["tokens_per_expert_per_step"][0] == 2.0
    assert len(list(dumps.glob("*.pt"))) == 2  # one dump per level


def test_a_server_without_the_endpoints_records_not_available(stub, tmp_path):
    server = stub()
    loads = sweep(tmp_path, server.base_url, expert_distribution_dir=str(tmp_path))
    assert all(not x["available"] and "no SGLang expert-distribution endpoints" in x["reason"] for x in loads)


def test_endpoints_without_a_readable_dump_folder_say_what_to_set(stub, tmp_path):
    server = stub(expert_distribution_dir=str(tmp_path))
    [load, _] = sweep(tmp_path, server.base_url)
    assert not load["available"] and "deployment.expert_distribution_dir" in load["reason"]
