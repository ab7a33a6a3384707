"""Roofline arithmetic a user can check by hand, the roofline floor of MoE decode, and the memory check."""

from __future__ import annotations

import math

import pytest

from moebench.errors import BadInput
from moebench.projection import (Assumptions, Efficiency, Layout, ServingScenario, device_for, evaluate, memory, project,
                                 step)
from moebench.projection import comm
from moebench.projection.cost import layer_ops, op_time_ms

IDEAL = Assumptions(efficiency=Efficiency(compute=1.0, memory=1.0), launch_us=0.0, serving="static")


def test_op_time_is_the_larger_roof_plus_launch():
    dev = device_for("h100_sxm")
    from moebench.projection.cost import Op

    a = Assumptions(efficiency=Efficiency(compute=0.5, memory=0.5), launch_us=10.0)
    t, c, m = op_time_ms(Op("mlp", flops=989e12 * 0.5 * 2e-3, bytes=3.35e12 * 0.5 * 1e-3, dtype="bf16"), dev, a, "decode")
    assert c == pytest.approx(2.0) and m == pytest.approx(1.0)
    assert t == pytest.approx(2.0 + 0.010)


def test_dense_decode_at_batch_one_is_weights_over_bandwidth():
    """Llama-3-70B bf16, TP8 on H200, B=1: every GPU streams 1/8 of the weights once per step (the input
    embedding is a gather of one row, not a stream)."""
    dev = device_for("h200_sxm")
    from moebench.projection import resolve_config

    cfg = resolve_config("llama3:70b")
    sc = ServingScenario(128, 16)
    est = step(cfg, Layout(8, 8, 1), dev, sc, IDEAL, "decode", 1)
    weight_ms = (cfg.total_params() - cfg.embedding_params()) * 2 / 8 / dev.hbm_bytes_per_s * 1e3
    compute_side = est.compute_side_ms
    assert weight_ms < compute_side < weight_ms * 1.05  # + KV and activations: a few %
    assert est.comm_ms > 0  # TP all-reduces


def test_collectives_hand_computed():
    dev = device_for("h100_sxm")  # 450 GB/s NVLink, 50 GB/s NIC, domain 8
    cm = comm.CommModel(link_eff=1.0, alpha_scale_up_us=0.0, alpha_scale_out_us=0.0)
    mb = 1e6
    # all-reduce of 1 MB over 8 GPUs: 2·7/8 MB / 450 GB/s
    assert comm.all_reduce_ms(mb, 8, dev, cm) == pytest.approx(2 * 7 / 8 * mb / 450e9 * 1e3)
    # all-to-all inside the domain: 7/8 of the buffer over NVLink
    assert comm.all_to_all_ms(mb, 8, dev, cm) == pytest.approx(7 / 8 * mb / 450e9 * 1e3)
    # across 2 domains: 8 of 16 destinations are remote, over the 50 GB/s NIC, which dominates
    assert comm.all_to_all_ms(mb, 16, dev, cm) == pytest.approx(8 / 16 * mb / 50e9 * 1e3)
    nvl = device_for("gb200_nvl72")
    assert comm.all_to_all_ms(mb, 16, nvl, cm) == pytest.approx(15 / 16 * mb / 900e9 * 1e3)
    assert comm.all_reduce_ms(mb, 1, dev, cm) == 0.0


@pytest.mark.parametrize("hw", ["h100_sxm", "b200", "gb200_nvl72", "mi300x"])
@pytest.mark.parametrize("model", ["mixtral:8x7b", "deepseek-v3:671b", "gpt-oss:120b", "qwen3-moe:30b-a3b"])
@pytest.mark.parametrize("batch", [1, 7, 64, 4096])
def test_moe_decode_layer_never_beats_hbm_roofline_of_touched_experts(cfgs, hw, model, batch):
    """Whatever the efficiencies claim (even 1.0 and zero launch latency), a decode MoE layer takes at least
    the time to read the experts its batch touches on the busiest GPU at catalog peak HBM bandwidth."""
    cfg, dev = cfgs[model], device_for(hw)
    sc = ServingScenario(1024, 128, weight_dtype="fp8")
    layer = cfg.first_k_dense
    assert cfg.is_moe_layer(layer)
    for a in (IDEAL, IDEAL.replace(expert_gemms="per_expert"),
              Assumptions(efficiency=Efficiency(compute=5.0, memory=5.0, by_phase={"decode/experts": 9.0})),
              IDEAL.replace(dtype_efficiency={"fp8": 5.0, "fp4": 5.0, "weight_only": 5.0}, spec_tokens=2)):
        for lay in (Layout(8, 8, 1), Layout(8, 1, 8), Layout(16, 2, 16), Layout(8, 1, 1)):
            ops = layer_ops(cfg, layer, lay, dev, sc, a, "decode", batch)
            layer_ms = sum(op_time_ms(o, dev, a, "decode")[0] for o in ops)
            touched = cfg.experts_touched(batch) / cfg.n_routed_experts
            local = math.ceil(cfg.n_routed_experts / lay.ep)
            roof_ms = local * touched * cfg.expert_params() * 1.0 / lay.expert_tp / dev.hbm_bytes_per_s * 1e3
            assert layer_ms >= roof_ms * (1 - 1e-9)


