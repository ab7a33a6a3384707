"""Expert imbalance from a measured run's expert load: the busiest EP rank's rows / the mean, per EP size, and
projections that pay for it."""

from __future__ import annotations

import json

import pytest

from moebench.errors import BadInput
from moebench.projection import Assumptions, Layout, ServingScenario, device_for, evaluate, resolve_config
from moebench.projection.imbalance import by_ep, measured_load, rank_imbalance
from tests.projection.synthetic import synthetic_result


def test_rank_imbalance_is_the_busiest_rank_over_the_mean():
    load = [10, 0, 0, 0, 5, 5, 5, 5]  # 8 experts, 30 tokens
    assert rank_imbalance(load, 1) == 1.0
    assert rank_imbalance(load, 2) == pytest.approx(20 / 15)  # ranks hold 10 and 20
    assert rank_imbalance(load, 4) == pytest.approx(10 / 7.5)
    assert rank_imbalance(load, 8) == pytest.approx(10 / 3.75)
    assert rank_imbalance([1.0] * 8, 8) == 1.0


def _doc(rows):
    return {"records": [{"model": "mixtral:8x7b", "profile": {"expert_load": {
        "layers": [{"layer": i, "tokens_per_expert": r} for i, r in enumerate(rows)]}}}]}


def test_a_measured_load_slows_expert_parallel_decode_only_where_ranks_hold_hot_experts(cfgs):
    cfg, dev = cfgs["mixtral:8x7b"], device_for("h100_sxm")
    rows = measured_load(_doc([[40, 10, 10, 10, 10, 10, 5, 5], [5, 5, 10, 10, 10, 10, 10, 40]]), 8)
    imb = by_ep(rows, (1, 2, 4, 8))
    assert imb[1] == 1.0 and imb[8] == pytest.approx(40 / 12.5)
    sc = ServingScenario(1024, 256)
    uniform, skewed = Assumptions(serving="static"), Assumptions(serving="static", expert_imbalance_by_ep=imb)
    ep8 = Layout(8, 1, 8)
    assert evaluate(cfg, ep8, dev, sc, skewed, 512).decode.time_ms > evaluate(cfg, ep8, dev, sc, uniform, 512).decode.time_ms
    tp8 = Layout(8, 8, 1)  # every GPU holds a slice of every expert: the load's skew costs nothing extra
    assert evaluate(cfg, tp8, dev, sc, skewed, 512).decode.time_ms == pytest.approx(
        evaluate(cfg, tp8, dev, sc, uniform, 512).decode.time_ms)


def test_a_load_of_another_model_or_none_is_bad_input():
    with pytest.raises(BadInput, match="16 experts"):
        measured_load(_doc([[1.0] * 16]), 8, "run.json")
    with pytest.raises(BadInput, match="no expert load"):
        measured_load({"records": []}, 8, "run.json")


def test_cli_expert_load_sets_the_imbalance(tmp_path):
    import typer
    from typer.testing import CliRunner

    from moebench.cli.project import register

    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        """test app"""

    cfg = resolve_config("mixtral:8x7b")
    doc = synthetic_result("mixtral:8x7b", cfg, device_for("h100_sxm"), Assumptions(), hardware={"id": "h100_sxm"},
                           batches=(4,))
    doc["records"][0]["profile"] = _doc([[40, 10, 10, 10, 10, 10, 5, 5]])["records"][0]["profile"]
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    args = ["project", "--model", "mixtral:8x7b", "--hardware", "h100_sxm", "--layout", "tp=1,ep=8", "--batch", "256",
            "--json", "--preset", "defaults"]
    skewed = CliRunner().invoke(app, [*args, "--expert-load", str(path)])
    assert skewed.exit_code == 0, skewed.output
    uniform = CliRunner().invoke(app, args)
    tpot = lambda r: json.loads(r.stdout)["hardware"][0]["records"][0]["metrics"]["tpot_ms"]["median"]  # noqa: E731
    assert tpot(skewed) > tpot(uniform)
    assert json.loads(skewed.stdout)["assumptions"]["expert_imbalance_by_ep"]["8"] == pytest.approx(40 / 12.5)
