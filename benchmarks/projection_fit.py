"""Fit the projection's efficiency presets on the `fit` points of the published validation set and report the error
on its `holdout` points; write moebench/projection/presets.yaml and the validation table of docs/projection.md.

    python benchmarks/projection_fit.py            # fit, score, write both files
    python benchmarks/projection_fit.py --check    # score with the committed presets; write nothing
    python benchmarks/projection_fit.py --table    # the same, and rewrite only docs/projection.md's table
    python benchmarks/projection_fit.py --cv       # leave-one-source-out on the fit split (chooses model variants)
    python benchmarks/projection_fit.py --cv --write  # the same, its left-out points recorded in presets.yaml

Run from the repository root with the repository on PYTHONPATH (tests/ holds the data and its loader).
"""

from __future__ import annotations

import argparse
import datetime
import math
import statistics
import sys
from pathlib import Path
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "kernels")]

from moebench.projection import resolve_config  # noqa: E402
from moebench.projection.fit import SOURCE, Measurement, Param, Scored, fit, score, stack, summaries  # noqa: E402
from moebench.projection.presets import HeldOut, Presets, builtin, from_mapping  # noqa: E402
from tests.projection.validation_set import load_set  # noqa: E402

PRESETS = ROOT / "moebench" / "projection" / "presets.yaml"
DOC = ROOT / "docs" / "projection.md"
BEGIN, END = "<!-- validation table: benchmarks/projection_fit.py -->", "<!-- end of validation table -->"

# The factors and where the fit may move them. Compute counts from each GPU's measured matmul ceiling (never above
# it; prior 0.9 of it: wave quantization is modelled apart), memory from the HBM peak (prior 0.80, the literature
# default of docs/projection.md); every other factor starts at "no effect".
PARAMS = {
    "nvidia.compute": Param(0.90, 0.2, 1.0), "nvidia.memory": Param(0.80, 0.2, 1.0),
    "amd.compute": Param(0.90, 0.1, 1.0), "amd.memory": Param(0.80, 0.1, 1.0),
    "nvidia.alpha": Param(1.0, 0.3, 10.0), "amd.alpha": Param(1.0, 0.3, 10.0),
    "nvidia.launch": Param(1.0, 0.3, 10.0), "amd.launch": Param(1.0, 0.3, 10.0),
    # the collectives' bandwidth per vendor (the link efficiency 0.8 times this, at most 1): NCCL over NVSwitch and
    # RCCL over the xGMI mesh reach different shares of the links at the per-layer messages of serving
    "nvidia.link": Param(1.0, 0.1, 1.25), "amd.link": Param(1.0, 0.1, 1.25),
    # the engines' own kernels (GEMM, attention, MoE) on the vendor's compute share; the product stays ≤ the ceiling
    "vllm.compute": Param(1.0, 0.3, 1.5), "sglang.compute": Param(1.0, 0.3, 1.5), "trt-llm.compute": Param(1.0, 0.3, 1.5),
    "vllm.memory": Param(1.0, 0.3, 1.25), "sglang.memory": Param(1.0, 0.3, 1.25), "trt-llm.memory": Param(1.0, 0.3, 1.25),
    "vllm.step_ms": Param(1.0, 0.01, 30.0), "sglang.step_ms": Param(1.0, 0.01, 30.0), "trt-llm.step_ms": Param(1.0, 0.01, 30.0),
    "hopper.fp8": Param(1.0, 0.3, 1.0), "blackwell.fp4": Param(1.0, 0.2, 1.0), "cdna3.fp8": Param(1.0, 0.2, 1.0),
    "cdna4.fp4": Param(1.0, 0.1, 1.0), "hopper.weight_only": Param(1.0, 0.3, 1.0), "cdna3.weight_only": Param(1.0, 0.2, 1.0),
    "moe.experts": Param(1.0, 0.2, 1.0), "prefill.attn": Param(1.0, 0.2, 1.0),
    "ep.imbalance": Param(1.0, 1.0, 3.0), "ep.overlap": Param(1.0, 0.0 + 1e-3, 1.0), "decode.attn": Param(1.0, 0.2, 1.0),
    # engines' caps on sequences in flight: vLLM's max_num_seqs and TensorRT-LLM's max_batch_size default to a
    # few hundred to a few thousand depending on version and GPU; fitted, starting from 1,024
    "vllm.max_seqs": Param(1024.0, 64.0, 16384.0), "sglang.max_seqs": Param(1024.0, 64.0, 16384.0),
    "trt-llm.max_seqs": Param(1024.0, 64.0, 16384.0),
    # host time per op of an eager run (no CUDA/HIP graphs): an op is 1–3 kernels, each a PyTorch dispatch and a launch
    "eager.host_us": Param(60.0, 1.0, 1000.0),
    "vllm.seq_us": Param(1.0, 0.01, 100.0), "sglang.seq_us": Param(1.0, 0.01, 100.0), "trt-llm.seq_us": Param(1.0, 0.01, 100.0),
}

