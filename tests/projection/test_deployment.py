"""Expressing what was deployed: a fixed GPU count and layout, the HBM share the engine gives weights + KV, queueing
beyond the KV capacity, request rates, offline throughput, speculative decoding and low-precision factors."""

from __future__ import annotations

import pytest

from moebench.errors import BadInput
from moebench.projection import Assumptions, Layout, ServingScenario, device_for, evaluate, memory, project
from moebench.projection.layout import instance_layouts, layout_text, parse_layout
from moebench.projection.load import at_concurrency, at_rate, kv_capacity, offline, service_ms


@pytest.mark.parametrize("text, expected", [
    ("tp=8", Layout(8, 8, 1)),
    ("tp=8,ep=8,dp=1,pp=1", Layout(8, 8, 8)),
    ("tp=1,ep=48,dp=48", Layout(48, 1, 48)),
    ("tp=1,ep=48", Layout(48, 1, 48)),  # dp follows from ep
    ("tp=8, pp=2", Layout(16, 8, 1, 2)),
    ("tp=1,dp=8", Layout(8, 1, 1)),  # DP attention, experts tensor-parallel (SGLang --enable-dp-attention, no EP)
])
def test_layout_text_reads_as_deployed(text, expected):
    lay = parse_layout(text)
    assert lay == expected
    assert parse_layout(layout_text(lay)) == lay


@pytest.mark.parametrize("text", ["tp=8,ep=4", "tp=0", "tp=8,tp=4", "tq=8", "tp=two", "tp=2,dp=2,pp=2"])
def test_layouts_no_engine_runs_are_one_line_errors(text):
    with pytest.raises(BadInput, match="--layout"):
        parse_layout(text)


def test_any_instance_size_the_domain_allows(cfgs):
    """A 48-GPU decode pool inside a 72-GPU GB200 domain (LMSYS's DeepSeek deployment) is expressible."""
    dev = device_for("gb200_nvl72")
    lays = list(instance_layouts(cfgs["deepseek-v3:671b"], dev, 48))
    assert Layout(48, 1, 48) in lays
    proj = project(cfgs["deepseek-v3:671b"], dev, ServingScenario(2000, 200, weight_dtype="fp8"), Assumptions(),
                   batches=(48, 4096), gpus=48)
    assert proj.points and {p.layout.n_gpus for p in proj.points} == {48}


def test_70b_fp8_fits_one_h100_when_the_engine_gives_it_the_memory(cfgs):
    """TensorRT-LLM ran Llama-3.1-70B fp8 on one H100 at 128/2048: weights (~73 GB) + fp8 KV fit 95 % of its 80 GiB."""
    cfg, dev, lay = cfgs["llama3:70b"], device_for("h100_sxm"), Layout(1, 1, 1)
    sc = ServingScenario(128, 2048, weight_dtype="fp8", kv_dtype="fp8")
    assert memory(cfg, lay, sc, dev, 8, 0.95).fits
    assert not memory(cfg, lay, sc, dev, 1, 0.8).fits
    assert kv_capacity(cfg, lay, dev, sc, Assumptions(mem_util=0.95)) >= 8
    assert project(cfg, dev, sc, Assumptions(mem_util=0.95), batches=(8,), gpus=1).for_batch(8) is not None


def test_concurrency_beyond_the_kv_cache_queues(cfgs):
    cfg, dev, lay = cfgs["llama3:70b"], device_for("h100_sxm"), Layout(1, 1, 1)
    sc, a = ServingScenario(1024, 1024, weight_dtype="fp8"), Assumptions()
    cap = kv_capacity(cfg, lay, dev, sc, a)
    inside, beyond, far = (at_concurrency(cfg, lay, dev, sc, a, c) for c in (cap, 2 * cap, 4 * cap))
    assert inside.queue_ms == 0 and inside.point.batch == cap
    assert beyond.point.batch == cap and far.point.batch == cap  # the instance runs what its KV cache holds
    assert 0 < beyond.queue_ms < far.queue_ms  # the rest wait, longer the more there are
    assert beyond.ttft_ms > inside.ttft_ms
    assert far.point.rates["output"] == pytest.approx(inside.point.rates["output"])  # throughput saturates


def test_the_engines_sequence_cap_applies_per_attention_group(cfgs):
    """With DP attention each group schedules its own batch (TensorRT-LLM's and SGLang's attention-DP ranks), so an
    engine's max sequences multiply by the groups; a TP instance is one group."""
    cfg, dev = cfgs["deepseek-v3:671b"], device_for("h200_sxm")
    sc, a = ServingScenario(1024, 1024, weight_dtype="fp8", kv_dtype="fp8"), Assumptions(max_seqs=64)
    assert kv_capacity(cfg, Layout(16, 1, 16), dev, sc, a) == 16 * 64
    assert kv_capacity(cfg, Layout(16, 16, 1), dev, sc, a) == 64
    uncapped = kv_capacity(cfg, Layout(16, 1, 16), dev, sc, Assumptions())
    assert 16 * 64 < uncapped and uncapped % 16 == 0  # memory alone: each group's KV, times the groups


