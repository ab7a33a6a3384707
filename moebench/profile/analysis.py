"""Cross-rank wait analysis and the per-rank, per-layer, per-phase tables (docs/measure.md). Pure Python: it
works on gathered records, so tests drive it with synthetic timelines and known clock offsets.

A collective's time on rank r splits into wait = (latest arrival among its peers − r's arrival), clamped to the
call's duration, and transfer = the rest. Arrivals are compared after subtracting each rank's clock offset.
The k-th call named `n` in step s on one rank is matched with the k-th call named `n` in step s on its peers
(every rank of a group issues the same collectives in the same order, or the run would deadlock). A rank's peers
may differ by phase (EP ranks for dispatch/combine, the tensor-parallel group for allreduce).

Per rank and stage (prefill | decode), times are means per step, ms:
compute_ms (exclusive time in compute regions) + comm_ms (in collectives) + idle_ms (step time covered by no
region) = step_ms, and comm_ms = wait_ms + transfer_ms.
"""

from __future__ import annotations

import re
from statistics import median
from collections import defaultdict
from typing import Any, Iterable, Optional, Sequence

from moebench.profile.recorder import COMM, COMPUTE, Step

_LAYER = re.compile(r"^L(\d+)/(.+)$")


def split_name(name: str) -> tuple[Optional[int], str]:
    """`"L3/attn"` -> (3, "attn"); `"lm_head"` -> (None, "lm_head")."""
    m = _LAYER.match(name)
    return (int(m.group(1)), m.group(2)) if m else (None, name)


def union_ns(intervals: Iterable[tuple[int, int]]) -> int:
    """Total length covered by the union of [start, end) intervals."""
    total, cur_s, cur_e = 0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def match_collectives(
    steps_by_rank: dict[int, Sequence[Step]],
    offsets_ns: dict[int, int],
    peers_by_rank: Optional[dict[int, Any]] = None,
) -> list[dict[str, Any]]:
    """Every collective call seen by all of its peers, with aligned arrivals/ends and the split per rank.

    Each item: name, step (index), stage, timed, ranks, arrive_ns, end_ns (aligned), dur_ns, wait_ns,
    transfer_ns (lists in `ranks` order), last (the rank that arrived last).

    `peers_by_rank[r]`: the global ranks r's collectives span, either one tuple or {phase: tuple} with an
    optional "*" default (phase as in `L3/dispatch`); default: every rank."""
    ranks = sorted(steps_by_rank)
    everyone = tuple(ranks)
    peers_by_rank = peers_by_rank or {}

    def peers_of(r: int, name: str) -> tuple[int, ...]:
        p = peers_by_rank.get(r)
        if isinstance(p, dict):
            p = p.get(split_name(name)[1], p.get("*"))
        return tuple(p) if p else everyone

    calls: dict[tuple, dict[int, tuple[int, int, int]]] = defaultdict(dict)
    meta: dict[tuple, tuple[str, bool]] = {}
    for r in ranks:
        off = offsets_ns.get(r, 0)
        for st in steps_by_rank[r]:
            occ: dict[str, int] = defaultdict(int)
            for name, kind, t0, t1, excl in st.records:
                if kind != COMM:
                    continue
                key = (peers_of(r, name), st.index, name, occ[name])
                occ[name] += 1
                calls[key][r] = (t0 - off, t1 - off, excl)
                meta[key] = (st.stage, st.timed)
    out = []
    for key, per in calls.items():
        peers = key[0]
        if set(per) != set(peers):
            continue  # a call some peer did not record (e.g. outside its step window): cannot be split
        rs = sorted(per)
        arrive = [per[r][0] for r in rs]
        end = [per[r][1] for r in rs]
        dur = [max(0, per[r][2]) for r in rs]
        last_arrival = max(arrive)
        wait = [min(max(0, last_arrival - a), d) for a, d in zip(arrive, dur)]
        out.append({
            "name": key[2], "occ": key[3], "step": key[1], "stage": meta[key][0], "timed": meta[key][1], "ranks": rs,
            "arrive_ns": arrive, "end_ns": end, "dur_ns": dur, "wait_ns": wait,
            "transfer_ns": [d - w for d, w in zip(dur, wait)], "last": rs[arrive.index(last_arrival)],
        })
    out.sort(key=lambda c: (c["step"], min(c["arrive_ns"])))
    return out


def _ms(ns: float, n: int) -> float:
    return ns / 1e6 / n if n else 0.0


