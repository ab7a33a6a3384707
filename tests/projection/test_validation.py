"""The held-out error docs/projection.md documents holds: the committed presets (moebench/projection/presets.yaml),
scored on the published points they were not fitted on, stay within the documented band, and the band the CLI
prints is what those points score today. Regenerate both with `python benchmarks/projection_fit.py`."""

from __future__ import annotations

import statistics

import pytest

from moebench.projection import resolve_config
from moebench.projection.fit import score, stack, summaries
from moebench.projection.presets import HeldOut, Presets, builtin
from tests.projection.validation_set import load_set

# docs/projection.md, "Against published measurements, held out": the band over every held-out point, and every
# group's median (the targets are 1.2×, 1.6× and 1.3×; the docs say by how much and why the worst and the
# MoE median are missed: Qwen3 on TensorRT-LLM), the MoE group held to what it scores
MEDIAN_BAND = 1.20
WORST_BAND = 1.95
GROUP_MEDIAN_BAND = 1.30
MISSED_GROUPS = {"MoE": 1.50}


@pytest.fixture(scope="module")
def held_out():
    pts, _ = load_set()
    return score([m for m in pts if m.split == "holdout" and m.headline], resolve_config, builtin())


def test_presets_were_fitted_without_the_held_out_points(held_out):
    assert builtin().fitted_on, "presets.yaml names the points it was fitted on"
    assert not set(builtin().fitted_on) & {s.m.id.split("/")[0] for s in held_out}


def test_the_committed_band_is_what_the_presets_score_today(held_out):
    stored = {h.id: h.ratio for h in builtin().held_out}
    assert set(stored) == {s.m.id for s in held_out if s.ratio is not None}
    for s in held_out:
        if s.ratio is not None:
            assert s.ratio == pytest.approx(stored[s.m.id], rel=0.01), f"{s.m.id}: rerun benchmarks/projection_fit.py"


def test_the_committed_ttft_band_is_what_the_presets_score_today():
    """TTFT under a concurrency is never fitted, so every published one is out of sample: presets.yaml keeps them all,
    as the fitted factors project them, for the TTFT band each projection prints beside its throughput band."""
    pts, _ = load_set()
    scored = [s for s in score([m for m in pts if m.metric == "ttft_ms"], resolve_config, builtin()) if s.ratio]
    stored = {h.id: h for h in builtin().ttft}
    assert len(scored) >= 40 and set(stored) == {s.m.id for s in scored}
    for s in scored:
        assert s.ratio == pytest.approx(stored[s.m.id].ratio, rel=0.01), f"{s.m.id}: rerun benchmarks/projection_fit.py"
        assert stored[s.m.id].optimistic == (s.ratio < 1)  # a TTFT projected too short promises more
    band = builtin().band("nvidia", "moe", "fp4", metric="ttft")
    assert band.metric == "ttft" and band.n >= 3 and band.text().startswith("TTFT under load, NVIDIA")


def test_held_out_error_within_the_documented_band(held_out):
    scored = [s for s in held_out if s.ratio is not None]
    assert len(scored) >= 40
    errors = [max(s.ratio, 1 / s.ratio) for s in scored]
    assert statistics.median(errors) <= MEDIAN_BAND
    assert max(errors) <= WORST_BAND
    groups = {g.label: g for g in summaries(scored) if g.n >= 3}
    assert set(MISSED_GROUPS) <= set(groups)
    for g in groups.values():
        assert g.median <= MISSED_GROUPS.get(g.label, GROUP_MEDIAN_BAND), g.row()


def test_held_out_sources_are_scored_without_a_factor_of_their_own(held_out):
    """The fit's per-stack factors (`source.<group>/<engine>`) are nuisance: a held-out source is an unknown new one,
    and no projection a user asks for carries any of them."""
    p = builtin()
    sources = {k for k in p.params if k.startswith("source.")}
    assert sources and not sources & {f"source.{k}" for s in held_out for k in (stack(s.m), s.m.source_group)}
    from moebench.projection import device_for

    dev = device_for("h100_sxm")
    without = type(p)({k: v for k, v in p.params.items() if not k.startswith("source.")})
    assert p.assumptions(dev, "vllm") == without.assumptions(dev, "vllm")


