"""Projections are monotone in HBM bandwidth, FLOP/s and link bandwidth: a faster device never looks slower."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from moebench.projection import Assumptions, Efficiency, Layout, ServingScenario, device_for, evaluate, project, resolve_config
from moebench.projection.presets import builtin

MODELS = ("llama3:70b", "mixtral:8x7b", "deepseek-v3:671b", "gpt-oss:120b")
HARDWARE = ("h100_sxm", "b200", "gb200_nvl72", "mi355x")
CFGS = {m: resolve_config(m) for m in MODELS}

factor = st.floats(min_value=1.0, max_value=8.0, allow_nan=False)
settings_ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings_
@given(model=st.sampled_from(MODELS), hw=st.sampled_from(HARDWARE), batch=st.integers(1, 4096),
       prompt=st.integers(1, 8192), output=st.integers(2, 2048), dtype=st.sampled_from(["bf16", "fp8", "fp4"]),
       n_pow=st.integers(0, 5), tp_pow=st.integers(0, 3), ep_wide=st.booleans(),
       flops=factor, hbm=factor, links=factor, overlap=st.sampled_from([0.0, 0.5, 1.0]),
       serving=st.sampled_from(["static", "continuous"]), expert_gemms=st.sampled_from(["grouped", "per_expert"]),
       fitted=st.booleans(), spec=st.sampled_from([0, 1, 3]))
# found in a CI-like run: TPOT = prefill(B) + step - prefill(1) rose by 0.02% with 2x HBM (prefill(1) fell faster)
@example(model="deepseek-v3:671b", hw="h100_sxm", batch=2, prompt=1591, output=2, dtype="bf16", n_pow=0, tp_pow=0,
         ep_wide=False, flops=1.0, hbm=2.0, links=1.0, overlap=0.0, serving="continuous", expert_gemms="grouped",
         fitted=False, spec=0)
def test_faster_device_never_slower(model, hw, batch, prompt, output, dtype, n_pow, tp_pow, ep_wide, flops, hbm, links,
                                    overlap, serving, expert_gemms, fitted, spec):
    """With the literature defaults or the fitted presets (per-vendor, per-engine, per-precision factors, scheduler
    overheads), with or without speculative decoding."""
    cfg, dev = CFGS[model], device_for(hw)
    n = 2**n_pow
    tp = min(2**tp_pow, n)
    lay = Layout(n, tp, n) if (cfg.is_moe and ep_wide and n > 1) else Layout(n, n, 1)
    sc = ServingScenario(prompt, output, weight_dtype=dtype)
    a = Assumptions(efficiency=Efficiency(compute=0.6, memory=0.7), comm_overlap=overlap, serving=serving,
                    expert_gemms=expert_gemms, spec_tokens=spec, spec_accept=0.7)
    if fitted:
        a = builtin().assumptions(dev, "any", a)
    slow = evaluate(cfg, lay, dev, sc, a, batch)
    fast = evaluate(cfg, lay, dev.scaled(flops=flops, hbm=hbm, links=links), sc, a, batch)
    eps = 1e-9
    assert fast.decode.time_ms <= slow.decode.time_ms * (1 + eps)
    assert fast.prefill.time_ms <= slow.prefill.time_ms * (1 + eps)
    assert fast.ttft_ms <= slow.ttft_ms * (1 + eps)
    assert fast.tpot_ms <= slow.tpot_ms * (1 + eps)
    assert fast.per_gpu("output") >= slow.per_gpu("output") * (1 - eps)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(MODELS), hw=st.sampled_from(HARDWARE), hbm=factor, flops=factor,
       target=st.sampled_from([5.0, 20.0, 50.0, 150.0]))
def test_best_throughput_at_an_interactivity_target_is_monotone(model, hw, hbm, flops, target):
    """The reported number (best tokens/s/GPU at ≥ target tok/s/user, over layouts and batches) only rises."""
    cfg, dev = CFGS[model], device_for(hw)
    sc = ServingScenario(1024, 256, weight_dtype="fp8")
    batches = (1, 8, 64, 512)
    slow = project(cfg, dev, sc, Assumptions(), batches=batches, max_gpus=16).at_interactivity(target)
    fast = project(cfg, dev.scaled(flops=flops, hbm=hbm), sc, Assumptions(), batches=batches, max_gpus=16).at_interactivity(target)
    if slow is not None:
        assert fast is not None
        assert fast.per_gpu("output") >= slow.per_gpu("output") * (1 - 1e-9)
