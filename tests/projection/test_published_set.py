"""The published validation set is what issue #18 asks for: enough points from enough independent sources, every
field filled, and model/hardware ids the projection can resolve (or a recorded reason why not)."""

from __future__ import annotations

import pytest
import yaml

from moebench.catalog import get_hardware
from moebench.errors import MoebenchError
from moebench.projection import resolve_config
from tests.projection.published_set import DATA, PublishedSet, load_published


def test_at_least_40_points_from_5_independent_publishers_with_both_splits():
    ps = load_published()
    assert len(ps.points) >= 40
    assert len({ps.source_groups[p.source_group].publisher for p in ps.points}) >= 5
    assert {p.split for p in ps.points} == {"fit", "holdout"}


def test_every_field_is_present_in_the_file():
    raw = yaml.safe_load(DATA.read_text())
    required = {n for n, f in PublishedSet.model_fields["points"].annotation.__args__[0].model_fields.items()
                if f.is_required()}
    for pt in raw["points"]:
        missing = required - pt.keys()
        assert not missing, f"{pt.get('id')}: missing {sorted(missing)}"


def test_ids_resolve_in_the_catalog_or_say_why_not():
    for p in load_published().points:
        if p.unsupported:
            continue
        try:
            resolve_config(p.model)
            get_hardware(p.hardware)
        except MoebenchError as e:
            pytest.fail(f"{p.id}: {e} (mark it `unsupported: <reason>` if the catalog cannot hold it)")


def test_a_point_whose_split_disagrees_with_its_source_is_rejected():
    raw = yaml.safe_load(DATA.read_text())
    raw["points"][0]["split"] = "holdout" if raw["points"][0]["split"] == "fit" else "fit"
    with pytest.raises(ValueError, match="split"):
        PublishedSet.model_validate(raw)


def test_the_existing_anchors_are_points_with_the_same_numbers():
    from tests.projection.published import ANCHORS

    published = {(p.hardware, p.model, p.metric(m)) for p in load_published().points for m in
                 ("total_tok_s_per_gpu", "decode_tok_s_per_gpu")}
    for an in ANCHORS:
        value = an.total_tokens_per_s_per_gpu or an.decode_tokens_per_s_per_gpu
        assert (an.hardware, an.model, value) in published, an.label


def test_the_validation_script_projects_each_point_or_says_why_not():
    from benchmarks.projection_validation import run, summary

    scored, skipped = run()
    assert len({s.m.id.split("/")[0] for s in scored}) + len(skipped) == len(load_published().points)
    assert len(scored) >= 40 and all(why for _, why in skipped)
    assert all(s.m.headline and s.error >= 1 for s in scored)
    assert set(summary(scored, lambda s: s.m.split)) == {"fit", "holdout"}


def test_a_length_distribution_must_agree_with_the_points_mean_lengths():
    raw = yaml.safe_load(DATA.read_text())
    pt = next(p for p in raw["points"] if p.get("lengths"))
    assert pt["input_tokens"] == round(pt["lengths"]["prompt"])
    pt["input_tokens"] += 5
    with pytest.raises(ValueError, match="means"):
        PublishedSet.model_validate(raw)


def test_a_system_of_several_instances_is_scored_per_gpu_of_all_of_them():
    from tests.projection.validation_set import measurements

    p = next(p for p in load_published().points if p.id == "mlperf51-deepseek-r1-gb200_nvl72x72-offline")
    assert (p.n_gpus, p.instances) == (8, 9)  # 72 GPUs, 9 instances of DP8-attention/EP8
    (m,), why = measurements(p)
    assert why is None and m.layout.n_gpus == 8 and m.lengths is not None and m.max_seqs == 512
    assert m.value == pytest.approx(p.metric("output_tok_s") / 72)


def test_a_speculative_run_without_its_acceptance_is_not_projected():
    """InferenceX's DeepSeek-R1 H200 row at concurrency 256 ran MTP: its tokens per step are unknown, so no projection
    is scored against it; the same point without the flag would be."""
    from tests.projection.validation_set import measurements

    p = next(p for p in load_published().points if p.id == "ix-dsr1-h200_sxm-fp8-trt-8k1k")
    ms, why = measurements(p)
    assert ms == [] and why.startswith("speculative decoding (MTP")
    plain = p.model_copy(update={"engine": p.engine.model_copy(update={"speculative": None})})
    ms, why = measurements(plain)
    assert why is None and ms and ms[0].kv_dtype == "fp8" and (ms[0].layout.ep, ms[0].layout.n_gpus) == (8, 8)


