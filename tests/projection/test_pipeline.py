"""Pipeline stages (TP inside a domain × PP across domains): what they cost and what they buy, against the same
model run tensor-parallel in one stage (docs/projection.md, Layouts)."""

from __future__ import annotations

import pytest

from moebench.projection import Assumptions, Layout, ServingScenario, device_for, resolve_config, step
from moebench.projection.layout import stage_layers, weight_bytes_per_gpu

DEV, SC, A = device_for("h100_sxm"), ServingScenario(1024, 256), Assumptions()


@pytest.fixture(scope="module")
def cfg():
    return resolve_config("llama3:405b")


def test_stages_split_the_layers_and_the_weights(cfg):
    assert [len(r) for r in stage_layers(cfg, 2)] == [63, 63]
    assert [len(r) for r in stage_layers(cfg, 4)] == [32, 32, 32, 30]
    one, two = (weight_bytes_per_gpu(cfg, Layout(n, 8, 1, pp), SC) for n, pp in ((8, 1), (16, 2)))
    assert 0.49 < two / one < 0.52  # half the layers per GPU; each stage also charged embedding and LM head


def test_decode_a_token_still_passes_every_layer(cfg):
    """PP halves the weights per GPU, not a token's path: TPOT stays that of all layers on one TP8 group (plus the
    hand-offs and a second LM head), while a second micro-batch fills the other stage for free."""
    flat = step(cfg, Layout(8, 8, 1), DEV, SC, A, "decode", 1).time_ms
    piped = step(cfg, Layout(16, 8, 1, 2), DEV, SC, A, "decode", 1)
    assert 1.0 < piped.time_ms / flat < 1.03
    assert piped.phases["p2p"].time_ms > 0 and piped.comm_ms > piped.phases["p2p"].time_ms
    # batch 2 = two micro-batches of one: both stages busy, the same step time for twice the tokens
    assert step(cfg, Layout(16, 8, 1, 2), DEV, SC, A, "decode", 2).time_ms == pytest.approx(piped.time_ms)


def test_a_static_prefill_fills_and_drains_the_pipe(cfg):
    """A static batch (nothing else in flight): m micro-batches through pp stages take (m + pp − 1) stage times:
    one prompt, 2 stage times (the whole model once); 8 prompts as two micro-batches of 4, 3 stage times."""
    a = A.replace(serving="static")
    flat1 = step(cfg, Layout(8, 8, 1), DEV, SC, a, "prefill", 1).time_ms
    assert 1.0 < step(cfg, Layout(16, 8, 1, 2), DEV, SC, a, "prefill", 1).time_ms / flat1 < 1.03
    stage4 = step(cfg, Layout(16, 8, 1, 2), DEV, SC, a, "prefill", 8).time_ms / 3  # one stage, 4 prompts
    flat4 = step(cfg, Layout(8, 8, 1), DEV, SC, a, "prefill", 4).time_ms
    assert 0.49 < stage4 / flat4 < 0.53  # a stage holds half the layers


def test_a_continuous_prefill_rides_a_full_pipe(cfg):
    """Under continuous serving the running sequences keep every stage busy, so newcomers' prompts cost what
    decode's micro-batches do, pp stage times for pp micro-batches, without the fill and drain: 8 prompts take
    2 stage times, not 3; one prompt still passes every stage (its TTFT is the whole model once)."""
    assert A.serving == "continuous"
    piped = Layout(16, 8, 1, 2)
    static = step(cfg, piped, DEV, SC, A.replace(serving="static"), "prefill", 8).time_ms
    assert step(cfg, piped, DEV, SC, A, "prefill", 8).time_ms == pytest.approx(static * 2 / 3)
    assert step(cfg, piped, DEV, SC, A, "prefill", 1).time_ms == pytest.approx(
        step(cfg, piped, DEV, SC, A.replace(serving="static"), "prefill", 1).time_ms)


def test_a_pipeline_stage_is_tensor_parallel_only():
    from moebench.errors import BadInput

    with pytest.raises(BadInput, match="pipeline stages are tensor-parallel only"):
        Layout(16, 8, 8, 2)
    with pytest.raises(BadInput, match="must divide the GPU count"):
        Layout(16, 8, 1, 3)
