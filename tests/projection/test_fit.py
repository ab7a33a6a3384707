"""The fit of the efficiency presets (projection/fit.py): what a published point's conditions do to its projection
(static batches beyond the KV cache, eager runs) and how a source that is slower as a whole is kept out of the
shared factors."""

from __future__ import annotations

import dataclasses

import pytest

from moebench.projection import Layout, device_for, resolve_config
from moebench.projection.fit import Measurement, Param, fit, predict
from moebench.projection.presets import Presets

FLAT = {"nvidia.compute": 0.8, "nvidia.memory": 0.8}


def _point(**kw) -> Measurement:
    base = dict(id="p", model="llama3:8b", device=device_for("h100_sxm"), engine="vllm", layout=Layout(1, 1, 1),
                prompt=1024, output=256, weight_dtype="fp8", kv_dtype="bf16", load="static_batch", load_value=8,
                metric="total_tokens_per_s_per_gpu", value=1000.0, split="fit", source_group="a")
    return Measurement(**{**base, **kw})


def test_a_static_batch_beyond_the_kv_cache_runs_in_waves():
    """A batch the KV cache cannot hold runs in waves of what it holds: the whole batch's time is the waves', and
    its throughput is the batch's tokens over that time (the two metrics of one run agree)."""
    from moebench.projection.load import kv_capacity

    cfg, p = resolve_config("llama3:70b"), Presets(FLAT)
    one = _point(model="llama3:70b", layout=Layout(2, 2, 1), prompt=32768, output=2048, load_value=1)
    a = p.assumptions(one.device, one.engine)
    from moebench.projection import ServingScenario

    cap = kv_capacity(cfg, one.layout, one.device, ServingScenario(32768, 2048, weight_dtype="fp8"), a)
    assert 2 < cap < 1000
    for want in (cap, cap + 1, 3 * cap):  # one full wave; a second wave of one; three full waves
        m = dataclasses.replace(one, load_value=want)
        tput = predict(m, cfg, p)
        latency = predict(dataclasses.replace(m, metric="request_latency_s"), cfg, p)
        assert tput * 2 * latency == pytest.approx(want * (32768 + 2048), rel=1e-6)  # tokens/s/GPU × GPUs × s
    full = predict(dataclasses.replace(one, load_value=cap), cfg, p)
    assert predict(dataclasses.replace(one, load_value=3 * cap), cfg, p) == pytest.approx(full)  # full waves
    assert predict(dataclasses.replace(one, load_value=cap + 1), cfg, p) < 0.6 * full  # a near-empty second wave


def test_an_eager_run_pays_the_host_time_of_every_op():
    cfg = resolve_config("llama3:8b")
    graphed = _point(load_value=1, metric="tpot_ms", output=64)
    eager = dataclasses.replace(graphed, eager=True)
    p = Presets({**FLAT, "eager.host_us": 100.0})
    assert predict(eager, cfg, p) > 1.5 * predict(graphed, cfg, p)  # batch 1: the host issues ops slower than they run
    assert predict(eager, cfg, Presets(FLAT)) == predict(graphed, cfg, Presets(FLAT))  # no fitted host time: none


def test_a_published_batch_cap_replaces_the_engines_fitted_one():
    """Offline, the batch grows to what the KV cache and the engine's cap allow; a point whose config publishes the
    cap (vLLM's max_num_seqs) is projected with it, the others with the preset's fitted `{engine}.max_seqs`."""
    cfg = resolve_config("llama3:8b")
    p = Presets({**FLAT, "vllm.max_seqs": 64.0})
    off = _point(load="offline", load_value=None, metric="output_tokens_per_s_per_gpu", prompt=128, output=512)
    fitted, capped, wide = (predict(dataclasses.replace(off, max_seqs=c), cfg, p) for c in (None, 16, 512))
    assert capped < 0.7 * fitted < 0.7 * 0.7 * wide


