"""The run's closing table: the workload's models side by side (dense vs MoE), one row per batch size.

By default the columns that answer the question (latency, throughput per GPU, $/M, score per $) in 100 terminal
columns; `wide=True` adds every other metric the metric table shows in the terminal, the identity columns and the
p90/p99 of the latencies.
"""

from __future__ import annotations

from typing import Any, Optional, get_args

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from moebench import metrics as mt
from moebench.report.format import fmt, fmt_params
from moebench.report.rows import per_unit, spread_of, tail_of
from moebench.results import profiled
from moebench.results.stats import Basis

SHORT_UNIT = {"process": "proc"}  # the narrow table's column heads


def med(m: Optional[dict[str, Any]]) -> Optional[float]:
    return None if m is None else m["median"]


def spread(m: Optional[dict[str, Any]], *, tail: bool = False, sep: str = " ", dash: str = "–") -> str:
    """Rich markup: median (p20–p80), with a second line "p90 … · p99 …" when `tail`; a single value alone.
    `sep` goes between the median and its spread ("\\n" stacks them in a narrow column); a `dash` with spaces
    lets a narrow column wrap the spread between its two numbers instead of cutting one."""
    if m is None:
        return "—"
    text = fmt(m["median"])
    if (sp := spread_of(m)) is not None:
        text += f"{sep}[dim]({fmt(sp[0])}{dash}{fmt(sp[1])})[/dim]"
    if tail and (tl := tail_of(m)) is not None:
        text += f"\n[dim]p90 {fmt(tl[0])} · p99 {fmt(tl[1])}[/dim]"
    return text


def fraction(v: Any, *, roof: bool = False) -> str:
    """A fraction as a percentage; above 100 % of a measured roof it is flagged (the roof, not the run, is off)."""
    if not isinstance(v, (int, float)):
        return "—"
    text = f"{v * 100:.3g}%"
    return f"[bold red]{text}![/bold red]" if roof and v > 1.0 else text


def _model_cell(r: dict[str, Any], wide: bool) -> str:
    """The model's name; in the narrow table a dim second line says its kind and, extrapolated, N/L layers."""
    if wide:
        return escape(r["model"])
    what = r["kind"]
    if r["basis"] == "extrapolated":
        what += f" · extrap. {r['layers_run']}/{r['layers_total']}L"
    elif r["basis"] != "measured":
        what += f" · {r['basis']}"
    return f"{escape(r['model'])}\n[dim]{escape(what)}[/dim]"


def run_table(doc: dict[str, Any], *, wide: bool = False) -> Table:
    hw = doc["hardware"]
    price = hw.get("price", {}) or {}
    p = price.get("usd_per_gpu_hour")
    unit = per_unit(hw.get("device"))
    head_unit = unit if wide else SHORT_UNIT.get(unit, unit)
    title = escape(
        f"{doc['workload']['name']} on {hw['name']} ×{hw.get('n_devices', 1)} ({hw.get('device')}, {hw.get('dtype')}, "
        f"kernels {hw.get('kernels')}) — price {'$%.2f/%s-h (%s)' % (p, unit, price.get('tier')) if p else 'not set'}"
    )
    if not wide:  # the wide table has a basis column; the narrow one names its rows' bases here, measured first
        seen = {r["basis"] for r in doc["records"]}
        bases = [b for b in get_args(Basis) if b in seen] + sorted(seen - set(get_args(Basis)))
        if bases:
            title += f" · {escape(', '.join(bases))}"
    caption = "median (p20–p80)"
    if wide:
        caption += ", p90 · p99 under latencies; extrapolated = N of L layers measured at real widths, scaled to L"
    else:
        caption += (f"{'; proc = process (a CPU rank)' if head_unit != unit else ''}; "
                    "--wide: every metric, p90/p99 and end-to-end latency")
    if profiled(doc):
        caption += "; profiled (--profile): times include the profiler's overhead, measured side by side below"
    t = Table(title=title, caption=caption, caption_justify="left")
    shown = [m for m in mt.METRICS if m.shown_in("terminal")
             or (wide and m.shown_in("wide") and any(mt.at(r["metrics"], m.path) is not None for r in doc["records"]))]
    ident = ([("model", "left"), ("kind", "left"), ("basis", "left"), ("batch", "right"), ("active/total", "right"),
              ("score", "right")] if wide else [("model", "left"), ("B", "right")])
    for c, j in ident:
        t.add_column(c, justify=j, overflow="fold")
    for metric in shown:
        t.add_column(metric.label.format(unit=head_unit), justify="right", overflow="fold")
    for r in doc["records"]:
        cells = [_model_cell(r, wide)]
        if wide:
            intel = r.get("intelligence")
            basis = r["basis"] if r["basis"] == "measured" else f"{r['basis']} {r['layers_run']}/{r['layers_total']}L"
            cells += [r["kind"], basis, str(r["batch_size"]),
                      f"{fmt_params(r['params']['active'])}/{fmt_params(r['params']['total'])}",
                      f"{intel['score']:g} ({intel['version']})" if intel else "—"]
        else:
            cells.append(str(r["batch_size"]))
        for metric in shown:
            v = mt.at(r["metrics"], metric.path)
            if metric.shape == "scalar":
                cells.append(fraction(v, roof=metric.roof) if metric.unit == "fraction" else fmt(v))
            elif metric.spread:
                cells.append(spread(v, tail=wide and metric.tail, sep="\n", dash="–" if wide else " – "))
            else:
                cells.append(fmt(med(v)))
        t.add_row(*cells)
    return t


def print_run_table(console: Console, doc: dict[str, Any], *, wide: bool = False) -> None:
    """The run table on `console`; the wide one at its natural width, however narrow the terminal (folded into
    100 columns it is unreadable; a pager with `less -S`, or a wide window, shows it whole)."""
    t = run_table(doc, wide=wide)
    if wide:
        print_at_natural_width(console, t)
    else:
        console.print(t)


def print_at_natural_width(console: Console, t: Table) -> None:
    """A wide table unfolded, however narrow the terminal."""
    natural = Measurement.get(console, console.options.update_width(10_000), t).maximum
    width = console.width
    console.width = max(width, natural)
    try:
        console.print(t)
    finally:
        console.width = width
