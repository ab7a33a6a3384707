"""The projection against the published validation set (tests/projection/data/published.yaml, issue #18).

    PYTHONPATH=$PWD:$PWD/kernels python benchmarks/projection_validation.py [--points | --json]

Projects every point the current model can express under the point's published (or recorded) conditions and
prints predicted/published per point (--points), then the error max(pred/pub, pub/pred) of each point's headline
throughput (a latency where only that is published), median and worst, overall and by split (fit/holdout), source, vendor, dense/MoE and precision, with
how many predictions were too optimistic; TPOT and TTFT where published. Points it cannot express are listed
with the reason (the list is what the model still lacks).

How each load is expressed with today's API (moebench.projection):
- concurrency C: continuous serving at batch C on the published layout (evaluate(serving="continuous"));
- batch B (a static latency benchmark): one batch prefilled, then decoded (serving="static");
- offline (max throughput): the best of the power-of-two batches whose weights + KV fit (project(only=layout));
  there is no max-throughput mode, so this is what the model says a saturated instance does;
- a decode pool at B per GPU, or at an interactivity target: published.py's anchors do the same.
Every point uses the default Assumptions (one efficiency pair for all vendors, no overlap, bf16 KV where the
source does not say); `evaluate_point(point, assumptions)` and `run(assumptions, points)` take others, for
fitting; `summary(results, key)` gives the bands by any grouping (leave-one-source-out: key = the source group).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass, field
from typing import Callable, Optional

from moebench.errors import MoebenchError
from moebench.projection import (Assumptions, Layout, ServingScenario, device_for, evaluate, project, resolve_config,
                                 step)
from moebench.projection.device import Device
from tests.projection.published import H800
from tests.projection.published_set import PublishedPoint, load_published

# the metric that decides a point's error, in order of preference; the others are compared where published
HEADLINE = ("total_tok_s_per_gpu", "output_tok_s", "decode_tok_s_per_gpu", "output_tok_s_per_gpu", "request_latency_s")
SECONDARY = ("tpot_ms", "ttft_ms", "request_latency_s")
TIMES = ("tpot_ms", "ttft_ms", "request_latency_s")  # lower is better: a prediction below the published is optimistic
AMD = ("mi300x", "mi325x", "mi355x")
OVERFLOW = "KV overflow: weights + KV of the batch exceed the memory share"


class NotExpressible(Exception):
    """The current projection cannot express this point's conditions (the message says which)."""


@dataclass(frozen=True)
class Result:
    point: PublishedPoint
    predicted: dict[str, float]  # metric -> projected, for the metrics the point publishes
    headline: str
    how: str  # how the load was expressed
    groups: dict[str, str] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """How optimistic the headline is: predicted/published for a throughput, published/predicted for a time."""
        r = self.predicted[self.headline] / self.point.metric(self.headline)
        return 1 / r if self.headline in TIMES else r

    @property
    def error(self) -> float:
        return max(self.ratio, 1 / self.ratio)


def _device(hid: str) -> Device:
    return H800 if hid == H800.id else device_for(hid)


