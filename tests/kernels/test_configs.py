import json

import pytest
import torch

from moebench_kernels import configs as C


def test_file_name_follows_vllm():
    assert C.config_file_name(8, 14336, "NVIDIA H100 80GB HBM3", torch.bfloat16) == \
        "E=8,N=14336,device_name=NVIDIA_H100_80GB_HBM3,dtype=bf16.json"


def test_nearest_bucket_on_log_scale():
    assert C.nearest_bucket([1, 16, 256], 3) == 1
    assert C.nearest_bucket([1, 16, 256], 5) == 16
    assert C.nearest_bucket([1, 16, 256], 10_000) == 256


def test_tuned_file_is_found_and_vllm_format_accepted(tmp_path, monkeypatch):
    ours = {"1": {"gate_up": dict.fromkeys(C.KEYS, 16) | {"num_warps": 4, "USE_TMA": 1},
                  "down": dict.fromkeys(C.KEYS, 32) | {"num_warps": 8}}}
    vllm = {"64": {"BLOCK_SIZE_M": 64, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 64, "GROUP_SIZE_M": 8,
                   "num_warps": 8, "num_stages": 3}}
    (tmp_path / C.config_file_name(4, 32, "Fake GPU", torch.float16)).write_text(json.dumps(ours))
    (tmp_path / C.config_file_name(4, 64, "Fake GPU", torch.float16)).write_text(json.dumps(vllm))
    monkeypatch.setenv("MOEBENCH_KERNEL_CONFIGS", str(tmp_path))
    C.load_configs.cache_clear()
    got = C.get_configs(2, 2, 4, 32, 16, torch.float16, "Fake GPU")
    assert got["gate_up"]["num_warps"] == 4 and got["down"]["num_warps"] == 8
    # an optional key takes its default where a file leaves it out (older files, vLLM's)
    assert got["gate_up"]["USE_TMA"] == 1 and got["down"]["USE_TMA"] == 0
    got = C.get_configs(2, 2, 4, 64, 16, torch.float16, "Fake GPU")
    assert got["gate_up"] == got["down"] == vllm["64"] | C.OPTIONAL_KEYS
    C.load_configs.cache_clear()


def test_no_file_gives_defaults_and_bad_file_is_explained():
    d = C.get_configs(1, 2, 8, 14336, 4096, torch.bfloat16, None)
    assert set(d) == {"gate_up", "down"} and set(d["gate_up"]) == set(C.KEYS) | set(C.OPTIONAL_KEYS)
    with pytest.raises(ValueError, match="needs the keys"):
        C.parse_config_doc({"1": {"BLOCK_SIZE_M": 16}}, "x.json")


def test_vllm_file_with_metadata_and_without_dtype_in_its_name_is_found(tmp_path, monkeypatch):
    # vLLM names its 16-bit files without ",dtype=" and puts "triton_version" beside the buckets
    cfg = {"BLOCK_SIZE_M": 64, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 64, "GROUP_SIZE_M": 8,
           "num_warps": 8, "num_stages": 3}
    (tmp_path / "E=4,N=32,device_name=Fake_GPU.json").write_text(json.dumps({"triton_version": "3.5.1", "8": cfg}))
    monkeypatch.setenv("MOEBENCH_KERNEL_CONFIGS", str(tmp_path))
    C.load_configs.cache_clear()
    try:
        assert C.get_configs(8, 2, 4, 32, 16, torch.bfloat16, "Fake GPU")["down"] == cfg | C.OPTIONAL_KEYS
        assert C.load_configs(4, 32, "Fake GPU", "fp32") is None  # the dtype-less name is vLLM's 16-bit file only
    finally:
        C.load_configs.cache_clear()
    with pytest.raises(ValueError, match="no token-count buckets"):
        C.parse_config_doc({"triton_version": "3.5.1"}, "x.json")
    with pytest.raises(ValueError, match="not a token count"):
        C.parse_config_doc({"many": cfg}, "x.json")


def test_writing_tuned_buckets_keeps_the_buckets_not_retuned(tmp_path):
    old = {str(t): {"gate_up": dict.fromkeys(C.KEYS, t), "down": dict.fromkeys(C.KEYS, t)} for t in (1, 64, 4096)}
    path = tmp_path / "E=4,N=32,device_name=Fake_GPU,dtype=bf16.json"
    path.write_text(json.dumps(old))
    new = {"64": {"gate_up": dict.fromkeys(C.KEYS, 7), "down": dict.fromkeys(C.KEYS, 7)},
           "16384": {"gate_up": dict.fromkeys(C.KEYS, 9), "down": dict.fromkeys(C.KEYS, 9)}}
    C.write_config_doc(path, new)
    got = C.parse_config_doc(json.loads(path.read_text()))
    assert list(got) == [1, 64, 4096, 16384]  # in token order
    assert got[1]["gate_up"]["num_warps"] == 1 and got[4096]["down"]["BLOCK_SIZE_M"] == 4096  # kept
    assert got[64]["gate_up"]["num_warps"] == 7 and got[16384]["down"]["num_warps"] == 9  # retuned, added
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
