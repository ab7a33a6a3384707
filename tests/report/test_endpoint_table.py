import pytest

from moebench.report.endpoint_table import cost_at_interactivity


def level(label, inter, usd):
    return {"load": {"label": label}, "metrics": {"interactivity_tokens_per_s_per_user": {"median": inter},
                                                  "usd_per_mtok": {"blended": {"median": usd}}}}


def test_cost_is_interpolated_along_the_pareto_front():
    recs = [level("c1", 100.0, 10.0), level("c8", 60.0, 2.0), level("c32", 20.0, 0.5),
            level("c16-dominated", 40.0, 3.0)]  # slower and dearer than c8: not on the front
    assert cost_at_interactivity(recs, 40.0) == pytest.approx((1.25, "c32", "c8"))
    assert cost_at_interactivity(recs, 100.0) == (10.0, "c1", "c1")
    assert cost_at_interactivity(recs, 10.0) == (0.5, "c32", "c32")  # below the front: its cheapest level
    assert cost_at_interactivity(recs, 150.0) is None  # no level is that interactive


def test_an_endpoint_levels_expert_load_is_a_heatmap_and_its_saved_prices_are_read():
    from moebench.report.endpoint_table import at_interactivity
    from moebench.report.profile_view import expert_loads

    load = {"available": True, "n_steps": 2, "layers": [
        {"layer": 0, "tokens_per_expert": [2, 2], "balancedness": 1.0},
        {"layer": 1, "tokens_per_expert": [4, 0], "balancedness": 0.5}]}
    recs = [{**level("concurrency 4", 50.0, 1.0), "model": "m", "expert_load": load},
            {**level("concurrency 8", 40.0, 0.5), "model": "m", "expert_load": {"available": False, "reason": "x"}}]
    [heat] = expert_loads({"records": recs})
    assert heat["title"] == "m · concurrency 4" and heat["tokens_LE"] == [[2, 2], [4, 0]]
    assert heat["balancedness"] == 0.5
    saved = {"records": recs, "at_interactivity": [
        {"target_tokens_per_s_per_user": 45.0, "usd_per_mtok_blended": 0.75, "levels": ["concurrency 8", "concurrency 4"]},
        {"target_tokens_per_s_per_user": 99.0, "usd_per_mtok_blended": None, "levels": None}]}
    assert at_interactivity(saved) == [(45.0, (0.75, "concurrency 8", "concurrency 4")), (99.0, None)]


def test_the_levels_table_reads_its_heads_from_the_metric_table_and_survives_missing_keys():
    from rich.console import Console

    from moebench import metrics as mt
    from moebench.report.endpoint_table import COLUMNS, levels_table

    doc = {"hardware": {"id": "h100_sxm", "endpoint": {"base_url": "http://x/v1"}}, "world_size": 1,
           "complete": True,
           "records": [{"load": {"label": "concurrency 2"}, "requests": {"ok": 3, "failed": 1, "cut": 0},
                        "metrics": {"ttft_ms": {"median": 12.0, "p99": 30.0}}},  # an older or partial record
                       {"load": {"label": "concurrency 4"}, "metrics": {}}]}
    t = levels_table(doc)
    heads = [c.header for c in t.columns]
    assert heads[2:-2] == [mt.BY_PATH[p].label for p in COLUMNS] and all(heads)
    console = Console(width=250, record=True)
    console.print(t)
    text = console.export_text()
    assert "3 / 1 / 0" in text and "12" in text and "? / ? / ?" in text


def test_an_unbounded_good_cost_beside_a_goodput_is_explained():
    """One repeat with no request inside the SLOs has no cost per good token: '—' beside a non-zero goodput median
    would read as 'not measured'; the caption says why."""
    from moebench.report.endpoint_table import levels_table

    rec = {**level("concurrency 4", 50.0, 1.0), "requests": {"ok": 8, "failed": 0, "cut": 0}}
    rec["metrics"]["goodput_requests_per_s"] = {"median": 3.8}
    doc = {"hardware": {"endpoint": {"base_url": "http://x/v1"}}, "world_size": 1, "complete": True, "records": [rec]}
    assert "cost per good token is unbounded" in levels_table(doc).caption
    rec["metrics"]["goodput_requests_per_s"] = {"median": 0.0}  # no good request at all: "—" needs no excuse
    assert "unbounded" not in levels_table(doc).caption
    rec["metrics"]["goodput_requests_per_s"] = {"median": 3.8}
    rec["metrics"]["usd_per_mtok_good"] = {"output": {"median": 2.0}}
    assert "unbounded" not in levels_table(doc).caption
    wide = [c.header for c in levels_table(doc, wide=True).columns]
    assert "req/s" not in wide and "E2E ms" not in wide  # --wide adds only what some level has
