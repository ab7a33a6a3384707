"""The results JSON `profile` section (`summarize`) and the "where the time goes" view (`render_summary`).

`summarize` is pure: it takes what every rank recorded (gathered to rank 0) and the clock offsets, and returns
per-rank, per-layer tables, expert load, the most imbalanced layer, the straggler rank and a one-line
attribution, so tests can drive it with synthetic timelines.
"""

from __future__ import annotations

from pathlib import Path
from statistics import median
from typing import Any, Optional, Sequence

from moebench.profile.analysis import match_collectives, rank_tables
from moebench.profile.clock import end_time_check
from moebench.profile.recorder import Step
from moebench.routing import balancedness

# Below this share of step time, waiting is not worth explaining.
WAIT_NOTABLE = 0.05
# Expert-load balancedness (mean/max per EP rank) below this counts as imbalanced.
IMBALANCED = 0.75
# A rank is the straggler only if the wait it caused (others waiting for its late arrival) is at least this share
# of all caused wait and at least twice the next rank's; otherwise nobody dominates (with 4 ranks time-sliced on
# 2 cores, who arrives last is mostly the OS scheduler, and naming one rank would blame noise).
DOMINANT_SHARE = 0.5
# The order phases are shown in (moebench.profile.regions): a layer's path, then what follows the last layer.
PHASES = ("attn", "router", "dispatch", "experts", "combine", "mlp", "allreduce", "lm_head")