def rank_tables(
    steps_by_rank: dict[int, Sequence[Step]],
    collectives: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Per rank, per stage: the step-time closure and the per-layer, per-phase table (means per timed step, ms)."""
    # wait/transfer per (rank, step, name, occurrence), from the matched calls
    split: dict[tuple[int, int, str, int], tuple[int, int, int]] = {}
    caused: dict[tuple[int, str], float] = defaultdict(float)
    for c in collectives:
        for i, r in enumerate(c["ranks"]):
            split[(r, c["step"], c["name"], c["occ"])] = (c["wait_ns"][i], c["transfer_ns"][i], min(c["dur_ns"]))
        if c["timed"]:
            caused[(c["last"], c["stage"])] += sum(c["wait_ns"])
    tables = []
    for r in sorted(steps_by_rank):
        by_stage: dict[str, list[Step]] = defaultdict(list)
        for st in steps_by_rank[r]:
            if st.timed:
                by_stage[st.stage].append(st)
        for stage in sorted(by_stage, key=lambda s: (s != "decode", s)):
            steps = by_stage[stage]
            n = len(steps)
            tot = defaultdict(float)  # compute, comm, wait, transfer, idle, step, floor, unmatched
            layer_tot: dict[tuple[Optional[int], str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
            step_list, wait_list = [], []
            for st in steps:
                wait_before = tot["wait"]
                step_ns = st.end_ns - st.begin_ns
                tot["step"] += step_ns
                covered = union_ns((max(t0, st.begin_ns), min(t1, st.end_ns)) for _, _, t0, t1, _ in st.records
                                   if t1 > t0)
                tot["idle"] += max(0, step_ns - covered)
                occ: dict[str, int] = defaultdict(int)
                for name, kind, t0, t1, excl in st.records:
                    lt = layer_tot[split_name(name)]
                    if kind == COMPUTE:
                        tot["compute"] += excl
                        lt["compute"] += excl
                        continue
                    tot["comm"] += excl
                    lt["comm"] += excl
                    got = split.get((r, st.index, name, occ[name]))
                    occ[name] += 1
                    if got is not None:
                        w, x, fl = got
                    else:  # unmatched: no peer data; count it all as transfer and say so
                        w, x, fl = 0, excl, excl
                        tot["unmatched"] += excl
                    tot["wait"] += w
                    tot["transfer"] += x
                    tot["floor"] += fl
                    lt["wait"] += w
                    lt["transfer"] += x
                step_list.append(step_ns / 1e6)
                wait_list.append((tot["wait"] - wait_before) / 1e6)
            step_ms = _ms(tot["step"], n)
            parts = _ms(tot["compute"] + tot["comm"] + tot["idle"], n)
            layers: dict[Any, dict[str, Any]] = {}
            for (layer, phase), v in sorted(layer_tot.items(), key=lambda kv: (kv[0][0] is None, kv[0][0] or 0, kv[0][1])):
                key = layer if layer is not None else phase
                row = layers.setdefault(key, {"layer": layer, "name": f"L{layer}" if layer is not None else phase,
                                              "compute_ms": 0.0, "comm_ms": 0.0, "wait_ms": 0.0,
                                              "transfer_ms": 0.0, "phases": {}})
                ph = {"compute_ms": _ms(v["compute"], n)} if v["compute"] else {}
                if v["comm"]:
                    ph.update(comm_ms=_ms(v["comm"], n), wait_ms=_ms(v["wait"], n), transfer_ms=_ms(v["transfer"], n))
                row["phases"][phase] = ph
                for f in ("compute", "comm", "wait", "transfer"):
                    row[f"{f}_ms"] += _ms(v[f], n)
            tables.append({
                "rank": r, "stage": stage, "n_steps": n, "step_ms": step_ms,
                "compute_ms": _ms(tot["compute"], n), "comm_ms": _ms(tot["comm"], n),
                "wait_ms": _ms(tot["wait"], n), "transfer_ms": _ms(tot["transfer"], n),
                "idle_ms": _ms(tot["idle"], n),
                "step_ms_p50": median(step_list),
                "wait_ms_p50": median(wait_list),
                "transfer_floor_ms": _ms(tot["floor"], n),
                "unmatched_comm_ms": _ms(tot["unmatched"], n),
                "closure_error_pct": 100.0 * (parts - step_ms) / step_ms if step_ms else 0.0,
                "caused_wait_ms": _ms(caused[(r, stage)], n),
                "layers": list(layers.values()),
            })
    return tables