def _layout(p: PublishedPoint, moe: bool) -> Layout:
    n, lay = p.n_gpus, p.layout
    if lay.pp > 1:
        return Layout(n, n // lay.pp, 1, lay.pp)
    if moe and lay.ep > 1:
        return Layout(n, lay.tp, n)
    if lay.tp != n:
        raise NotExpressible(f"layout tp{lay.tp} on {n} GPUs without expert parallelism (only TP over all GPUs)")
    return Layout(n, n, 1)


def evaluate_point(p: PublishedPoint, base: Assumptions = Assumptions()) -> Result:
    """Project one published point; NotExpressible says why the current model cannot."""
    if p.unsupported and p.hardware != H800.id:  # H800: published.py's device stands in for the catalog entry
        raise NotExpressible(p.unsupported)
    if p.input_tokens is None or p.output_tokens is None:
        raise NotExpressible("input/output lengths not published")
    if p.precision.weights == "not published":
        raise NotExpressible("weight precision not published")
    headline = next((m for m in HEADLINE if p.metric(m) is not None), None)
    if headline is None:
        raise NotExpressible("no throughput metric published")
    if p.layout.disaggregated and headline != "decode_tok_s_per_gpu":
        raise NotExpressible("disaggregated prefill/decode pools (their split is not published; no pool model)")
    cfg, dev = resolve_config(p.model), _device(p.hardware)
    try:
        lay = _layout(p, cfg.is_moe)
        kv = p.precision.kv.split()[0]  # "fp8 (…)" where published; else moebench's default (bf16)
        sc = ServingScenario(p.input_tokens, p.output_tokens, weight_dtype=p.precision.weights,
                      **({"kv_dtype": kv} if kv in ("bf16", "fp8") else {}))
    except MoebenchError as e:
        raise NotExpressible(str(e)) from e
    kind, value, n = p.load.kind, p.load.value, lay.n_gpus

    if headline == "decode_tok_s_per_gpu":  # a decode pool, prefill elsewhere: its step is the TPOT
        a = base.replace(serving="static")
        if kind == "batch" and p.load.per == "gpu":
            per_gpu = int(value)
        elif kind == "interactivity":  # the largest batch whose step still meets the interactivity
            lo, hi = 1, 4096
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if step(cfg, lay, dev, sc, a, "decode", mid * n).time_ms <= 1000 / value:
                    lo = mid
                else:
                    hi = mid - 1
            per_gpu = lo
        else:
            raise NotExpressible(f"decode pool under a {kind} load")
        pt = evaluate(cfg, lay, dev, sc, a, per_gpu * n)
        pred = {"decode_tok_s_per_gpu": pt.decode_tokens_per_s_per_gpu, "tpot_ms": pt.decode.time_ms}
        how = f"decode pool, static, {per_gpu}/GPU"
    elif kind == "concurrency" or (kind == "batch" and p.load.per == "instance"):
        b = int(value)
        serving = "continuous" if kind == "concurrency" else "static"
        pt = evaluate(cfg, lay, dev, sc, base.replace(serving=serving), b)
        pred = _rates(pt, p)
        # projected anyway, as docs/projection.md's anchors are: the deployment ran it (fp8 KV, queueing)
        how = f"{serving}, batch {b}" + ("" if pt.memory.fits else f"; {OVERFLOW}")
    elif kind == "offline":
        proj = project(cfg, dev, sc, base.replace(serving="continuous"), only=[lay])
        if not proj.points:
            raise NotExpressible(f"does not fit {n}×{dev.id} at any batch")
        pt = max(proj.points, key=lambda q: q.rates["output"])
        pred = _rates(pt, p)
        how = f"offline ≈ best fitting batch ({pt.batch})"
    else:
        raise NotExpressible(f"{kind} load (no request-rate model)")
    pred = {k: v for k, v in pred.items() if p.metric(k) is not None}
    groups = {"split": p.split, "source": p.source_group,
              "vendor": "AMD" if p.hardware in AMD else "NVIDIA", "arch": "MoE" if cfg.is_moe else "dense",
              "precision": p.precision.weights}
    return Result(p, pred, headline, how, groups)


def _rates(pt, p: PublishedPoint) -> dict[str, float]:
    o = p.output_tokens
    return {"total_tok_s_per_gpu": pt.per_gpu("total"), "output_tok_s_per_gpu": pt.per_gpu("output"),
            "output_tok_s": pt.rates["output"], "tpot_ms": pt.tpot_ms, "ttft_ms": pt.ttft_ms,
            "request_latency_s": (pt.ttft_ms + (o - 1) * pt.tpot_ms) / 1e3}


def run(base: Assumptions = Assumptions(), points=None) -> tuple[list[Result], list[tuple[PublishedPoint, str]]]:
    results, skipped = [], []
    for p in points if points is not None else load_published().points:
        try:
            results.append(evaluate_point(p, base))
        except NotExpressible as e:
            skipped.append((p, str(e)))
    return results, skipped


def _band(errs: list[float], ratios: list[float]) -> str:
    over = sum(r > 1 for r in ratios)
    return (f"n {len(errs):3d}  median {statistics.median(errs):5.2f}×  worst {max(errs):5.2f}×  "
            f"too optimistic {over}/{len(errs)}")


def summary(results: list[Result], key: Callable[[Result], str] = lambda r: "all") -> dict[str, str]:
    by: dict[str, list[Result]] = {}
    for r in results:
        by.setdefault(key(r), []).append(r)
    return {g: _band([r.error for r in rs], [r.ratio for r in rs]) for g, rs in sorted(by.items())}


def _secondary(results: list[Result], metric: str) -> Optional[str]:
    pairs = [(r.predicted[metric], r.point.metric(metric)) for r in results if metric in r.predicted]
    if not pairs:
        return None
    ratios = [a / b for a, b in pairs]
    errs = [max(x, 1 / x) for x in ratios]
    return f"{metric:18s} " + _band(errs, ratios).replace("too optimistic", "predicted above published")


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", action="store_true", help="print every point's predicted/published")
    ap.add_argument("--json", action="store_true", help="print one JSON document (per point, and the reasons) instead")
    args = ap.parse_args(argv)
    results, skipped = run()
    if args.json:
        print(json.dumps({
            "projected": [{"id": r.point.id, "headline": r.headline, "how": r.how, "groups": r.groups,
                           "error": r.error, "optimism": r.ratio,
                           "metrics": {m: {"published": r.point.metric(m), "predicted": v} for m, v in r.predicted.items()}}
                          for r in results],
            "not_expressible": [{"id": p.id, "reason": why} for p, why in skipped]}, indent=1))
        return 0
    if args.points:
        print(f"{'point':52s} {'metric':20s} {'published':>10s} {'predicted':>10s} {'pred/pub':>8s}  how")
        for r in results:
            for m, v in r.predicted.items():
                pub = r.point.metric(m)
                mark = "*" if m == r.headline else " "
                print(f"{r.point.id:52s} {m:20s} {pub:10.1f} {v:10.1f} {v / pub:7.2f}{mark}  {r.how}")
        print("(* the headline metric whose error is summarised)\n")
    print(f"published points {len(results) + len(skipped)}, projected {len(results)}, not expressible {len(skipped)}")
    print("error = max(pred/pub, pub/pred) of each point's headline metric (its throughput; a latency where only that is published)")
    over = [r.point.id for r in results if OVERFLOW in r.how]
    if over:
        print(f"projected although the batch does not fit ({OVERFLOW}): {', '.join(over)}")
    for title, key in (("all", lambda r: "all"), ("split", lambda r: r.groups["split"]),
                       ("source", lambda r: r.groups["source"]), ("vendor", lambda r: r.groups["vendor"]),
                       ("dense/MoE", lambda r: r.groups["arch"]), ("precision", lambda r: r.groups["precision"]),
                       ("split × vendor", lambda r: f"{r.groups['split']} {r.groups['vendor']}"),
                       ("split × dense/MoE", lambda r: f"{r.groups['split']} {r.groups['arch']}")):
        print(f"\nby {title}:")
        for g, line in summary(results, key).items():
            print(f"  {g:18s} {line}")
    print("\nsecondary metrics (where published):")
    for m in SECONDARY:
        line = _secondary(results, m)
        if line:
            print("  " + line)
    print("\nnot expressible:")
    reasons: dict[str, list[str]] = {}
    for p, why in skipped:
        reasons.setdefault(why, []).append(p.id)
    for why, ids in sorted(reasons.items(), key=lambda kv: -len(kv[1])):
        print(f"  {len(ids):3d} × {why}: {', '.join(ids[:4])}{' …' if len(ids) > 4 else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