def test_a_source_slower_as_a_whole_gets_its_own_factor_not_the_shared_ones():
    """Two sources measure the same GPU; b's stack is half as fast on everything. The fit gives b a factor ~0.5 and
    keeps the shared memory efficiency where a's points put it."""
    cfg = resolve_config("llama3:8b")
    truth = Presets(FLAT)
    pts = []
    for src, speed in (("a", 1.0), ("b", 0.5)):
        for b in (1, 4, 16, 64):
            m = _point(id=f"{src}{b}", load_value=b, source_group=src, output=512)
            pts.append(dataclasses.replace(m, value=predict(m, cfg, truth) * speed))
    shared = {"nvidia.compute": Param(0.8, 0.799, 0.801), "nvidia.memory": Param(0.5, 0.1, 1.0)}
    params = {**shared, "source.a": Param(1.0, 0.2, 5.0), "source.b": Param(1.0, 0.2, 5.0)}
    got = fit(pts, lambda _: cfg, params)
    assert got["source.b"] / got["source.a"] == pytest.approx(0.5, rel=0.1)
    # anchored: the point-weighted mean of the sources' factors is 1, the shared level between the two stacks
    assert got["source.a"] * got["source.b"] == pytest.approx(1.0, rel=0.05)
    with_sources = [predict(m, cfg, Presets(got)) / m.value for m in pts]
    assert all(r == pytest.approx(1.0, rel=0.05) for r in with_sources)
    # without a factor of its own, neither source is fitted: the shared factor sits between them
    alone = Presets(fit(pts, lambda _: cfg, shared))
    ratios = {m.source_group: predict(m, cfg, alone) / m.value for m in pts if m.load_value == 64}
    assert ratios["a"] < 0.85 and ratios["b"] > 1.2


def test_an_engines_level_is_what_its_stacks_agree_on():
    """Stacks are anchored among those of their engine: when both published stacks of one engine ran 1.3× the
    shared model and the other engine's 0.7×, the engines' own factors take the levels (a projection names its
    engine) and the stacks' factors stay near 1. Anchored among all stacks at once, the stacks' factors would
    take part of it and a projection for either engine would read nearer the other's."""
    cfg = resolve_config("llama3:8b")
    truth = Presets(FLAT)
    pts = []
    for src, engine, speed in (("a", "trt-llm", 1.3), ("b", "trt-llm", 1.3), ("c", "vllm", 0.7), ("d", "vllm", 0.7)):
        for b in (1, 8, 64):
            m = _point(id=f"{src}{b}", load_value=b, source_group=src, engine=engine, output=512)
            pts.append(dataclasses.replace(m, value=predict(m, cfg, truth) * speed))
    shared = {"nvidia.compute": Param(0.8, 0.799, 0.801), "nvidia.memory": Param(0.8, 0.799, 0.801),
              **{f"{e}.{r}": Param(1.0, 0.3, 2.0) for e in ("trt-llm", "vllm") for r in ("compute", "memory")}}
    stacks = {f"source.{s}/{e}": Param(1.0, 0.2, 5.0) for s, e in (("a", "trt-llm"), ("b", "trt-llm"),
                                                                   ("c", "vllm"), ("d", "vllm"))}
    got = Presets(fit(pts, lambda _: cfg, {**shared, **stacks}))
    assert all(v == pytest.approx(1.0, rel=0.05) for k, v in got.params.items() if k.startswith("source."))
    unknown = [dataclasses.replace(m, source_group="new") for m in pts if m.load_value == 8]
    ratios = {m.engine: predict(m, cfg, got) / m.value for m in unknown}
    assert ratios["trt-llm"] == pytest.approx(1.0, rel=0.1) and ratios["vllm"] == pytest.approx(1.0, rel=0.1)
    by_source = {f"source.{s}": Param(1.0, 0.2, 5.0) for s in "abcd"}
    flat = Presets(fit(pts, lambda _: cfg, {**shared, **by_source}))
    # the sources' factors took part of the engines' levels (the priors split it): an unknown stack reads too slow
    # on the faster engine and too fast on the slower one
    flat_ratios = {m.engine: predict(m, cfg, flat) / m.value for m in unknown}
    assert flat_ratios["trt-llm"] < 0.95 and flat_ratios["vllm"] > 1.05