def test_memory_check_sets_minimum_gpus(cfgs):
    """DeepSeek-V3 in fp8 (~671 GB) does not fit on 8×H100 (640 GB) but does on 8×H200 (1128 GB)."""
    sc = ServingScenario(1024, 256, weight_dtype="fp8")
    cfg = cfgs["deepseek-v3:671b"]
    h100 = project(cfg, device_for("h100_sxm"), sc, Assumptions(), batches=(1,))
    h200 = project(cfg, device_for("h200_sxm"), sc, Assumptions(), batches=(1,))
    assert h100.min_gpus == 16 and h200.min_gpus == 8
    mem = memory(cfg, Layout(8, 1, 8), sc, device_for("h200_sxm"), 1, 0.9)
    assert 80e9 < mem.weights_bytes < 110e9  # ~84 GB of experts + replicated attention / embeddings
    # MLA's latent KV is replicated under attention TP, GQA's is split by KV heads
    assert memory(cfg, Layout(8, 8, 8), sc, device_for("h200_sxm"), 8, 0.9).kv_bytes == pytest.approx(mem.kv_bytes * 8)


def test_larger_batch_more_throughput_less_interactivity(cfgs):
    dev = device_for("b200")
    sc = ServingScenario(1024, 256, weight_dtype="fp8")
    pts = [evaluate(cfgs["deepseek-v3:671b"], Layout(8, 1, 8), dev, sc, Assumptions(), b) for b in (8, 64, 512)]
    assert pts[0].per_gpu("output") < pts[1].per_gpu("output") < pts[2].per_gpu("output")
    assert pts[0].interactivity > pts[1].interactivity > pts[2].interactivity
    cost = pts[2].usd_per_mtok(dev.usd_per_gpu_hour)
    # MEASURE.md: price × n / (tokens/s × 3600) × 1e6, blended = (3·input + output)/4
    out_rate = pts[2].rates["output"]
    assert cost["output"] == pytest.approx(dev.usd_per_gpu_hour * 8 / (out_rate * 3600) * 1e6)
    assert cost["blended"] == pytest.approx((3 * cost["input"] + cost["output"]) / 4)


def test_fp4_on_hopper_runs_weight_only_with_a_note(cfgs):
    sc = ServingScenario(1024, 256, weight_dtype="fp4")
    proj = project(cfgs["gpt-oss:120b"], device_for("h100_sxm"), sc, Assumptions(), batches=(1, 64))
    assert any("weight-only" in n for n in proj.notes)
    assert device_for("h100_sxm").compute_dtype("fp4") == "fp8"
    assert device_for("a100_sxm_80gb").compute_dtype("fp8") == "bf16"
    assert device_for("b200").compute_dtype("fp4") == "fp4"


def test_bad_layouts_are_bad_input():
    with pytest.raises(BadInput):
        Layout(8, 3, 8)
    with pytest.raises(BadInput):
        Layout(16, 2, 1, 2)  # DP attention inside a pipeline stage
    with pytest.raises(BadInput):
        ServingScenario(0, 16)


