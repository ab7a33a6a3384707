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
