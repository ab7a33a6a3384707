"""The projection against the published validation set (tests/projection/data/published.yaml, issue #18), by any
grouping: a report over the same measurements benchmarks/projection_fit.py fits and tables.

    PYTHONPATH=$PWD:$PWD/kernels python benchmarks/projection_validation.py [--points | --json] [--preset defaults]

Each published point is turned into measurements by tests/projection/validation_set.py (its conditions, load and
headline metric; or why the model cannot express it) and projected by moebench.projection.fit.score with the
fitted presets (`--preset defaults`: the literature defaults, as before the fit). Prints the error
max(projected/published, published/projected) of each point's headline (its throughput; a latency where only
that is published), median and worst, overall and by split (fit/holdout), source, vendor, dense/MoE and precision,
with how many projections were too optimistic; TPOT and TTFT where published; and the points it cannot express
with the reason. `run(presets, points)` and `summary(scored, key)` are the Python side (leave-one-source-out:
key = the source group).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Callable, Iterable, Optional

from moebench.projection import resolve_config
from moebench.projection.fit import Scored, score
from moebench.projection.presets import Presets, builtin
from tests.projection.published_set import PublishedPoint, load_published
from tests.projection.validation_set import measurements

DEFAULTS = Presets({})  # no vendor named: every device keeps the literature defaults of Assumptions


def groups(s: Scored) -> dict[str, str]:
    """The labels a scored measurement is grouped by."""
    m = s.m
    return {"split": m.split, "source": m.source_group, "vendor": {"amd": "AMD"}.get(m.device.vendor, "NVIDIA"),
            "arch": "MoE" if m.kind == "moe" else "dense", "precision": m.precision, "engine": m.engine}


def run(presets: Optional[Presets] = None, points: Optional[Iterable[PublishedPoint]] = None, *,
        headline_only: bool = True) -> tuple[list[Scored], list[tuple[PublishedPoint, str]]]:
    """Every expressible point's measurements scored with `presets` (default: the fitted ones), and (point, why)
    for the others. `headline_only`: only each point's headline number (its TPOT and TTFT left out)."""
    ms, skipped, by_id = [], [], {}
    for p in points if points is not None else load_published().points:
        got, why = measurements(p)
        if why:
            skipped.append((p, why))
        ms += [m for m in got if m.headline or not headline_only]
        by_id[p.id] = p
    scored = score(ms, resolve_config, presets if presets is not None else builtin())
    skipped += [(by_id[s.m.id.split("/")[0]], "the deployment does not fit its GPUs in the model")
                for s in scored if s.ratio is None and s.m.headline]
    return [s for s in scored if s.ratio is not None], skipped


def _band(scored: list[Scored]) -> str:
    errs = [s.error for s in scored]
    return (f"n {len(errs):3d}  median {statistics.median(errs):5.2f}×  worst {max(errs):5.2f}×  "
            f"too optimistic {sum(s.optimistic for s in scored)}/{len(errs)}")


def summary(scored: list[Scored], key: Callable[[Scored], str] = lambda s: "all") -> dict[str, str]:
    by: dict[str, list[Scored]] = {}
    for s in scored:
        by.setdefault(key(s), []).append(s)
    return {g: _band(ss) for g, ss in sorted(by.items())}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", action="store_true", help="print every point's projected/published")
    ap.add_argument("--json", action="store_true", help="print one JSON document (per point, and the reasons) instead")
    ap.add_argument("--preset", choices=("fitted", "defaults"), default="fitted",
                    help="the fitted presets (moebench/projection/presets.yaml) or the literature defaults")
    args = ap.parse_args(argv)
    scored, skipped = run(builtin() if args.preset == "fitted" else DEFAULTS, headline_only=False)
    head = [s for s in scored if s.m.headline]
    if args.json:
        print(json.dumps({
            "projected": [{"id": s.m.id, "metric": s.m.metric, "headline": s.m.headline, "groups": groups(s),
                           "published": s.m.value, "projected": s.projected, "error": s.error,
                           "too_optimistic": s.optimistic} for s in scored],
            "not_expressible": [{"id": p.id, "reason": why} for p, why in skipped]}, indent=1))
        return 0
    if args.points:
        print(f"{'measurement':72s} {'published':>10s} {'projected':>10s} {'proj/pub':>8s}")
        for s in scored:
            print(f"{s.m.id:72s} {s.m.value:10.1f} {s.projected:10.1f} {s.ratio:7.2f}{'*' if s.m.headline else ' '}")
        print("(* a point's headline number, whose error is summarised)\n")
    print(f"presets: {args.preset}; published points {len({s.m.id.split('/')[0] for s in head}) + len(skipped)}, "
          f"projected {len(head)}, not expressible {len(skipped)}")
    print("error = max(proj/pub, pub/proj) of each point's headline (its throughput; a latency where only that is "
          "published)")
    for title, key in (("all", lambda s: "all"), ("split", lambda s: groups(s)["split"]),
                       ("source", lambda s: groups(s)["source"]), ("vendor", lambda s: groups(s)["vendor"]),
                       ("dense/MoE", lambda s: groups(s)["arch"]), ("precision", lambda s: groups(s)["precision"]),
                       ("split × vendor", lambda s: f"{groups(s)['split']} {groups(s)['vendor']}"),
                       ("split × dense/MoE", lambda s: f"{groups(s)['split']} {groups(s)['arch']}")):
        print(f"\nby {title}:")
        for g, line in summary(head, key).items():
            print(f"  {g:18s} {line}")
    print("\nsecondary metrics (where published, every split):")
    for metric in ("tpot_ms", "ttft_ms"):
        for g, line in summary([s for s in scored if s.m.metric == metric and not s.m.headline]).items():
            print(f"  {metric:18s} {line}")
    print("\nnot expressible:")
    reasons: dict[str, list[str]] = {}
    for p, why in skipped:
        reasons.setdefault(why, []).append(p.id)
    for why, ids in sorted(reasons.items(), key=lambda kv: -len(kv[1])):
        print(f"  {len(ids):3d} × {why}: {', '.join(ids[:4])}{' …' if len(ids) > 4 else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
