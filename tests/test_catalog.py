"""Catalog data: every reference architecture, counted from its config, within 3% of the published figure."""

import pytest

from moebench.catalog import get_hardware, hardware_catalog, reference_models
from moebench.errors import BadInput
from moebench.models.config import from_hf

HW_IDS = {"a100_sxm_80gb", "h100_sxm", "h200_sxm", "b200", "gb200_nvl72", "b300", "gb300_nvl72", "mi300x", "mi325x",
          "mi355x", "cpu"}


def test_hardware_catalog_has_every_generation_with_sources():
    cat = hardware_catalog()
    assert HW_IDS <= set(cat)
    for hid in HW_IDS - {"cpu"}:
        hw = cat[hid]
        assert hw.sources and hw.peak_tflops["bf16"] > 0 and hw.hbm_tbps > 0
        assert hw.prices and all(p.source and p.date for p in hw.prices)
    assert cat["cpu"].prices == []  # the user sets the CPU price


def test_price_tiers_and_unknown_tier():
    h100 = get_hardware("h100_sxm")
    assert h100.price("hyperscaler").usd_per_gpu_hour == 1.3
    with pytest.raises(BadInput, match="no price tier"):
        h100.price("spot")
    with pytest.raises(BadInput, match="did you mean"):
        get_hardware("h100_sx")


@pytest.mark.parametrize("name", sorted(reference_models()))
def test_param_counts_within_3_percent_of_published(name):
    ref = reference_models()[name]
    cfg = from_hf(ref.config)
    assert cfg.total_params() == pytest.approx(ref.published_params["published_total"], rel=0.03)
    if "published_active" in ref.published_params:
        assert cfg.active_params() == pytest.approx(ref.published_params["published_active"], rel=0.03)


def test_intelligence_scores_are_version_pinned():
    refs = reference_models()
    assert refs["llama3:405b"].score("v3").score == 28
    assert refs["gpt-oss:120b"].score("v3").score == 61
    assert refs["gpt-oss:120b"].score("v2").score == 58
    assert refs["qwen3-moe:30b-a3b"].score("v3") is None