def test_a_clients_random_lengths_must_be_its_uniform_draws():
    """InferenceX's client draws each length from [int(0.8·L), L]: a "1k/1k" row averages 921.5/921.5 tokens, and
    moments that are not that distribution's are rejected."""
    from moebench.projection.scenario import LengthMoments

    u = LengthMoments.uniform(1024, 1024, 0.8)
    assert (u.prompt, u.prompt_sq) == (921.5, pytest.approx(sum(x * x for x in range(819, 1025)) / 206))
    raw = yaml.safe_load(DATA.read_text())
    pt = next(p for p in raw["points"] if (p.get("lengths") or {}).get("range_ratio"))
    p = next(q for q in load_published().points if q.id == pt["id"])
    assert p.nominal_lengths == tuple(pt["lengths"]["nominal"]) != (p.input_tokens, p.output_tokens)
    pt["lengths"]["prompt_sq"] *= 1.01
    with pytest.raises(ValueError, match="range ratio"):
        PublishedSet.model_validate(raw)


def test_a_runs_own_mean_output_scales_the_datasets_outputs():
    """MLPerf's DeepSeek-R1 runs generate ~3,750 tokens a sample (their summary: Tokens/s ÷ Samples/s), not the
    dataset's 4,043: the projection takes the run's mean, the dataset's spread scaled to it, prompts untouched; a
    point whose output_tokens is the dataset's mean is rejected."""
    from tests.projection.validation_set import measurements

    raw = yaml.safe_load(DATA.read_text())
    pt = next(p for p in raw["points"] if p["id"] == "mlperf60-deepseek-r1-b200x8-dell-offline")
    ln = pt["lengths"]
    assert ln["generated"] == pytest.approx(58235.4 / 15.5349, abs=0.1) and "mlperf_log_summary" in ln["generated_from"]
    p = next(q for q in load_published().points if q.id == pt["id"])
    (m,), why = measurements(p)
    s = ln["generated"] / ln["output"]
    assert why is None and m.lengths.output == pytest.approx(ln["generated"]) and m.output == round(ln["generated"])
    assert (m.lengths.prompt, m.lengths.prompt_sq) == (ln["prompt"], ln["prompt_sq"])
    assert m.lengths.output_sq == pytest.approx(ln["output_sq"] * s * s)
    assert m.lengths.prompt_output == pytest.approx(ln["prompt_output"] * s)
    pt["output_tokens"] = round(ln["output"])
    with pytest.raises(ValueError, match="means"):
        PublishedSet.model_validate(raw)
    pt["output_tokens"], ln["generated_from"] = round(ln["generated"]), None
    with pytest.raises(ValueError, match="go together"):
        PublishedSet.model_validate(raw)


def test_trtllm_bench_runs_are_bounded_by_their_kv_cache_not_the_presets_cap():
    """trtllm-bench sizes max_batch_size from its own KV estimate (capped at 4,096): Qwen3-30B-A3B on one B200 at
    1k/1k runs as many sequences as its KV cache holds, more than the engine preset's fitted cap; the v0.14 page,
    built another way, keeps the preset's cap."""
    from moebench.projection import resolve_config
    from moebench.projection.fit import conditions
    from moebench.projection.load import kv_capacity, offline
    from moebench.projection.presets import builtin
    from tests.projection.validation_set import measurements

    pts = {p.id: p for p in load_published().points}
    assert pts["trt-qwen3-30b-b200-tp1-fp4-1000-1000"].engine.max_seqs == 4096
    assert all(p.engine.max_seqs is None for p in pts.values() if p.source_group == "trtllm-perf-v0.14")
    (m,), why = measurements(pts["trt-qwen3-30b-b200-tp1-fp4-1000-1000"])
    assert why is None and m.max_seqs == 4096
    cfg, presets = resolve_config(m.model), builtin()
    a, sc = conditions(m, presets)
    cap = kv_capacity(cfg, m.layout, m.device, sc, a)
    preset_cap = round(presets.params["trt-llm.max_seqs"])
    assert preset_cap < cap < 4096  # the KV cache binds, above what the preset would have allowed
    assert offline(cfg, m.layout, m.device, sc, a).point.batch == cap
