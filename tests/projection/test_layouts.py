"""The layouts a projection considers are ones a serving engine can run: attention TP splits the heads evenly and
stays inside one scale-up domain; wider instances are expert-parallel or pipelined (docs/projection.md, Layouts)."""

from __future__ import annotations

import pytest

from moebench.catalog import get_hardware
from moebench.projection import Assumptions, ServingScenario, device_for, layouts, project
from moebench.projection.device import device_from_hardware

CPU_ROOFS = {"mem_gbps": 11.5, "matmul_gflops": 95.0}


def _device(hid: str):
    if hid == "cpu":  # no scale-up domain in the catalog: every "domain" is one device
        return device_from_hardware(get_hardware(hid), measured_roofs=CPU_ROOFS)
    return device_for(hid)


@pytest.mark.parametrize("hid", ["h100_sxm", "a100_sxm_80gb", "gb200_nvl72", "mi355x", "cpu"])
def test_every_layout_splits_heads_and_keeps_tp_inside_a_domain(cfgs, hid):
    dev = _device(hid)
    domain = max(dev.domain_size, 1)
    for name, cfg in cfgs.items():
        lays = list(layouts(cfg, dev, 128))
        assert lays, name
        for lay in lays:
            tp, kv = lay.attn_tp, cfg.num_key_value_heads
            assert cfg.num_attention_heads % tp == 0, (name, lay)
            assert kv % tp == 0 or tp % kv == 0, (name, lay)  # KV heads split, or replicated beyond them
            assert tp <= domain, (name, lay)
            if lay.ep == 1:  # tensor-parallel experts: inside one domain, a pipeline stage one TP group
                assert lay.stage_gpus <= domain, (name, lay)
                assert lay.attn_tp == lay.stage_gpus or (cfg.is_moe and lay.pp == 1), (name, lay)
            if lay.pp > 1:  # pipeline stages only where one domain is not enough
                assert lay.n_gpus > domain and lay.pp <= cfg.num_hidden_layers, (name, lay)
            if lay.ep > 1:  # every rank holds an expert, none more than two copies (mixtral: at most EP16)
                assert lay.ep <= 2 * cfg.n_routed_experts, (name, lay)


def test_deepseek_beyond_one_domain_is_expert_parallel(cfgs):
    """The reviewer's repro: DeepSeek-V3 bf16 on H100 was `TP24` over 3 domains at batch 1 (24 ∤ 128 heads)."""
    proj = project(cfgs["deepseek-v3:671b"], device_for("h100_sxm"), ServingScenario(1024, 256), Assumptions(), batches=(1, 64))
    assert proj.min_gpus == 24  # 1.34 TB of weights: two H100 domains are not enough, three are
    for b in (1, 64):
        lay = proj.for_batch(b).layout
        assert lay.n_gpus == 24 and lay.ep == 24 and lay.attn_tp <= 8


@pytest.mark.parametrize("model, hid, dtype", [("llama3:405b", "h100_sxm", "fp8"), ("llama3:70b", "a100_sxm_80gb", "bf16")])
def test_dense_tensor_parallel_groups_stay_in_one_domain(model, hid, dtype):
    """llama3:405b fp8 on H100 was `TP120` at 100 tok/s/user, llama3:70b on A100 `TP24` and `TP32`."""
    from moebench.projection import resolve_config

    dev = device_for(hid)
    proj = project(resolve_config(model), dev, ServingScenario(1024, 256, weight_dtype=dtype), Assumptions())
    for target in (10, 20, 50, 100):
        p = proj.at_interactivity(target)
        assert p is None or p.layout.stage_gpus <= dev.domain_size, (target, p.layout)
    assert all(p.layout.attn_tp <= dev.domain_size for p in proj.points)


def test_dense_model_larger_than_a_domain_is_pipelined_over_two():
    """Llama-3-405B in bf16 (~810 GB) needs more than 8×80 GB: TP8 in each of two domains, two pipeline stages
    (how vLLM serves it on two H100 nodes)."""
    from moebench.projection import resolve_config

    proj = project(resolve_config("llama3:405b"), device_for("h100_sxm"), ServingScenario(1024, 256), Assumptions(),
                   batches=(1, 64))
    assert proj.min_gpus == 16
    assert all((p.layout.attn_tp, p.layout.pp) == (8, 2) for p in (proj.for_batch(1), proj.for_batch(64)))


def test_a_model_no_pipeline_can_hold_says_why():
    """Beyond PIPELINE_STAGES[-1] domains there is no layout: raising --max-gpus is no advice then."""
    import dataclasses

    from moebench.projection import resolve_config

    small = dataclasses.replace(device_for("a100_sxm_80gb"), hbm_capacity_bytes=8e9)  # 405B bf16 needs > 64 of these
    proj = project(resolve_config("llama3:405b"), small, ServingScenario(1024, 256), Assumptions(), batches=(1,), max_gpus=512)
    assert proj.min_gpus is None
    (note,) = [n for n in proj.notes if "does not fit" in n]
    assert "a pipeline has at most 8 stages" in note and "--max-gpus" not in note