def test_request_rate_settles_below_capacity_and_overloads_above(cfgs):
    cfg, dev, lay = cfgs["llama3:70b"], device_for("h100_sxm"), Layout(2, 2, 1)
    sc, a = ServingScenario(1024, 256, weight_dtype="fp8"), Assumptions()
    best = offline(cfg, lay, dev, sc, a)
    max_rps = best.point.rates["output"] / sc.output_tokens
    light, heavy = at_rate(cfg, lay, dev, sc, a, 0.5 * max_rps), at_rate(cfg, lay, dev, sc, a, 3 * max_rps)
    assert not light.overloaded and light.point.batch < best.capacity
    # Little's law: the fewest sequences in flight whose completions keep up with the arrivals
    b = light.point.batch
    completions = b / (service_ms(light.point, sc) / 1e3)
    fewer = evaluate(cfg, lay, dev, sc, a, b - 1)
    assert 0.5 * max_rps <= completions and (b - 1) / (service_ms(fewer, sc) / 1e3) < 0.5 * max_rps
    # what is served, and priced, is what arrives: the b slots idle the rest of the time
    assert light.point.rates["output"] == pytest.approx(0.5 * max_rps * sc.output_tokens)
    assert light.point.rates["input"] == pytest.approx(0.5 * max_rps * sc.prompt_tokens)
    full = evaluate(cfg, lay, dev, sc, a, b).usd_per_mtok(2.0)["output"]
    assert light.point.usd_per_mtok(2.0)["output"] > full  # idle slots cost what they cost
    assert heavy.overloaded and heavy.ttft_ms is None
    for c in (1, 16, 256):
        lp = at_concurrency(cfg, lay, dev, sc, a, c)
        assert best.point.rates["total"] >= lp.point.rates["total"] * (1 - 1e-9)


def test_a_rate_every_layout_keeps_up_with_goes_to_the_one_whose_requests_finish_soonest(cfgs):
    """The tokens served at a rate are the arrivals' on every layout that keeps up: the pick was list order."""
    from moebench.projection.load import under_load

    cfg, dev = cfgs["deepseek-v3:671b"], device_for("h200_sxm")
    sc, a = ServingScenario(1024, 256, weight_dtype="fp8"), Assumptions()
    proj = project(cfg, dev, sc, a, gpus=8)
    [lp] = under_load(cfg, dev, sc, a, proj, rates=[0.5])
    lays = list(dict.fromkeys(p.layout for p in proj.points))
    served = [x for lay in lays if (x := at_rate(cfg, lay, dev, sc, a, 0.5)) is not None and not x.overloaded]
    assert len(served) > 1 and len({round(x.point.rates["output"], 9) for x in served}) == 1
    assert service_ms(lp.point, sc) == min(service_ms(x.point, sc) for x in served)


def test_speculative_decoding_pays_off_only_when_drafts_are_accepted(cfgs):
    """A memory-bound dense decode step verifies two tokens per sequence for little more than one's cost. (A MoE at a
    small batch gains less: the drafts' tokens touch more experts, whose weights the step must also read.)"""
    cfg, dev, lay = cfgs["llama3:70b"], device_for("h200_sxm"), Layout(2, 2, 1)
    sc = ServingScenario(1024, 1024, weight_dtype="fp8")
    plain = evaluate(cfg, lay, dev, sc, Assumptions(serving="static"), 8)
    mtp = evaluate(cfg, lay, dev, sc, Assumptions(serving="static", spec_tokens=1, spec_accept=0.8), 8)
    rejected = evaluate(cfg, lay, dev, sc, Assumptions(serving="static", spec_tokens=1, spec_accept=0.0), 8)
    assert mtp.decode.time_ms > plain.decode.time_ms  # the step verifies two tokens per sequence
    assert mtp.tpot_ms < plain.tpot_ms / 1.3  # but yields 1.8 of them
    assert rejected.tpot_ms >= plain.tpot_ms


def test_weight_only_dequantisation_costs_only_where_the_format_is_not_native(cfgs):
    cfg, sc = cfgs["gpt-oss:120b"], ServingScenario(1024, 1024, weight_dtype="fp4")
    slow = Assumptions(dtype_efficiency={"weight_only": 0.5})
    hopper, blackwell = device_for("h200_sxm"), device_for("b200")
    lay = Layout(1, 1, 1)
    assert evaluate(cfg, lay, hopper, sc, slow, 64).tpot_ms > evaluate(cfg, lay, hopper, sc, Assumptions(), 64).tpot_ms
    assert evaluate(cfg, lay, blackwell, sc, slow, 64).tpot_ms == pytest.approx(
        evaluate(cfg, lay, blackwell, sc, Assumptions(), 64).tpot_ms)


def test_the_engines_cap_on_sequences_in_flight_queues_the_rest(cfgs):
    cfg, dev, lay = cfgs["llama3:70b"], device_for("h200_sxm"), Layout(8, 8, 1)
    sc = ServingScenario(1024, 1024, weight_dtype="fp8")
    assert kv_capacity(cfg, lay, dev, sc, Assumptions()) > 256
    capped = Assumptions(max_seqs=256)
    assert kv_capacity(cfg, lay, dev, sc, capped) == 256
    lp = at_concurrency(cfg, lay, dev, sc, capped, 512)
    assert lp.point.batch == 256 and lp.queue_ms > 0
    assert offline(cfg, lay, dev, sc, capped).point.batch <= 256