def expert_load(ranks: Sequence[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """Tokens per expert per layer (summed over the ranks' distinct tokens and the timed steps), per EP rank, and
    balancedness.

    Each rank dict may carry `load_total` ([L][E] tokens routed by that rank over its timed steps), `token_slice`
    (the batch slice it routes: the ranks of a tensor-parallel group route the same tokens, counted once; absent =
    its own) and `shard` ((first expert, n local experts) of its expert-parallel shard; absent = holds every
    expert)."""
    by_slice: dict[Any, Any] = {}
    for rk in ranks:
        if rk.get("load_total"):
            by_slice.setdefault(rk.get("token_slice", ("rank", rk.get("rank"))), rk["load_total"])
    mats = list(by_slice.values())
    if not mats:
        return None
    total = [[sum(m[li][e] for m in mats) for e in range(len(mats[0][li]))] for li in range(len(mats[0]))]
    n_e = len(total[0])
    n_steps = max(sum(1 for st in rk["steps"] if st.timed) for rk in ranks) or 1
    shards = sorted({tuple(rk["shard"]) for rk in ranks if rk.get("shard")}) or [(0, n_e)]
    if sum(n for _, n in shards) != n_e:  # shards that do not tile the experts: report one pool
        shards = [(0, n_e)]
    holders = {s: [rk["rank"] for rk in ranks if tuple(rk.get("shard") or (0, n_e)) == s] for s in shards}
    layers = []
    for li, row in enumerate(total):
        if not any(row):
            continue  # a dense layer (no router)
        ep = [sum(row[a:a + n]) for a, n in shards]
        hottest = max(range(n_e), key=row.__getitem__)
        layers.append({
            "layer": li,
            "tokens_per_expert": row,
            "tokens_per_expert_per_step": [c / n_steps for c in row],
            "tokens_per_ep_rank": ep,
            "balancedness": balancedness(row),
            "ep_balancedness": balancedness(ep),
            "hottest_expert": hottest,
            "hottest_expert_ranks": next(holders[s] for s in shards if s[0] <= hottest < s[0] + s[1]),
        })
    if not layers:
        return None
    worst = min(layers, key=lambda x: (x["balancedness"], x["layer"]))
    return {
        "ep_shards": [{"first_expert": a, "n_experts": n, "ranks": holders[(a, n)]} for a, n in shards],
        "n_steps": n_steps,
        "layers": layers,
        "most_imbalanced_layer": {k: worst[k] for k in ("layer", "balancedness", "ep_balancedness", "hottest_expert",
                                                        "hottest_expert_ranks")},
        "note": "tokens summed over ranks and timed steps (prefill and decode); balancedness = mean / max",
    }


def _attribute(stage_rows: list[dict[str, Any]], load: Optional[dict[str, Any]], has_comm: bool) -> dict[str, Any]:
    step = sum(r["step_ms"] for r in stage_rows)
    wait = sum(r["wait_ms"] for r in stage_rows)
    share = wait / step if step else 0.0
    caused = {r["rank"]: r["caused_wait_ms"] for r in stage_rows}
    total = sum(caused.values())
    worst = (load or {}).get("most_imbalanced_layer")

    def dominates(group: set[int]) -> bool:
        """The group's late arrivals cause most of the wait: >= DOMINANT_SHARE of it and >= 2x any other rank's."""
        mine = sum(caused.get(r, 0.0) for r in group)
        rest = max((c for r, c in caused.items() if r not in group), default=0.0)
        return mine > 0 and mine >= DOMINANT_SHARE * total and mine >= 2 * rest

    # The hot shard's holders as one group: with data or tensor parallelism several ranks hold it and split
    # the wait they cause, so no single one of them would dominate.
    imbalanced = bool(worst) and worst["ep_balancedness"] is not None and worst["ep_balancedness"] < IMBALANCED
    hot = set(worst["hottest_expert_ranks"]) if imbalanced and worst.get("hottest_expert_ranks") else set()
    hot_dominates = bool(hot) and dominates(hot)
    top = max(caused, key=caused.get) if caused else None
    if hot_dominates:
        straggler = max(sorted(hot), key=lambda r: caused.get(r, 0.0))
    else:
        straggler = top if top is not None and dominates({top}) else None
    strag_row = next((r for r in stage_rows if r["rank"] == (straggler if straggler is not None else top)), None)
    top_share = caused[top] / total if top is not None and total else 0.0
    if not has_comm:
        return {"cause": "no-communication", "straggler_rank": None,
                "text": "no collectives were recorded: the time is compute and idle only"}
    if share < WAIT_NOTABLE:
        return {"cause": "small", "straggler_rank": straggler,
                "text": f"waiting is small ({100 * share:.1f}% of step time)"}
    if hot_dominates:
        on = f"rank {straggler}" if len(hot) == 1 else "ranks " + ", ".join(map(str, sorted(hot)))
        return {"cause": "imbalance", "straggler_rank": straggler,
                "text": (f"wait ({100 * share:.0f}% of step time) dominated by expert-load imbalance "
                         f"(balancedness {worst['balancedness']:.2f} at L{worst['layer']}; expert "
                         f"{worst['hottest_expert']} on {on} is hot and the other ranks wait for it)")}
    if straggler is not None:
        med = median(r["compute_ms"] for r in stage_rows)
        extra = strag_row["compute_ms"] - med
        bal = f"; expert load balancedness {worst['balancedness']:.2f}" if worst else ""
        # each other rank waits about as long as the straggler is late: compare its extra compute with that
        late = strag_row["caused_wait_ms"] / max(len(stage_rows) - 1, 1)
        if extra <= 0:
            why = ": it arrives last without computing more, so look at its host, input or launches"
        elif extra < 0.5 * late:
            why = (f": its extra compute explains {100 * extra / late:.0f}% of the {late:.2f} ms/step the others "
                   "wait for it, so look also at its host, input or launches")
        else:
            why = ""
        return {"cause": "straggler", "straggler_rank": straggler,
                "text": (f"wait ({100 * share:.0f}% of step time) dominated by straggler rank {straggler} "
                         f"(compute {extra:+.2f} ms/step vs the median rank{bal}){why}")}
    if top is not None and total > 0:
        return {"cause": "spread", "straggler_rank": None,
                "text": (f"wait ({100 * share:.0f}% of step time) spread over the ranks: no rank causes most of it "
                         f"(most: rank {top}, {100 * top_share:.0f}% of the caused wait)")}
    return {"cause": "unknown", "straggler_rank": None, "text": f"waiting is {100 * share:.0f}% of step time"}


def summarize(
    ranks: Sequence[dict[str, Any]],
    *,
    offsets_ns: Optional[Sequence[int]] = None,
    rtts_ns: Optional[Sequence[int]] = None,
    pingpong_ns: Optional[Sequence[int]] = None,
    clock_basis: str = "given offsets",
    routing: str = "model",
    extra: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """The `profile` section from every rank's records.

    `ranks`: one dict per rank with `rank`, `steps` (list of recorder.Step), optional `peers` (the global
    ranks its collectives span: a tuple, or {phase: tuple} with a "*" default; default all), `load_total` and
    `shard` (see `expert_load`).
    `offsets_ns[r]`: rank r's clock minus rank 0's, as used to align arrivals (0 on one host; else
    clock.ping_pong_offsets). The clock section also reports how well the end times agree with them."""
    offsets = {rk["rank"]: (offsets_ns[rk["rank"]] if offsets_ns else 0) for rk in ranks}
    steps_by_rank = {rk["rank"]: [s if isinstance(s, Step) else Step.from_wire(s) for s in rk["steps"]] for rk in ranks}
    ranks = [{**rk, "steps": steps_by_rank[rk["rank"]]} for rk in ranks]
    peers = {rk["rank"]: rk["peers"] for rk in ranks if rk.get("peers")}
    calls = match_collectives(steps_by_rank, offsets, peers)
    tables = rank_tables(steps_by_rank, calls)
    load = expert_load(ranks)
    stages = [s for s in ("decode", "prefill") if any(t["stage"] == s for t in tables)]
    where: dict[str, Any] = {}
    for s in stages:
        rows = [t for t in tables if t["stage"] == s]
        step = sum(r["step_ms"] for r in rows)
        where[s] = {
            "step_ms_mean_over_ranks": step / len(rows),
            "share": {k: (sum(r[f"{k}_ms"] for r in rows) / step if step else 0.0)
                      for k in ("compute", "transfer", "wait", "idle")},
            **_attribute(rows, load, bool(calls)),
            "max_closure_error_pct": max(abs(r["closure_error_pct"]) for r in rows),
        }
    main = where.get("decode") or where.get("prefill") or {}
    return {
        "routing": routing,
        "world_size": len(ranks),
        "clock": {
            "basis": clock_basis,
            "offsets_ms": [offsets[r] / 1e6 for r in sorted(offsets)],
            "pingpong_offsets_ms": [x / 1e6 for x in pingpong_ns] if pingpong_ns else None,
            "pingpong_rtt_ms": [x / 1e6 for x in rtts_ns] if rtts_ns else None,
            "end_check": end_time_check([c for c in calls if c["timed"]]),
        },
        "where_the_time_goes": where,
        "straggler_rank": main.get("straggler_rank"),
        "attribution": main.get("text"),
        "expert_load": load,
        "most_imbalanced_layer": load["most_imbalanced_layer"] if load else None,
        "ranks": tables,
        "n_collectives_matched": len(calls),
        **(extra or {}),
    }


def overhead(batch: int, plain_tpot_ms: Sequence[float], profiled_tpot_ms: Sequence[float]) -> dict[str, Any]:
    """Decode tokens/s (per rank) without and with profiling, measured side by side in one run."""
    plain = batch * 1e3 / median(plain_tpot_ms)
    prof = batch * 1e3 / median(profiled_tpot_ms)
    return {
        "plain_decode_tokens_per_s": plain,
        "profiled_decode_tokens_per_s": prof,
        "overhead_pct": 100.0 * (plain - prof) / plain,
        "n": [len(plain_tpot_ms), len(profiled_tpot_ms)],
        "basis": "measured",
    }


def phase_split(section: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per stage, each phase's time summed over the layers (compute + communication), ms per step, mean over the
    ranks, and the mean step: {stage: {"step_ms": …, "phases": {phase: ms}}}, phases in `PHASES` order."""
    split: dict[str, dict[str, Any]] = {}
    for stage in ("prefill", "decode"):
        rows = [t for t in section.get("ranks", []) if t.get("stage") == stage]
        if not rows:
            continue
        acc: dict[str, float] = {}
        for t in rows:
            for layer in t.get("layers", []):
                for ph, v in (layer.get("phases") or {}).items():
                    acc[ph] = acc.get(ph, 0.0) + v.get("compute_ms", 0.0) + v.get("comm_ms", 0.0)
        order = sorted(acc, key=lambda ph: (PHASES.index(ph) if ph in PHASES else len(PHASES), ph))
        split[stage] = {"step_ms": sum(t["step_ms"] for t in rows) / len(rows),
                        "phases": {ph: acc[ph] / len(rows) for ph in order}}
    return split


def _phase_table(section: dict[str, Any]):
    """The phase split as a table (one row per stage), or None when no layer recorded a phase."""
    from rich.table import Table

    split = phase_split(section)
    phases = list(dict.fromkeys(ph for v in split.values() for ph in v["phases"]))
    if not phases:
        return None
    t = Table(title="phase split — ms per step over all layers, mean over ranks (share of the step)",
              title_justify="left")
    t.add_column("stage")
    for ph in phases:
        t.add_column(ph, justify="right")
    for stage, v in split.items():
        step = v["step_ms"] or 1.0
        t.add_row(stage, *(f"{v['phases'][ph]:.2f} ({100 * v['phases'][ph] / step:.0f}%)" if ph in v["phases"]
                           else "—" for ph in phases))
    return t


def render_summary(section: dict[str, Any], title: Optional[str] = None):
    """A rich renderable: per rank, the share of step time in compute / transfer / wait / idle, the phase split
    (attention, router, dispatch, experts, combine, …), then the most imbalanced layer, the straggler and the attribution line."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    label = title or section.get("model") or "profile"
    table = Table(title=f"where the time goes — {label} (routing: {section.get('routing', 'model')})",
                  title_justify="left")
    for col in ("rank", "stage", "step ms", "compute", "transfer", "wait", "idle", "caused wait ms"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for r in section.get("ranks", []):
        step = r["step_ms"] or 1.0
        table.add_row(
            str(r["rank"]), r["stage"], f"{r['step_ms']:.2f}",
            *(f"{100 * r[f'{k}_ms'] / step:.0f}%" for k in ("compute", "transfer", "wait", "idle")),
            f"{r['caused_wait_ms']:.2f}",
        )
    lines = []
    for stage, w in section.get("where_the_time_goes", {}).items():
        sh = w["share"]
        lines.append(f"{stage}: compute {100 * sh['compute']:.0f}% · transfer {100 * sh['transfer']:.0f}% · "
                     f"wait {100 * sh['wait']:.0f}% · idle {100 * sh['idle']:.0f}% — {w['text']}")
    worst = section.get("most_imbalanced_layer")
    if worst:
        lines.append(f"most imbalanced layer: L{worst['layer']} (balancedness {worst['balancedness']:.2f}, "
                     f"per EP rank {worst['ep_balancedness']:.2f}; hottest expert {worst['hottest_expert']})")
    if section.get("straggler_rank") is not None:  # `summarize` takes the top-level verdict from decode
        lines.append(f"straggler rank (decode): {section['straggler_rank']}")
    ov = section.get("overhead")
    if ov:
        lines.append(f"profiling overhead: {ov['overhead_pct']:.1f}% decode tokens/s "
                     f"({ov['plain_decode_tokens_per_s']:.1f} → {ov['profiled_decode_tokens_per_s']:.1f} per rank)")
    en = section.get("energy")
    if en and en.get("joules_per_token") is not None:
        lines.append(f"energy: {en['joules_per_token']:.4f} J/token over the profiled window")
    files = [f for f in (section.get("trace") or {}).get("files") or [] if f]
    if files:
        window = (section.get("trace") or {}).get("window_forwards")
        lines.append(f"Kineto traces (Perfetto, ui.perfetto.dev): {len(files)} in {Path(files[0]).parent}"
                     + (f" (forwards {window[0]}–{window[1]})" if window else ""))
    phases = _phase_table(section)
    return Group(table, *([phases] if phases is not None else []), *(Text(line) for line in lines))
