"""Read the profiler's sections of a result document into what the report plots.

A profiled run (results/README.md: `profile`, written by moebench/profile) carries per-rank, per-layer times
(`compute_ms`, `comm_ms`, `wait_ms`, `transfer_ms`, `idle_ms`) and expert load (tokens per expert per layer).
This module finds them wherever they sit — the top-level `profile` section or a record's own `profile` — by
walking the structure and carrying `model`, `batch_size`, `rank` and `layer` down from the enclosing objects,
so the report keeps working while the profiler's layout settles. Unprofiled documents give empty lists (the
report then says "no profile data").
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Optional

TIMES = ("compute_ms", "comm_ms", "wait_ms", "transfer_ms", "idle_ms")
_CTX_KEYS = ("model", "batch_size", "rank", "layer", "stage")
_CHILD_CTX = {"ranks": "rank", "per_rank": "rank", "layers": "layer", "per_layer": "layer",
              "models": "model", "batch_sizes": "batch_size", "stages": "stage", "phases_by_stage": "stage"}
_LAYER_KEY = re.compile(r"^L?(\d+)$")
_SKIP = {"phases", "clock", "trace", "energy", "overhead"}  # per-phase detail inside a layer row; not per layer
_LOAD_KEYS = ("tokens_per_expert", "tokens_LE", "expert_tokens")


def _sections(doc: dict[str, Any]) -> Iterator[tuple[dict[str, Any], Any]]:
    if doc.get("profile"):
        yield {}, doc["profile"]
    for rec in doc.get("records", []):
        if isinstance(rec, dict) and rec.get("profile"):
            yield {"model": rec.get("model"), "batch_size": rec.get("batch_size")}, rec["profile"]
        if isinstance(rec, dict) and (rec.get("expert_load") or {}).get("available"):  # an endpoint's load level
            yield {"model": rec.get("model"), "stage": (rec.get("load") or {}).get("label")}, rec["expert_load"]


def _walk(node: Any, ctx: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Yield (context, dict) for every dict in the tree; context comes from enclosing dicts and from the keys or
    positions under `ranks` / `layers` / `models` / … (an explicit `rank` or `layer` inside wins)."""
    if isinstance(node, dict):
        ctx = {**ctx, **{k: node[k] for k in _CTX_KEYS if k in node and not isinstance(node[k], (dict, list))}}
        yield ctx, node
        for k, v in node.items():
            if k in _SKIP:
                continue
            if k in _CHILD_CTX and isinstance(v, dict):
                for kk, vv in v.items():
                    yield from _walk(vv, {**ctx, _CHILD_CTX[k]: _index(kk)})
            elif k in _CHILD_CTX and isinstance(v, list):
                for i, vv in enumerate(v):
                    yield from _walk(vv, {**ctx, _CHILD_CTX[k]: i})
            elif isinstance(v, (dict, list)):
                yield from _walk(v, ctx)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v, ctx)


def _index(k: str) -> Any:
    m = _LAYER_KEY.match(str(k))
    return int(m.group(1)) if m else k


def _title(ctx: dict[str, Any]) -> str:
    parts = [str(ctx["model"])] if ctx.get("model") is not None else []
    if ctx.get("batch_size") is not None:
        parts.append(f"batch {ctx['batch_size']}")
    if ctx.get("stage") is not None:
        parts.append(str(ctx["stage"]))
    return " · ".join(parts) or "profiled run"


