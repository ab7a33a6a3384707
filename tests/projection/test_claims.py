"""benchmarks/claims.py, the numbers behind docs/claims.md: a row per claim, verdicts computed from the tables,
and a page that holds exactly what the script prints."""

from __future__ import annotations

import math

import pytest

from benchmarks import claims
from benchmarks.claims import CURVE, ClaimError, check_claims, doc_block, doc_blocks, write_doc
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
        assert all(math.isfinite(x) for x in (*c.band_typical, *c.band_worst))


def test_scores_are_the_catalogs_on_one_index_version_and_said_to_be_unverified(checks):
    dense_vs_moe = checks[0]
    assert (dense_vs_moe.projected["score_dense"], dense_vs_moe.projected["score_moe"]) == (28, 61)
    assert "both on index v3 (unverified: third-party scrape" in dense_vs_moe.verdict


def test_costs_follow_the_catalog_prices(checks):
    p = checks[1].projected
    price = {h: get_hardware(h).prices[0].usd_per_gpu_hour for h in ("h200_sxm", "gb200_nvl72")}
    assert p["price_ratio"] == pytest.approx(price["gb200_nvl72"] / price["h200_sxm"])
    # the anchor: the most interactive H200 point still at most the claimed $1/M (else a default target stands in)
    assert p["usd_per_mtok_from"] <= claims.CLAIMED_USD_FROM or p["interactivity"] == claims.TARGETS[1]


def test_the_verdict_s_range_is_read_off_the_1k1k_table(checks):
    gb = checks[1]
    rows = [r.split(" | ") for r in gb.tables[0].splitlines() if r.startswith("| ") and r[2].isdigit()]
    # the targets both projections reach (H200 may top out below the highest: its row reads "—")
    fp4 = {float(r[0].strip("| ")): float(r[5]) for r in rows if "(" not in r[0] and r[5] != "—"}
    assert set(fp4) <= set(CURVE) and len(fp4) >= len(CURVE) - 2
    lo, hi = min(fp4, key=fp4.get), max(fp4, key=fp4.get)
    assert f"from {fp4[lo]:.3g}× (at ≥{lo:g}) to {fp4[hi]:.3g}× (at ≥{hi:g})" in gb.verdict


def test_a_target_no_projection_reaches_is_one_line_not_a_traceback(monkeypatch, capsys):
    monkeypatch.setattr(claims.Projected, "at", lambda self, x: claims.Operating(x))  # nothing is reachable
    assert claims.main(["--no-bands"]) == 5
    err = capsys.readouterr().err
    assert err.startswith("error: dense/MoE $ per token on H200 at ≥20 tok/s/user: no projected point")
    assert len(err.strip().splitlines()) == 1


def test_write_doc_replaces_only_the_marked_blocks_and_names_a_missing_one():
    text = "prose 1\n<!-- claims:a -->\nold\n<!-- /claims:a -->\nprose 2\n"
    assert write_doc(text, {"a": "| new |"}) == "prose 1\n<!-- claims:a -->\n| new |\n<!-- /claims:a -->\nprose 2\n"
    with pytest.raises(ClaimError, match=r"missing for \['b'\]"):
        write_doc(text, {"a": "x", "b": "y"})


def test_the_page_holds_what_the_script_prints():
    """docs/claims.md's generated blocks, summary rows first, equal the script's output with every published
    point (`python benchmarks/claims.py --write-doc` rewrites them after a projection change)."""
    text = claims.DOC.read_text()
    blocks = doc_blocks(check_claims())
    summary = [r for r in blocks["summary"].splitlines() if r.startswith("| ") and not r.startswith("| claim")]
    assert [r for r in doc_block(text, "summary").splitlines() if r in summary] == summary
    assert {n: doc_block(text, n) for n in blocks} == blocks
