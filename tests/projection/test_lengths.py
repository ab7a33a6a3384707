"""A workload whose lengths vary (a dataset's, MLPerf's) is projected from the moments of its lengths: the means for
what is linear in them, E[P²], E[P·O] and E[O²] for attention and the KV cache."""

from __future__ import annotations

import math
import random

import pytest

from moebench.errors import BadInput
from moebench.projection import Assumptions, Layout, LengthMoments, ServingScenario, device_for, resolve_config
from moebench.projection.cost import step
from moebench.projection.layout import kv_bytes_per_seq
from moebench.projection.load import kv_capacity, offline


def _sample(seed: int = 7, n: int = 2000) -> list[tuple[int, int]]:
    """Short prompts, long-tailed outputs (a reasoning model's: median far below the mean)."""
    rng = random.Random(seed)
    return [(rng.randint(200, 1500), max(2, int(rng.lognormvariate(7.6, 1.0)))) for _ in range(n)]


def test_one_length_repeated_costs_what_the_fixed_lengths_cost():
    cfg, dev, a = resolve_config("mixtral:8x7b"), device_for("h100_sxm"), Assumptions()
    fixed = ServingScenario(3000, 700, weight_dtype="fp8")
    same = ServingScenario.of_lengths(LengthMoments.of([(3000, 700)] * 5), weight_dtype="fp8")
    assert (same.prompt_tokens, same.output_tokens) == (3000, 700)
    lay = Layout(2, 2, 1)
    for stage, batch in (("prefill", 4), ("decode", 64)):
        assert step(cfg, lay, dev, same, a, stage, batch).time_ms == pytest.approx(
            step(cfg, lay, dev, fixed, a, stage, batch).time_ms, rel=1e-9)
    assert kv_capacity(cfg, lay, dev, same, a) == kv_capacity(cfg, lay, dev, fixed, a)


def test_the_moments_give_what_each_decode_step_attends_counted_token_by_token():
    pairs = _sample()
    sc = ServingScenario.of_lengths(LengthMoments.of(pairs))
    # every decode step of every request, its context counted: steps of long requests weigh more
    attended = sum(sum(p + i for i in range(1, o)) for p, o in pairs)
    steps = sum(o - 1 for _, o in pairs)
    assert sc.decode_context == pytest.approx(attended / steps, rel=0.01)
    means_only = ServingScenario(sc.prompt_tokens, sc.output_tokens)
    assert sc.decode_context > 1.3 * means_only.decode_context  # the tail, which the means hide


def test_the_cache_is_sized_for_the_sequences_in_flight_and_prefill_attention_for_the_squared_prompt():
    pairs = _sample()
    sc = ServingScenario.of_lengths(LengthMoments.of(pairs))
    # a request is in flight for its O steps and needs room for P + O: the ones in flight are weighted by O
    assert sc.kv_tokens_per_seq == pytest.approx(sum(o * (p + o) for p, o in pairs) / sum(o for _, o in pairs))
    # causal attention over a prompt is ~P²/2: √E[P²] costs the mean prompt's
    assert sc.prefill_attention_tokens == pytest.approx(math.sqrt(sum(p * p for p, _ in pairs) / len(pairs)))
    cfg, lay = resolve_config("deepseek-v3:671b"), Layout(8, 1, 8)
    means_only = ServingScenario(sc.prompt_tokens, sc.output_tokens)
    assert kv_bytes_per_seq(cfg, lay, sc) > 1.3 * kv_bytes_per_seq(cfg, lay, means_only)


def test_a_long_tail_of_outputs_serves_fewer_tokens_than_its_means_promise():
    """DeepSeek-R1 offline on 8×B200 (DP attention, EP8): longer contexts cost KV reads and room for sequences."""
    cfg, dev, a = resolve_config("deepseek-v3:r1"), device_for("b200"), Assumptions()
    lay = Layout(8, 1, 8)
    sc = ServingScenario.of_lengths(LengthMoments.of(_sample()), weight_dtype="fp4", kv_dtype="fp8")
    means_only = ServingScenario(sc.prompt_tokens, sc.output_tokens, weight_dtype="fp4", kv_dtype="fp8")
    with_tail, without = offline(cfg, lay, dev, sc, a), offline(cfg, lay, dev, means_only, a)
    assert with_tail.capacity < without.capacity
    assert with_tail.point.per_gpu("output") < 0.9 * without.point.per_gpu("output")


@pytest.mark.parametrize("moments, needle", [
    ((500.0, 100.0, 1000.0, 5e4, 2e4), "E[X²]"),  # E[P²] below E[P]²
    ((500.0, 100.0, 3e5, 9e5, 2e4), "E[P·O]"),  # |E[P·O]| beyond Cauchy–Schwarz
    ((500.0, 1.0, 3e5, 600.0, 2.0), "≥ 2 output"),
])
def test_inconsistent_moments_are_bad_input(moments, needle):
    with pytest.raises(BadInput, match=needle.replace("[", r"\[").replace("]", r"\]")):
        LengthMoments(*moments)


def test_no_lengths_is_bad_input():
    with pytest.raises(BadInput, match="no request lengths"):
        LengthMoments.of([])


def test_a_prefill_pool_holds_the_prompts_of_a_distribution_not_its_outputs():
    from moebench.projection.disagg import prompt_only

    pairs = _sample()
    sc = prompt_only(ServingScenario.of_lengths(LengthMoments.of(pairs)))
    mean_p = sum(p for p, _ in pairs) / len(pairs)
    assert sc.kv_tokens_per_seq == pytest.approx(mean_p + 2)
    assert sc.prefill_attention_tokens == pytest.approx(math.sqrt(sum(p * p for p, _ in pairs) / len(pairs)))