def test_an_eager_per_expert_loop_pays_host_time_per_expert_touched(cfgs):
    """Mixtral decode on an eager engine: the host issues one launch group per expert hit, so host-bound decode
    slows as the batch touches more of the 8 experts (E·(1 − (1 − K/E)^B) per layer), then saturates; a host
    sync per MoE layer adds one op's host time per layer even where the GPU is the bottleneck."""
    cfg = cfgs["mixtral:8x7b"].with_layers(4)
    dev = device_for("h100_sxm")
    sc = ServingScenario(512, 32)
    eager = IDEAL.replace(host_us={"decode": 500.0, "prefill": 500.0}, host_expert_us={"decode": 100.0})
    steps = {b: step(cfg, Layout(1, 1, 1), dev, sc, eager, "decode", b) for b in (1, 4, 16, 64)}
    for b, est in steps.items():
        assert est.expert_runs == pytest.approx(4 * cfg.experts_touched(b))
        assert est.compute_side_ms == pytest.approx((est.n_ops * 500 + est.expert_runs * 100) / 1e3)
    assert steps[1].time_ms < steps[4].time_ms < steps[16].time_ms <= steps[64].time_ms
    assert steps[64].time_ms - steps[16].time_ms < 0.01 * steps[64].time_ms  # every expert already hit at B=16
    # prefill of 64 prompts is GPU-bound: the host sync shows as 4 × one op's host time on top of the GPU's time
    pre, pre_sync = (step(cfg, Layout(1, 1, 1), dev, sc, eager.replace(moe_host_sync=s), "prefill", 64) for s in (False, True))
    assert pre_sync.host_syncs == 4 and pre.host_syncs == 0
    assert pre_sync.time_ms - pre.time_ms == pytest.approx(4 * 0.5)


def test_dp_attention_with_tensor_parallel_experts(cfgs):
    """DeepSeek-V3 on 8×H200 as SGLang's `--tp 8 --enable-dp-attention` ran it: each GPU attends for 1/8 of the
    sequences and holds the whole MLA latent of only those, instead of a copy of every sequence's (TP8); the experts
    are the same 1/8 slices of every expert over every token; one gather / reduce-scatter a layer replaces TP's two
    all-reduces."""
    cfg, dev = cfgs["deepseek-v3:671b"], device_for("h200_sxm")
    sc = ServingScenario(3200, 800, weight_dtype="fp8")
    dp, tp = Layout(8, 1, 1), Layout(8, 8, 1)
    assert dp.dp == 8 and dp.expert_tp == 8
    assert dp.describe(8) == "8 GPUs (1 domain): TP8 experts, DP8 attention"
    m_dp, m_tp = (memory(cfg, lay, sc, dev, 64, 0.9) for lay in (dp, tp))
    assert m_dp.kv_bytes == pytest.approx(m_tp.kv_bytes / 8)
    # attention, dense layers and vocabulary are replicated instead of split: ~16 GB more weights, for 8× the KV room
    assert m_tp.weights_bytes + 10e9 < m_dp.weights_bytes < m_tp.weights_bytes + 20e9
    s_dp, s_tp = (step(cfg, lay, dev, sc, IDEAL, "decode", 512) for lay in (dp, tp))
    assert s_dp.phases["experts"].flops == pytest.approx(s_tp.phases["experts"].flops)
    # each GPU reads the latent of its 64 sequences, not of all 512 (it streams all attention weights, though)
    assert s_dp.phases["attn"].bytes < s_tp.phases["attn"].bytes / 2
    moe_layers = cfg.num_hidden_layers - cfg.first_k_dense
    one = comm.all_reduce_ms(512 * cfg.hidden_size * sc.act_bytes, 8, dev, IDEAL.comm)
    assert s_dp.comm_ms == pytest.approx(moe_layers * one)
    assert s_tp.comm_ms > 1.9 * s_dp.comm_ms


def test_dp_attention_needs_an_moe_model(cfgs):
    from moebench.projection.layout import check_runs, instance_layouts

    with pytest.raises(BadInput, match="DP attention needs an MoE model"):
        check_runs(cfgs["llama3:70b"], "llama3:70b", Layout(8, 1, 1), "--layout", "tp=1,dp=8")
    dev = device_for("h200_sxm")
    assert Layout(8, 1, 1) in set(instance_layouts(cfgs["deepseek-v3:671b"], dev, 8))
    assert Layout(8, 1, 1) not in set(instance_layouts(cfgs["llama3:70b"], dev, 8))
    assert Layout(16, 1, 1) not in set(instance_layouts(cfgs["deepseek-v3:671b"], dev, 16))  # gathers over the NIC
