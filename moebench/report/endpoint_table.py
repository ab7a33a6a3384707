"""The terminal view of an endpoint result (moebench.endpoint): one row per load level, the client's latencies
beside the cost and the server's own view. Reads the document only; imports nothing of the producer."""

from __future__ import annotations

from typing import Any, Optional

from rich.table import Table

from moebench import metrics as mt
from moebench.report.format import fmt
from moebench.tokenomics import cost_at_interactivity

# The metrics a level's row shows, in order (record paths); heads, and whether a tail (p99) is shown, are the
# declarations' in moebench.metrics.
COLUMNS = ("ttft_ms", "tpot_ms", "itl_ms", "output_tokens_per_s", "interactivity_tokens_per_s_per_user",
           "goodput_requests_per_s", "usd_per_mtok.blended", "usd_per_mtok_good.output")
# `--wide` adds these, where any level has them, under these heads (most have no terminal label of their own)
WIDE_COLUMNS = {"e2e_ms": "E2E ms", "inter_chunk_ms": "chunk gap ms", "queue_ms": "queue ms",
                "request_throughput_per_s": "req/s", "input_tokens_per_s": "in tok/s",
                "output_tokens_per_s_per_gpu": "out tok/s/GPU", "goodput_tokens_per_s": "goodput tok/s",
                "usd_per_mtok.input": "$/M in", "usd_per_mtok.output": "$/M out",
                "joules_per_token": "J/token", "intelligence_per_usd": "score per $/M", "failure_ratio": "failed share"}


def _med_p99(m: Optional[dict[str, Any]]) -> str:
    if m is None:
        return "—"
    return f"{fmt(m.get('median'))} [dim]/ {fmt(m.get('p99'))}[/dim]"


def _med(m: Optional[dict[str, Any]]) -> str:
    return "—" if m is None else fmt(m.get("median"))


def _server(srv: Optional[dict[str, Any]]) -> str:
    """The server's own medians over the level: running and waiting requests, KV-cache use (— where not exported)."""
    if not srv:
        return "—"
    kv = srv.get("kv_cache_usage")
    kv_text = "—" if kv is None else f"{kv['median']:.0%}"
    return f"{_med(srv.get('running_requests'))} / {_med(srv.get('waiting_requests'))} / {kv_text}"


def at_interactivity(doc: dict[str, Any]) -> list[tuple[float, Optional[tuple[float, str, str]]]]:
    """(target, ($/M blended, lower level, upper level) or None) per stated target: the document's own
    `at_interactivity` where it has one, else read off its records the same way."""
    if doc.get("at_interactivity") is not None:
        return [(a["target_tokens_per_s_per_user"],
                 None if a["usd_per_mtok_blended"] is None else (a["usd_per_mtok_blended"], *a["levels"]))
                for a in doc["at_interactivity"]]
    targets = (doc.get("workload") or {}).get("interactivity_targets") or []
    return [(t, cost_at_interactivity(doc["records"], t)) for t in targets]


def levels_table(doc: dict[str, Any], *, wide: bool = False) -> Table:
    endpoint = doc["hardware"].get("endpoint") or {}
    caps = endpoint.get("capabilities") or {}
    price = (doc.get("hardware") or {}).get("price") or {}
    where = f"{doc['hardware'].get('id') or 'hardware not named'} × {doc.get('world_size')}"
    if price.get("usd_per_gpu_hour") is not None:
        where += f" at ${price['usd_per_gpu_hour']:g}/GPU-h ({price.get('tier')})"
    caption = ("latencies: median / p99 over requests; rates: median over repeats. "
               "ITL per token needs continuous usage (— otherwise)")
    notes = {(r.get("requests") or {}).get("note") for r in doc["records"]} - {None}
    if any((m := r.get("metrics") or {}).get("usd_per_mtok") and not m.get("usd_per_mtok_good")
           and ((m.get("goodput_requests_per_s") or {}).get("median") or 0) > 0 for r in doc["records"]):
        notes.add("$/M good out — beside a goodput: a repeat served no request within the SLOs, so its cost per good "
                  "token is unbounded and no median is given")
    caption += "".join(f"\n{n}" for n in sorted(notes))
    for target, at in at_interactivity(doc):
        caption += (f"\n$/M blended at {fmt(target)} tok/s/user: "
                    + (f"{fmt(at[0])} (between {at[1]} and {at[2]}, on the Pareto front)" if at and at[1] != at[2]
                       else f"{fmt(at[0])} ({at[1]})" if at else "— (no priced level reaches it)"))
    t = Table(title=f"{caps.get('model') or '?'} at {endpoint.get('base_url')} · {where}"
                    + ("" if doc.get("complete") else " · PARTIAL"), caption=caption)
    shown = [(mt.BY_PATH[p], mt.BY_PATH[p].label) for p in COLUMNS]
    if wide:
        shown += [(mt.BY_PATH[p], head) for p, head in WIDE_COLUMNS.items()
                  if any(mt.at(r.get("metrics") or {}, p) is not None for r in doc["records"])]
    t.add_column("level")
    t.add_column("ok / failed / cut", justify="right")
    for _, head in shown:
        t.add_column(head, justify="right")
    t.add_column("server run/wait/KV", justify="right")
    t.add_column("tokens by")
    for r in doc["records"]:
        m, q = r.get("metrics") or {}, r.get("requests") or {}
        t.add_row(
            (r.get("load") or {}).get("label", "?"),
            " / ".join(str(q.get(k, "?")) for k in ("ok", "failed", "cut")),
            *[(_med_p99 if metric.tail else _med)(mt.at(m, metric.path)) for metric, _ in shown],
            _server(r.get("server")),
            ", ".join(q.get("output_token_source") or {}) or "—",
        )
    return t