def breakdowns(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per profiled model run: {"title", "layers": [{rank, layer, compute_ms, transfer_ms, wait_ms, idle_ms}]}.

    `transfer_ms` falls back to `comm_ms − wait_ms` when only those were recorded. A rank's idle time, which the
    profiler records per rank and stage, is a row of its own with layer "idle" (sorted after the layers).
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    seen: set[tuple] = set()
    for base, section in _sections(doc):
        for ctx, d in _walk(section, base):
            if "layers" in d and "layer" not in ctx and _num(d.get("idle_ms")) is not None:
                # idle is step time no region covers (docs/measure.md), so it belongs to a rank, not to a layer:
                # the profiler writes it per rank × stage, and the plot gives it a bar of its own after the layers
                ident = (_title(ctx), ctx.get("rank", 0), "idle")
                if ident not in seen:
                    seen.add(ident)
                    groups.setdefault(ident[0], []).append(
                        {"rank": ident[1], "layer": "idle", **dict.fromkeys(TIMES), "idle_ms": _num(d["idle_ms"])})
            if "compute_ms" not in d or "layer" not in ctx and "layer" not in d:
                continue
            rank = ctx.get("rank", 0)
            layer = ctx.get("layer")
            if layer is None:  # a region outside the layers (lm_head): the profiler names it
                layer = d.get("name", "other")
            title = _title(ctx)
            ident = (title, rank, layer)
            if ident in seen:
                continue
            seen.add(ident)
            t = {k: _num(d.get(k)) for k in TIMES}
            if t["transfer_ms"] is None and t["comm_ms"] is not None:
                t["transfer_ms"] = max(0.0, t["comm_ms"] - (t["wait_ms"] or 0.0))
            groups.setdefault(title, []).append({"rank": rank, "layer": f"L{layer}" if isinstance(layer, int) else str(layer), **t})
    return [{"title": k, "layers": sorted(v, key=lambda r: (str(r["rank"]).zfill(4), _layer_order(r["layer"])))}
            for k, v in groups.items()]


def _layer_order(label: str) -> tuple:
    m = re.match(r"^L(\d+)$", label)
    return (0, int(m.group(1))) if m else (1, label)


def _num(x: Any) -> Optional[float]:
    if isinstance(x, dict):  # a statistic
        x = x.get("median")
    return float(x) if isinstance(x, (int, float)) else None


def expert_loads(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per profiled MoE run: {"title", "tokens_LE" (layers × experts), "layer_labels", "balancedness"}.

    Reads a whole matrix (`tokens_per_expert: [[...], ...]`) or one row per layer (`{"layer": 3,
    "tokens_per_expert": [...]}`, as moebench.profile.summary writes); `balancedness` is the matrix's own figure,
    else the lowest per-layer one (mean / max tokens per expert).
    """
    out: list[dict[str, Any]] = []
    per_layer: dict[str, dict[Any, tuple[list[float], Optional[float]]]] = {}
    for base, section in _sections(doc):
        for ctx, d in _walk(section, base):
            key = next((k for k in _LOAD_KEYS if k in d), None)
            if key is None:
                continue
            v = d[key]
            if isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v):
                layer = d.get("layer", ctx.get("layer"))
                if layer is not None:
                    per_layer.setdefault(_title(ctx), {}).setdefault(layer, ([float(x) for x in v], _num(d.get("balancedness"))))
                continue
            z, labels = _matrix(v)
            if z and all(e["title"] != _title(ctx) for e in out):
                out.append({"title": _title(ctx), "tokens_LE": z, "layer_labels": labels,
                            "balancedness": _num(d.get("balancedness"))})
    for title, layers in per_layer.items():
        if any(e["title"] == title for e in out):
            continue
        order = sorted(layers, key=lambda x: _layer_order(f"L{x}" if isinstance(x, int) else str(x)))
        bals = [layers[k][1] for k in order if layers[k][1] is not None]
        out.append({"title": title, "tokens_LE": [layers[k][0] for k in order],
                    "layer_labels": [f"L{k}" if isinstance(k, int) else str(k) for k in order],
                    "balancedness": min(bals) if bals else None})
    return out


def _matrix(v: Any) -> tuple[list[list[float]], list[str]]:
    """A layers × experts matrix from a list of lists, or from {"L3": [...], ...}."""
    if isinstance(v, dict):
        items = sorted(v.items(), key=lambda kv: _layer_order(f"L{_index(kv[0])}" if isinstance(_index(kv[0]), int) else str(kv[0])))
        rows = [r for _, r in items]
        labels = [f"L{_index(k)}" if isinstance(_index(k), int) else str(k) for k, _ in items]
    elif isinstance(v, list):
        rows, labels = v, [f"L{i}" for i in range(len(v))]
    else:
        return [], []
    if not rows or not all(isinstance(r, list) and all(isinstance(x, (int, float)) for x in r) for r in rows):
        return [], []
    return [[float(x) for x in r] for r in rows], labels
