"""benchmarks/claims.py, the numbers behind docs/claims.md: a row per claim, finite, with the bands that apply."""

from __future__ import annotations

import math

import pytest

from benchmarks.claims import CLAIMED_USD_FROM, TARGETS, check_claims
from moebench.catalog import get_hardware
from tests.projection.published_set import load_published

# one held-out point of each group the claims' projections fall in (NVIDIA: dense fp8, MoE fp4, MoE fp8)
HELD_OUT = ("trt-llama405b-h200_sxm-tp8-fp8-1000-1000", "trt-qwen3-30b-b200-tp1-fp4-1000-1000",
            "trt-qwen3-235b-h200_sxm-tp8-fp8-1000-1000")


@pytest.fixture(scope="module")
def checks():
    points = [p for p in load_published().points if p.id in HELD_OUT]
    assert len(points) == len(HELD_OUT)
    return check_claims(points=points)


def test_a_row_per_claim_with_finite_numbers(checks):
    assert [c.claim.split(",")[0].split(":")[0] for c in checks] == [
        "Llama-3.1-405B vs gpt-oss-120b", "DeepSeek-R1"]
    for c in checks:
        assert c.quoted and c.projected and c.commands and c.tables
        finite = {k: v for k, v in c.projected.items() if not k.startswith("interactivity_15x")}
        assert all(math.isfinite(v) and v > 0 for v in finite.values()), c.projected
        lo, hi = c.band_worst
        assert math.isfinite(lo) and math.isfinite(hi)
        ratio = c.projected["token_cost_ratio"] if "token_cost_ratio" in c.projected else c.projected["speedup"]
        # the band brackets the projected ratio, the typical band inside the worst one
        assert lo <= c.band_typical[0] <= ratio <= c.band_typical[1] <= hi


def test_scores_are_the_catalogs_on_one_index_version(checks):
    dense_vs_moe = checks[0]
    assert (dense_vs_moe.projected["score_dense"], dense_vs_moe.projected["score_moe"]) == (28, 61)
    assert "both on index v3" in dense_vs_moe.verdict


def test_costs_follow_the_catalog_prices_and_the_projected_throughputs(checks):
    p = checks[1].projected
    price = {h: get_hardware(h).prices[0].usd_per_gpu_hour for h in ("h200_sxm", "gb200_nvl72")}
    assert p["price_ratio"] == pytest.approx(price["gb200_nvl72"] / price["h200_sxm"])
    # $/M tokens ∝ price / tokens per GPU: the cost ratio is the speedup over the price ratio
    assert p["usd_per_mtok_from"] / p["usd_per_mtok_to"] == pytest.approx(p["speedup"] / p["price_ratio"], rel=1e-6)
    # the anchor: the most interactive H200 point still at most the claimed $1/M (else a default target stands in)
    assert p["usd_per_mtok_from"] <= CLAIMED_USD_FROM or p["interactivity"] == TARGETS[1]
