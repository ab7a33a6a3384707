"""The run's closing table: the workload's models side by side (dense vs MoE), one row per batch size."""

from __future__ import annotations

from typing import Any, Optional

from rich.markup import escape
from rich.table import Table

from moebench import metrics as mt
from moebench.report.format import fmt, fmt_params
from moebench.report.rows import per_unit, spread_of, tail_of
from moebench.results import profiled


def med(m: Optional[dict[str, Any]]) -> Optional[float]:
    return None if m is None else m["median"]


def spread(m: Optional[dict[str, Any]], *, tail: bool = False) -> str:
    """Rich markup: median (p20–p80), with a second line "p90 … · p99 …" when `tail`; a single value alone."""
    if m is None:
        return "—"
    text = fmt(m["median"])
    if (sp := spread_of(m)) is not None:
        text += f" [dim]({fmt(sp[0])}–{fmt(sp[1])})[/dim]"
    if tail and (tl := tail_of(m)) is not None:
        text += f"\n[dim]p90 {fmt(tl[0])} · p99 {fmt(tl[1])}[/dim]"
    return text


def run_table(doc: dict[str, Any]) -> Table:
    hw = doc["hardware"]
    price = hw.get("price", {}) or {}
    p = price.get("usd_per_gpu_hour")
    unit = per_unit(hw.get("device"))
    title = escape(
        f"{doc['workload']['name']} on {hw['name']} ×{hw.get('n_devices', 1)} ({hw.get('device')}, {hw.get('dtype')}, "
        f"kernels {hw.get('kernels')}) — price {'$%.2f/%s-h (%s)' % (p, unit, price.get('tier')) if p else 'not set'}"
    )
    caption = "median (p20–p80); extrapolated = N of L layers measured at real widths, scaled to L"
    if profiled(doc):
        caption += "; profiled (--profile): times include the profiler's overhead, measured side by side below"
    t = Table(title=title, caption=caption, caption_justify="left")
    shown = mt.shown_in("terminal")
    for c, j in [("model", "left"), ("kind", "left"), ("basis", "left"), ("batch", "right"),
                 ("active/total", "right"), ("score", "right")]:
        t.add_column(c, justify=j)
    for metric in shown:
        t.add_column(metric.label.format(unit=unit), justify="right")
    for r in doc["records"]:
        intel = r.get("intelligence")
        basis = r["basis"] if r["basis"] == "measured" else f"{r['basis']} {r['layers_run']}/{r['layers_total']}L"
        cells = [
            escape(r["model"]), r["kind"], basis, str(r["batch_size"]),
            f"{fmt_params(r['params']['active'])}/{fmt_params(r['params']['total'])}",
            f"{intel['score']:g} ({intel['version']})" if intel else "—",
        ]
        for metric in shown:
            st = mt.at(r["metrics"], metric.path)
            cells.append(spread(st, tail=False) if metric.spread else fmt(med(st)))
        t.add_row(*cells)
    return t