def test_the_band_narrows_to_the_projections_group():
    p = builtin()
    nvidia = p.band("nvidia", "dense", "fp8")
    assert nvidia is not None and nvidia.n >= 3 and "NVIDIA" in nvidia.label
    assert nvidia.text().startswith(nvidia.label + ": held-out median")
    assert p.band("nobody", "moe", "fp8").label == "all hardware and models"  # no group of its own: every point



def test_an_engine_no_held_out_point_ran_is_told_its_band_is_other_engines():
    vllm = HeldOut("x/output_tokens_per_s_per_gpu", "nvidia", "moe", "fp8", "vllm", "output_tokens_per_s_per_gpu",
                   0.9, False, 0.9)
    p = Presets({"source.a/vllm": 0.8, "source.b/sglang": 1.2, "source.c/sglang": 0.9}, held_out=(vllm,))
    assert p.stack_spread("vllm")["held_out_points"] == 1 and "no held-out" not in p.stack_spread("vllm")["text"]
    sglang = p.stack_spread("sglang")
    assert sglang["held_out_points"] == 0 and sglang["text"].endswith("no held-out point ran sglang, so the band above "
                                                                      "is other engines' error")
    assert sglang["cross_validated"] is None  # no left-out points recorded: nothing more to say
    # with the leave-one-source-out points recorded (`--cv --write`), the engine's own out-of-sample error follows
    metric = "output_tokens_per_s_per_gpu"
    left_out = tuple(HeldOut(f"{i}/{metric}", "nvidia", "moe", "fp8", e, metric, r, r > 1, r)
                     for i, (e, r) in enumerate((("sglang", 1.5), ("sglang", 0.5), ("sglang", 1.1), ("vllm", 3.0))))
    cv = Presets(p.params, held_out=(vllm,), cross_validated=left_out).stack_spread("sglang")
    assert cv["cross_validated"]["n"] == 3 and cv["cross_validated"]["median_error"] == pytest.approx(1.5)
    assert cv["cross_validated"]["worst_error"] == pytest.approx(2.0) and cv["cross_validated"]["too_optimistic"] == 2
    assert cv["text"].endswith("; out of sample, sglang: median 1.50×, worst 2.00× over 3 fit points, each projected "
                               "by the fit without its source (2 too optimistic)")
    assert Presets(p.params, held_out=(vllm,), cross_validated=left_out).stack_spread("vllm")["cross_validated"] is None
    shipped = builtin()  # the committed presets say it for every engine none of their held-out points ran
    for engine in ("trt-llm", "vllm", "sglang"):
        told = "no held-out point ran" in shipped.stack_spread(engine)["text"]
        assert told == (not any(h.engine == engine for h in shipped.held_out))


def test_the_cross_validated_points_are_the_fit_points_each_once():
    """`--cv --write` records every fit headline point as the fit without its source projects it; a refit drops
    them. What is committed covers the fit split, each point once, with its own engine and hardware."""
    p = builtin()
    if not p.cross_validated:
        pytest.skip("presets.yaml has no cross_validated points (rerun `projection_fit.py --cv --write`)")
    pts, _ = load_set()
    fit = {m.id: m for m in pts if m.split == "fit" and m.headline}
    ids = [h.id for h in p.cross_validated]
    assert len(ids) == len(set(ids)) and set(ids) <= set(fit)
    assert len(ids) >= 0.95 * len(fit)  # a point the fold's fit no longer fits has no ratio to record
    for h in p.cross_validated:
        m = fit[h.id]
        assert (h.engine, h.vendor, h.kind, h.precision) == (m.engine, m.device.vendor, m.kind, m.precision)
