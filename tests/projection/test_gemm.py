"""Tile and wave quantization of GEMMs, checked by hand: what the SM count and the tile shape cost a GEMM."""

from __future__ import annotations

import dataclasses
import math

import pytest

from moebench.projection import Assumptions, Layout, ServingScenario, device_for, project, resolve_config, step
from moebench.projection.gemm import Gemm, gemm_efficiency, op_efficiency, wave_efficiency

H100_SMS, TILE = 132, (128, 128)


def test_wave_quantization_hand_computed():
    """Mixtral's w1 (N = F = 14336, K = 4096) at 512 rows on an H100: 4 × 112 = 448 tiles of 128×128 run in
    ⌈448 / 132⌉ = 4 waves, the last 26 % full: 448 / (4 · 132) = 0.848. At 2,048 rows 1,792 tiles take 14 waves."""
    assert wave_efficiency(512, 14336, 4096, H100_SMS, TILE) == pytest.approx(448 / (4 * 132))
    assert wave_efficiency(512, 14336, 4096, H100_SMS, TILE) == pytest.approx(0.8485, abs=1e-4)
    assert wave_efficiency(2048, 14336, 4096, H100_SMS, TILE) == pytest.approx(1792 / (14 * 132))
    # tile quantization: 130 rows need two row tiles, the second almost empty
    assert wave_efficiency(130, 14336, 4096, H100_SMS, TILE) == pytest.approx(130 * 14336 / (2 * 132 * 128 * 128))
    # a grid that fills the GPU exactly loses nothing
    assert wave_efficiency(128 * 132, 128, 4096, H100_SMS, TILE) == pytest.approx(1.0)


def test_narrow_gemms_shrink_the_tile_and_split_k():
    """A decode GEMM of 16 rows is charged no padding rows (kernels shrink the row tile), only its waves; a grid of
    32 tiles (128 rows × N = 4096) is split 4 ways along K = 14336 to fill 128 of the 132 SMs."""
    assert wave_efficiency(16, 28672, 4096, H100_SMS, TILE) == pytest.approx(224 / (2 * 132))
    assert wave_efficiency(128, 4096, 14336, H100_SMS, TILE) == pytest.approx(128 / 132)
    # too shallow to split (K < 2 · 256): one wave of 32 tiles
    assert wave_efficiency(128, 4096, 300, H100_SMS, TILE) == pytest.approx(32 / 132)


def test_routed_rows_are_binomial_per_expert_or_grouped():
    """Each of E experts gets Binomial(T, K/E) rows. A per-expert loop pays each GEMM's waves on its own: the
    expectation over the binomial, checked here against a direct sum; a grouped kernel shares the waves."""
    g = Gemm(256, 1024, tokens=200, p=0.25, count=8)  # 50 rows per expert on average, 16-row tiles, 4 SMs
    sms, tile = 4, (16, 128)
    pmf = [(m, math.comb(200, m) * 0.25**m * 0.75 ** (200 - m)) for m in range(201)]
    busy = sum(w * math.ceil(math.ceil(m / 16) * 2 / sms) * sms * 16 * 128 for m, w in pmf if m > 0)
    assert gemm_efficiency(g, sms, tile, grouped=False) == pytest.approx(50 * 256 / busy, rel=1e-6)
    # 512 rows on average is 4 row tiles only about half the time: the expectation is below the mean's efficiency
    w1 = Gemm(14336, 4096, tokens=2048, p=0.25, count=8)
    per_expert = gemm_efficiency(w1, H100_SMS, TILE, grouped=False)
    assert per_expert < wave_efficiency(512, 14336, 4096, H100_SMS, TILE) - 0.05
    assert gemm_efficiency(w1, H100_SMS, TILE, grouped=True) > per_expert


def test_no_sm_count_or_no_tile_means_no_quantization():
    """A catalog entry without an SM count (b300 here; the CPU) projects without the wave model, as with it off."""
    gemms = (Gemm(14336, 4096, rows=512),)
    assert device_for("b300").sm_count is None
    proj = project(resolve_config("llama3:8b"), device_for("b300"), ServingScenario(128, 16), Assumptions(), batches=(1,))
    assert any("no SM count" in n for n in proj.notes)
    assert op_efficiency(gemms, None, TILE) == 1.0 and op_efficiency(gemms, H100_SMS, None) == 1.0
    cfg = resolve_config("mixtral:8x7b").with_layers(2)
    dev, sc, lay = device_for("h100_sxm"), ServingScenario(512, 32), Layout(1, 1, 1)
    a = Assumptions(serving="static", expert_gemms="per_expert")
    for batch in (1, 4, 16):
        on = step(cfg, lay, dev, sc, a, "prefill", batch).time_ms
        no_sms = step(cfg, lay, dataclasses.replace(dev, sm_count=None), sc, a, "prefill", batch).time_ms
        off = step(cfg, lay, dev, sc, a.replace(gemm_tile=None), "prefill", batch).time_ms
        assert no_sms == pytest.approx(off) and on > off  # it only ever slows a step down
