"""Tokenomics formulas against values computed by hand (the arithmetic is written out in each test)."""

import pytest

from moebench import tokenomics as tk


def test_usd_per_mtok_by_hand():
    # $2.00/GPU-h × 8 GPUs = $16/h; 10,000 tok/s = 36e6 tok/h -> 16 / 36 = $0.4444 per M tokens
    assert tk.usd_per_mtok(2.0, 8, 10_000) == pytest.approx(0.444444, rel=1e-5)


def test_usd_per_mtok_counts_every_gpu():
    one = tk.usd_per_mtok(3.0, 1, 1000)
    four = tk.usd_per_mtok(3.0, 4, 1000)  # same total rate, four times the GPU-hours
    assert four == pytest.approx(4 * one)
    assert tk.usd_per_mtok(3.0, 1, 0) is None


def test_blended_is_three_to_one():
    # (3 × 0.10 + 1 × 0.50) / 4 = 0.80 / 4 = 0.20
    assert tk.blended_usd_per_mtok(0.10, 0.50) == pytest.approx(0.20)


def test_interactivity_and_per_gpu():
    assert tk.interactivity(20.0) == pytest.approx(50.0)  # 1000 / 20 ms
    assert tk.interactivity(0.0) is None
    assert tk.per_gpu(1200.0, 8) == pytest.approx(150.0)


def test_energy_and_power():
    # 700 J over 1400 tokens = 0.5 J/token
    assert tk.joules_per_token(700.0, 1400) == pytest.approx(0.5)
    assert tk.joules_per_token(None, 10) is None
    # 10,000 tok/s on 8 GPUs at 1.73 kW all-in each = 13.84 kW = 0.01384 MW -> 722,543.4 tok/s per MW
    assert tk.tokens_per_mw(10_000, 1.73, 8) == pytest.approx(10_000 / 0.01384)
    assert tk.tokens_per_mw(10_000, None, 8) is None


def test_intelligence_per_usd_and_eval_cost():
    # score 61 at $0.25 blended per M tokens -> 244 points per $/M
    assert tk.intelligence_per_usd(61, 0.25) == pytest.approx(244.0)
    assert tk.intelligence_per_usd(None, 0.25) is None
    # an eval that needs 140 M tokens at $2.50/M costs $350
    assert tk.eval_cost_usd(140e6, 2.5) == pytest.approx(350.0)


def test_mfu_mbu_ratio():
    # 494.5 TFLOP/s achieved of a 989 TFLOP/s peak = 50 %
    assert tk.mfu(494.5e12, 989e12) == pytest.approx(0.5)
    # 2.68 TB/s of 3.35 TB/s = 80 %
    assert tk.mbu(2.68e12, 3.35e12) == pytest.approx(0.8)
    assert tk.mfu(1.0, None) is None
    # gpt-oss-120b: 5.133 B active of 116.83 B total = 4.39 %
    assert tk.active_ratio(5_133, 116_829) == pytest.approx(0.043936, rel=1e-4)


def test_request_rates_by_hand():
    # batch 4, prompt 100, output 11: TTFT 200 ms + 10 × 30 ms = 0.5 s wall
    r = tk.request_rates(4, 100, 11, 200.0, 30.0)
    assert r["input"] == pytest.approx(400 / 0.5)
    assert r["output"] == pytest.approx(44 / 0.5)
    assert r["total"] == pytest.approx(444 / 0.5)