OFFSETS = ("stack", "source", "none")
HEADER = ("# Fitted efficiency presets of the projection (moebench/projection/presets.py). Written by\n"
          "# `python benchmarks/projection_fit.py` from the fit points of the published validation set; the\n"
          "# held-out points give the error band every projection prints, the published TTFTs under a\n"
          "# concurrency (never fitted) the TTFT band beside it; `--cv --write` adds each fit point as the fit\n"
          "# without its source projects it (a refit drops them). Regenerate; do not edit by hand.\n")


def params_for(fit_pts: list[Measurement], offsets: str = "stack") -> dict[str, Param]:
    """PARAMS, and a factor of its own (prior 1, within 0.2–5×) on every speed each fit stack published
    (`offsets="stack"`: who ran it with which engine, anchored among the stacks of each engine) or each fit source
    (`"source"`: anchored among all sources), or none. Stacks differ as wholes (engine versions, tuning, how they
    measured), and a factor of their own keeps one stack's departure out of the shared factors; anchored to a
    point-weighted geometric mean of 1 (fit.fit); projections and held-out points never use them."""
    key = {"stack": stack, "source": lambda m: m.source_group}.get(offsets)
    if key is None:
        return dict(PARAMS)
    return {**PARAMS, **{f"{SOURCE}{g}": Param(1.0, 0.2, 5.0) for g in sorted({key(m) for m in fit_pts})}}


def _is_headline(s: Scored) -> bool:
    return s.m.headline


def table(title: str, scored: list[Scored]) -> list[str]:
    rows = [f"**{title}**", "", "| group | points | median error | worst error | too optimistic | median ratio |",
            "|---|---:|---:|---:|---:|---:|"]
    return rows + [s.row() for s in summaries(scored)] + [""]


def point_rows(scored: list[Scored]) -> list[str]:
    rows = ["| point | metric | split | published | projected | projected / published |", "|---|---|---|---:|---:|---:|"]
    for s in scored:
        proj = "does not fit" if s.projected is None else f"{s.projected:,.1f}"
        ratio = "—" if s.ratio is None else f"{s.ratio:.2f}"
        rows.append(f"| {s.m.id.split('/')[0]} | {s.m.metric} | {s.m.split} | {s.m.value:,.1f} | {proj} | {ratio} |")
    return rows


def report(presets: Presets, pts: list[Measurement], skipped: list[tuple[str, str]]) -> tuple[list[Scored], list[str]]:
    scored = score(pts, resolve_config, presets)
    head = [s for s in scored if _is_headline(s)]
    tpot = [s for s in scored if s.m.metric == "tpot_ms"]
    ttft = [s for s in scored if s.m.metric == "ttft_ms"]
    lines = [BEGIN, ""]
    lines += table("Held-out: each point's throughput (a request latency where only that is published); the band "
                   "every projection prints",
                   [s for s in head if s.m.split == "holdout"])
    lines += table("Fit points (what the factors were fitted on; not an error estimate)",
                   [s for s in head if s.m.split == "fit"])
    lines += table("TPOT under load (all splits)", tpot)
    lines += table("TTFT under a concurrency (all splits; not fitted)", ttft)
    lines += ["Error = max(projected/published, published/projected); median ratio > 1: projections too high a "
              "number. Points the model cannot express:", ""]
    lines += [f"- {pid}: {why}" for pid, why in skipped] + ["", "<details><summary>every point</summary>", ""]
    lines += point_rows(scored) + ["", "</details>", "", END]
    return scored, lines


