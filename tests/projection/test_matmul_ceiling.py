"""Fitted compute efficiencies count from each GPU's measured matmul ceiling (catalog measured_matmul_tflops), so a
GPU whose best GEMM reaches half its datasheet peak is not credited with the share another vendor's GPUs reach."""

from __future__ import annotations

import pytest

from moebench.catalog import get_hardware
from moebench.projection import Layout, ServingScenario, device_for, resolve_config, step
from moebench.projection.presets import Presets

FLAT = {"nvidia.compute": 1.0, "nvidia.memory": 1.0, "amd.compute": 1.0, "amd.memory": 1.0}


def test_ceiling_is_the_measured_share_of_each_formats_peak():
    mi300x = get_hardware("mi300x").matmul_ceiling()
    assert mi300x["bf16"] == pytest.approx(668.4 / 1307.4)
    assert mi300x["fp8"] == pytest.approx(668.4 / 1307.4)  # no fp8 row: the bf16 share of the fp8 peak
    h100 = get_hardware("h100_sxm").matmul_ceiling()
    assert h100["bf16"] == pytest.approx(794.5 / 989)
    assert h100["fp8"] == pytest.approx(1402.6 / 1979)  # its own measurement


def test_a_gpu_without_a_measurement_takes_its_architectures_share():
    gb300, b300 = device_for("gb300_nvl72"), device_for("b300")
    assert get_hardware("gb300_nvl72").matmul_ceiling() == {}
    assert gb300.matmul_ceiling["fp8"] == pytest.approx(b300.matmul_ceiling["fp8"])


def test_a_variant_without_its_own_factors_takes_its_familys():
    """Blackwell Ultra has no fitted fp4 factor of its own: it takes Blackwell's, not the datasheet peak; a factor of
    its own, where one is fitted, wins."""
    b300, b200 = device_for("b300"), device_for("b200")
    assert b300.arch_lookup == ("blackwell_ultra", "blackwell") and b200.arch_lookup == ("blackwell",)
    fitted = {**FLAT, "blackwell.fp4": 0.5, "blackwell.weight_only": 0.8}
    a = Presets(fitted).assumptions(b300)
    assert a.dtype_efficiency["fp4"] == pytest.approx(0.5 * b300.matmul_ceiling["fp4"] / b300.matmul_ceiling["bf16"])
    assert a.dtype_efficiency["weight_only"] == 0.8
    own = Presets({**fitted, "blackwell_ultra.fp4": 0.9}).assumptions(b300)
    assert own.dtype_efficiency["fp4"] == pytest.approx(0.9 * b300.matmul_ceiling["fp4"] / b300.matmul_ceiling["bf16"])


def test_presets_scale_compute_by_the_ceiling_and_not_memory():
    mi300x, h100 = device_for("mi300x"), device_for("h100_sxm")
    a_amd, a_nv = Presets(FLAT).assumptions(mi300x), Presets(FLAT).assumptions(h100)
    assert a_amd.efficiency.compute == pytest.approx(668.4 / 1307.4)
    assert a_nv.efficiency.compute == pytest.approx(794.5 / 989)
    assert a_nv.dtype_efficiency["fp8"] * a_nv.efficiency.compute == pytest.approx(1402.6 / 1979)
    assert a_amd.efficiency.memory == a_nv.efficiency.memory == 1.0


def test_a_compute_bound_prefill_slows_by_the_ceiling():
    """The same device with and without its ceiling: a long prefill (compute-bound) takes 1/share the time."""
    import dataclasses

    cfg, lay = resolve_config("llama3:70b"), Layout(1, 1, 1)
    sc = ServingScenario(8192, 2, weight_dtype="fp8")
    dev = device_for("mi300x")
    bare = dataclasses.replace(dev, matmul_ceiling={})
    with_ceiling = step(cfg, lay, dev, sc, Presets(FLAT).assumptions(dev), "prefill", 4)
    without = step(cfg, lay, bare, sc, Presets(FLAT).assumptions(bare), "prefill", 4)
    mlp = with_ceiling.phases["mlp"].compute_ms / without.phases["mlp"].compute_ms
    assert mlp == pytest.approx(1307.4 / 668.4, rel=1e-6)
    assert with_ceiling.time_ms > 1.5 * without.time_ms


def test_vendor_and_engine_factors_never_pass_the_ceiling_or_the_hbm_roof():
    """An engine's factors scale the vendor's shares; however large the two, a projection runs at most at the
    measured matmul ceiling and the HBM peak (never faster than a roofline)."""
    h100 = device_for("h100_sxm")
    p = Presets({"nvidia.compute": 0.9, "nvidia.memory": 0.95, "trt-llm.compute": 1.5, "trt-llm.memory": 1.25})
    a = p.assumptions(h100, "trt-llm")
    assert a.efficiency.compute == pytest.approx(h100.matmul_ceiling["bf16"])
    assert a.efficiency.memory == 1.0
    assert p.assumptions(h100, "vllm").efficiency.compute == pytest.approx(0.9 * h100.matmul_ceiling["bf16"])
