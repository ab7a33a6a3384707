import pytest
import yaml

from moebench.errors import BadInput
from moebench.workload import load_workload, parse_workload

GOOD = {"kind": "kernel", "name": "t", "shape": {"experts": 8, "top_k": 2, "hidden": 64, "ffn": 32},
        "tokens": [1, 3], "providers": ["torch-ref"]}


def test_repo_kernel_workloads_validate_and_match_the_tuner_shapes(repo):
    from moebench_kernels.shapes import SHAPES

    paths = sorted((repo / "workloads" / "kernels").glob("*.yaml"))
    assert {p.stem for p in paths} >= {"mixtral-8x7b", "qwen3-30b-a3b", "deepseek-v3", "gpt-oss-120b"}
    for p in paths:
        wl = load_workload(p)
        assert wl.kind == "kernel" and wl.name == p.stem
        s = SHAPES[p.stem]  # one number, two places: the tuner's table must agree with the workload
        assert (wl.shape.experts, wl.shape.top_k, wl.shape.hidden, wl.shape.ffn, wl.shape.activation,
                wl.shape.bias) == tuple(s)


@pytest.mark.parametrize("patch,message", [
    ({"shape": {"experts": 8, "top_k": 2, "hidden": 64, "ffn": 32, "topk": 2}}, "shape.topk: unknown key"),
    ({"providers": ["cutlass"]}, "providers.0"),
    ({"tokens": [0]}, "tokens.0"),
    ({"shape": {"experts": 4, "top_k": 8, "hidden": 64, "ffn": 32}}, "must not exceed experts"),
    ({"providers": ["torch-ref", "torch-ref"]}, "must not repeat"),
    ({"providers": ["transformers-eager"]}, "transformers_block"),
    ({"timing": {"repeats": 0}}, "timing.repeats"),
    ({"cpu": {"tokens": [1], "device": "cpu"}}, "cpu.device: unknown key"),
])
def test_bad_fields_are_one_line_errors_naming_the_field(tmp_path, patch, message):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(GOOD | patch))
    with pytest.raises(BadInput, match=message) as info:
        load_workload(p)
    assert str(info.value).startswith(f"{p}: ") and "\n" not in str(info.value)


def test_cpu_overrides_apply_only_on_cpu():
    wl = parse_workload(GOOD | {"cpu": {"tokens": [2], "providers": ["torch-loop"]}})
    assert wl.for_device("cpu").tokens == [2] and wl.for_device("cpu").providers == ["torch-loop"]
    assert wl.for_device("cuda").tokens == [1, 3]


def test_workload_is_frozen():
    wl = parse_workload(GOOD)
    with pytest.raises(Exception):
        wl.name = "other"