def cross_validate(fit_pts: list[Measurement], offsets: str = "stack") -> tuple[list[str], list[Scored]]:
    """Leave-one-source-out over the fit split (what chooses between model variants without the held-out points):
    fit on the other sources, score the left-out source's headline points; a point that no longer fits counts 5×.
    The table's rows, and every left-out point as scored by the fit that did not see its source."""
    rows = ["| left-out fit source | points | median error | worst error | median speed ratio |",
            "|---|---:|---:|---:|---:|"]
    every: list[float] = []
    speeds: list[float] = []
    out: list[Scored] = []
    for g in sorted({m.source_group for m in fit_pts}):
        train = [m for m in fit_pts if m.source_group != g]
        presets = Presets(fit(train, resolve_config, params_for(train, offsets)))
        scored = score([m for m in fit_pts if m.source_group == g and m.headline], resolve_config, presets)
        out += scored
        errs = [5.0 if s.ratio is None else s.error for s in scored]
        every += errs
        # projected / published speed (a throughput's ratio, a time's inverse: > 1 too optimistic), fitting points
        sp = [math.log(s.optimism) for s in scored if s.optimism]
        speeds += sp
        rows.append(f"| {g} | {len(errs)} | {statistics.median(errs):.2f}× | {max(errs):.2f}× | "
                    f"{math.exp(statistics.median(sp)) if sp else math.nan:.2f} |")
    rows.append(f"| all | {len(every)} | {statistics.median(every):.2f}× | {max(every):.2f}× | "
                f"{math.exp(statistics.median(speeds)):.2f} |")
    rows.append(f"\nmean |log error| {statistics.fmean(math.log(e) for e in every):.3f} over {len(every)} points "
                "(a point that no longer fits counts 5×)")
    return rows, out


def write_cross_validated(scored: list[Scored]) -> None:
    """presets.yaml's `cross_validated`: each fit point as the fit without its source projects it, the out-of-sample
    error of an engine no held-out point ran (SGLang). A refit rewrites presets.yaml without it: rerun `--cv --write`."""
    doc = yaml.safe_load(PRESETS.read_text())
    doc["cross_validated"] = [_rounded(s.held_out()) for s in scored if s.ratio is not None]
    PRESETS.write_text(HEADER + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120))
    from_mapping(yaml.safe_load(PRESETS.read_text()))


def _rounded(h: HeldOut) -> dict[str, object]:
    return {**h.__dict__, "ratio": float(f"{h.ratio:.4g}"), "speed": float(f"{h.speed:.4g}")}


def write_doc(lines: list[str]) -> None:
    text = DOC.read_text()
    block = "\n".join(lines)
    if BEGIN in text:
        pre, rest = text.split(BEGIN, 1)
        text = pre + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="score the committed presets; write nothing")
    ap.add_argument("--table", action="store_true", help="score the committed presets; rewrite only the docs table")
    ap.add_argument("--cv", action="store_true", help="leave-one-source-out cross-validation on the fit split "
                    "(one fit per fit source); writes nothing unless --write")
    ap.add_argument("--write", action="store_true", help="with --cv: record each left-out point in presets.yaml "
                    "(`cross_validated`: the out-of-sample error of engines no held-out point ran)")
    ap.add_argument("--offsets", choices=OFFSETS, default="stack", help="a nuisance factor per fit stack (source and "
                    "engine; the model), per fit source, or none (what --cv compares)")
    args = ap.parse_args()
    pts, skipped = load_set()
    fit_pts = [m for m in pts if m.split == "fit" and m.metric != "ttft_ms"]  # TTFT is reported, not fitted
    print(f"{len(pts)} published numbers ({len(fit_pts)} fit), {len(skipped)} points not expressible", file=sys.stderr)
    if args.write and not args.cv:
        ap.error("--write goes with --cv")
    if args.cv:
        rows, scored = cross_validate(fit_pts, args.offsets)
        print("\n".join(rows))
        if args.write:
            write_cross_validated(scored)
        return 0
    if args.check or args.table:
        presets = builtin()
    else:
        params = fit(fit_pts, resolve_config, params_for(fit_pts, args.offsets),
                     log=lambda s: print(s, file=sys.stderr))
        # scored as written: the band every projection prints is what the rounded factors score
        presets = Presets({k: float(f"{v:.4g}") for k, v in params.items()})
    scored, lines = report(presets, pts, skipped)
    print("\n".join(lines))
    if args.table:
        write_doc(lines)
    if args.check or args.table:
        return 0
    held = [s.held_out() for s in scored if _is_headline(s) and s.m.split == "holdout" and s.ratio is not None]
    ttft = [s.held_out() for s in scored if s.m.metric == "ttft_ms" and s.ratio is not None]  # never fitted
    doc = {
        "fitted": datetime.date.today().isoformat(),
        "data": "tests/projection/data/published.yaml",
        "params": dict(presets.params),
        "fitted_on": sorted({m.id.split("/")[0] for m in fit_pts}),
        "held_out": [_rounded(h) for h in held],
        "ttft_under_load": [_rounded(h) for h in ttft],
    }
    PRESETS.write_text(HEADER + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120))
    from_mapping(yaml.safe_load(PRESETS.read_text()))  # what was written reads back
    write_doc(lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
