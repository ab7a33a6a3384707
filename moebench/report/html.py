"""One self-contained HTML report: plotly.js inlined once in <head>, no external fetch when viewed.

Sections: provenance, dense vs MoE table, throughput–interactivity Pareto curves with $/M tokens, $/M tokens by
hardware, intelligence vs cost, per-layer time breakdown per rank and expert-load heatmaps (from `profile`).
Every user-controlled string (model, workload, hardware, file names, sources) goes through `html.escape`;
plotly's own JSON encoder additionally escapes `<`, `>` and `/` inside the figure data.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Sequence

from moebench import __version__
from moebench import metrics as mt
from moebench.report.format import fmt, fmt_params
from moebench.report import plots
from moebench.report.caveats import caveats
from moebench.report.profile_view import breakdowns, expert_loads
from moebench.report.rows import per_unit, run_labels, spread_of, stat_of, tail_of, value
from moebench.report.sources import files_text

esc = plots.esc

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1280px;color:#222;padding:0 16px}
h1{font-size:1.6em;margin-bottom:0} h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:4px}
nav a{margin-right:14px} .sub{color:#666;margin-top:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0 16px 0} th,td{padding:4px 8px;border-bottom:1px solid #eee;text-align:right;vertical-align:top}
th{background:#f6f6f6;position:sticky;top:0} td.l,th.l{text-align:left} .dim{color:#888}
tr.basis-extrapolated td{font-style:italic;background:#fffbea}
tr.basis-projected td{background:repeating-linear-gradient(45deg,#f3f0ff,#f3f0ff 6px,#ffffff 6px,#ffffff 12px);color:#4b3b8f}
.badge{display:inline-block;border-radius:8px;padding:0 6px;font-size:11px;font-style:normal;border:1px solid}
.badge.measured{color:#1a7f37;border-color:#1a7f37} .badge.extrapolated{color:#9a6700;border-color:#9a6700}
.badge.projected{color:#6639ba;border-color:#6639ba}
.empty{color:#888;font-style:italic;border:1px dashed #ccc;padding:16px;border-radius:6px}
.plot{margin:12px 0 28px 0} .legend-basis span{margin-right:16px}
code{background:#f3f3f3;padding:1px 4px;border-radius:3px}
"""

PLOT_CONFIG = {"displaylogo": False, "responsive": True, "typesetMath": False}


def _badge(basis: Any, detail: str = "") -> str:
    b = esc(basis)
    return f'<span class="badge {b}">{b}{(" " + esc(detail)) if detail else ""}</span>'


def _table(head: list[tuple[str, bool]], body: list[tuple[str, list[str]]]) -> str:
    """head: (label, left-aligned); body: (row class, cells already escaped)."""
    th = "".join(f'<th class="{"l" if left else ""}">{esc(h)}</th>' for h, left in head)
    trs = []
    for cls, cells in body:
        tds = "".join(f'<td class="{"l" if head[i][1] else ""}">{c}</td>' for i, c in enumerate(cells))
        trs.append(f'<tr class="{esc(cls)}">{tds}</tr>')
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(trs)}</tbody></table>"


def _spread(r: dict[str, Any], name: str) -> str:
    """median (p20–p80), and for latencies a second line with p90 and p99; a single value alone."""
    st = stat_of(r, name)
    if st is None:
        return "—"
    text = esc(fmt(st["median"]))
    if (sp := spread_of(st)) is not None:
        text += f' <span class="dim">({esc(fmt(sp[0]))}–{esc(fmt(sp[1]))})</span>'
    if mt.BY_NAME[name].tail and (tl := tail_of(st)) is not None:
        text += f'<br><span class="dim">p90 {esc(fmt(tl[0]))} · p99 {esc(fmt(tl[1]))}</span>'
    return text


def _host(doc: dict[str, Any]) -> str:
    """Where the numbers come from: the machine of a run, or the assumptions of a projection (which has none)."""
    proj = doc.get("projection")
    if proj is not None:
        overlap = proj.get("comm_overlap")
        overlap_s = {0: "none", 1: "full"}.get(overlap, fmt(overlap)) if overlap is not None else "—"
        calib = f"calibrated from {esc(proj['calibration'])}" if proj.get("calibration") else \
            "uncalibrated (catalog peaks × the presets' efficiencies)"
        band = proj.get("error_band") or {}
        trust = f"<br>how far to trust it: {esc(band['text'])}" if band.get("text") else ""
        if (band.get("ttft_under_load") or {}).get("text"):
            trust += f"<br>{esc(band['ttft_under_load']['text'])}"
        return (f"analytic projection <span class='dim'>{esc(proj.get('serving'))} serving, "
                f"communication overlap {esc(overlap_s)}, {calib}{trust}</span>")
    env = doc.get("environment") or {}
    return (f"{esc(env.get('hostname'))} <span class='dim'>{esc(env.get('platform'))}, "
            f"{esc(env.get('cpu_count'))} CPUs</span>")


def provenance(sources: list[tuple[str, dict[str, Any]]]) -> str:
    head = [("file", True), ("run", True), ("created (UTC)", True), ("workload", True), ("hardware", True),
            ("device · dtype · kernels", True), ("ranks", False), ("price", True), ("git sha", True),
            ("moebench", True), ("torch", True), ("host or projection", True), ("measured roofs", True), ("complete", True)]
    body = []
    for src, doc in sources:
        hw, env = doc.get("hardware") or {}, doc.get("environment") or {}
        price = hw.get("price") or {}
        roofs = hw.get("measured_roofs") or {}
        p = price.get("usd_per_gpu_hour")
        price_s = f"${fmt(p)}/{per_unit(hw.get('device'))}-h ({esc(price.get('tier'))})<br><span class='dim'>{esc(price.get('source'))}</span>" if p is not None else "not set"
        roof_s = (f"{esc(fmt(roofs.get('mem_gbps')))} GB/s copy, {esc(fmt(roofs.get('matmul_gflops')))} GFLOP/s "
                  f"{esc(roofs.get('matmul_dtype'))}"
                  + (f", FMA peak {esc(fmt(roofs['fma_peak_gflops']))} GFLOP/s" if roofs.get("fma_peak_gflops") else "")
                  ) if roofs else "—"
        err = str(doc.get("error") or "")
        done = "yes" if doc.get("complete") else f"<b>no</b> <span class='dim'>{esc(err[:160] + ('…' if len(err) > 160 else ''))}</span>"
        body.append(("", [
            esc(src), esc(doc.get("run_id")), esc(doc.get("created_utc")), esc((doc.get("workload") or {}).get("name")),
            f"{esc(hw.get('name'))} <span class='dim'>({esc(hw.get('id'))})</span>",
            f"{esc(hw.get('device'))} · {esc(hw.get('dtype'))} · {esc(hw.get('kernels'))}",
            esc(doc.get("world_size")), price_s, f"<code>{esc((doc.get('git_commit') or '—')[:12])}</code>",
            esc(doc.get("moebench_version")), esc((env.get("libraries") or {}).get("torch")),
            _host(doc),
            roof_s, done,
        ]))
    return _table(head, body)


_ENERGY = ("joules_per_token", "tokens_per_joule")


def _energy(r: dict[str, Any], name: str) -> str:
    """An energy figure with how it was obtained beside it: never an estimate that reads as a reading."""
    v, source = value(r, name), r.get("energy_source")
    if v is None:
        return esc(source) if source else "—"
    return f"{esc(fmt(v))} <span class='dim'>({esc(source or r.get('energy_basis') or '?')})</span>"


def dense_vs_moe(rs: list[dict[str, Any]]) -> str:
    """The run table, per hardware: every model side by side at each batch size, basis badged."""
    parts = []
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rs:
        groups.setdefault((r["hardware_name"], r["workload"], r["source_file"]), []).append(r)
    for (hw, wl, src), g in groups.items():
        g = sorted(g, key=lambda r: (r["batch_size"], r["kind"] != "dense", str(r["model"])))
        shown = mt.shown_in("html")
        head = [("model", True), ("kind", True), ("basis", True), ("batch", False), ("active/total", False),
                ("score", False)] + [(m.label.format(unit=per_unit(g[0]["device"])), False) for m in shown]
        body = []
        for r in g:
            detail = f"{r['layers_run']}/{r['layers_total']}L" if r["basis"] == "extrapolated" else ""
            score = (f"{fmt(r['intelligence_score'])} <span class='dim'>({esc(r['intelligence_version'])})</span>"
                     if r.get("intelligence_score") is not None else "—")
            body.append((f"basis-{r['basis']}", [
                esc(r["model"]), esc(r["kind"]), _badge(r["basis"], detail), esc(r["batch_size"]),
                f"{esc(fmt_params(r['params_active']))}/{esc(fmt_params(r['params_total']))}", score,
            ] + [_spread(r, m.name) if m.spread else _energy(r, m.name) if m.name in _ENERGY
                 else esc(fmt(value(r, m.name))) for m in shown]))
        parts.append(f"<h3>{esc(wl)} on {esc(hw)} <span class='dim'>({esc(src)})</span></h3>" + _table(head, body))
    return "".join(parts)


class _Plots:
    """Numbers the plot divs; each is `<div class="plot" data-plot="…">` so a browser test can find them all."""

    def __init__(self) -> None:
        self.n = 0

    def div(self, fig, name: str) -> str:
        self.n += 1
        inner = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"plot-{self.n}", config=PLOT_CONFIG)
        return f'<div class="plot" data-plot="{esc(name)}">{inner}</div>'


def at_targets(sources: list[tuple[str, dict[str, Any]]], labels: dict[str, str]) -> str:
    """An endpoint sweep's $/M at its interactivity targets, as its document saved them (empty without any)."""
    body = []
    for src, doc in sources:
        for a in doc.get("at_interactivity") or []:
            usd, levels = a.get("usd_per_mtok_blended"), a.get("levels") or []
            where = ("no priced level reaches it" if usd is None else levels[0] if len(set(levels)) == 1
                     else f"between {levels[0]} and {levels[1]}, on the Pareto front")
            body.append(("", [esc(labels.get(src, src)), esc(fmt(a["target_tokens_per_s_per_user"])),
                              "—" if usd is None else esc(fmt(usd)), esc(where)]))
    if not body:
        return ""
    return ("<p class='sub'>Blended $/M tokens at each stated interactivity, read off the load levels' "
            "Pareto front (interpolated between the two levels around it).</p>"
            + _table([("run", True), ("tok/s/user", False), ("$/M blended", False), ("from", True)], body))


def _empty(msg: str) -> str:
    return f'<p class="empty">{esc(msg)}</p>'


def render(sources: list[tuple[str, dict[str, Any]]], rs: list[dict[str, Any]], *, csv_name: Optional[str] = None,
           title: str = "moebench report", left_out: Sequence[str] = ()) -> str:
    """The complete HTML document for result documents `sources` (name, doc) and their flat rows `rs`; `left_out`
    says what was given but is not shown (require_records' notes), so the page shared says it, not only the
    terminal."""
    from plotly.offline import get_plotlyjs

    P = _Plots()
    labels = run_labels(sources)
    rs = [{**r, "series": labels[r["source_file"]]} for r in rs]
    sec: list[tuple[str, str, str]] = []  # (id, heading, html)

    sec.append(("provenance", "Provenance", provenance(sources)))
    legend = ("<p class='legend-basis'>" + "".join(
        f"<span>{_badge(b)} {esc(d)}</span>" for b, d in (
            ("measured", "all layers timed"), ("extrapolated", "N of L layers timed at real widths, scaled to L"),
            ("projected", "analytic model, not measured"))) + "</p>")
    notes = [f"{labels[src]}: {line}" for src, doc in sources for line in caveats(doc)] + list(left_out)
    sec.append(("dense-vs-moe", "Dense vs MoE", legend + (dense_vs_moe(rs) if rs else _empty("no records"))
                + ("<ul class='notes'>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>" if notes else "")))

    fig = plots.pareto(rs)
    sec.append(("pareto", "Throughput per GPU vs interactivity",
                "<p class='sub'>Each curve is a batch-size sweep; up and right is better; points another point beats on "
                "both axes are faded. Labels: blended $/M tokens at that point (3:1 input:output).</p>"
                + (P.div(fig, "pareto") if fig else _empty("no throughput/interactivity data"))
                + at_targets(sources, labels)))

    fig = plots.cost_by_hardware(rs)
    sec.append(("cost", "$/M tokens by hardware",
                "<p class='sub'>Each bar is quoted at the interactivity written above it.</p>"
                + (P.div(fig, "cost-by-hardware") if fig else _empty("no prices in these results: $/M tokens needs a price"))))

    figs = plots.intelligence_vs_cost(rs)
    sec.append(("intelligence", "Intelligence vs cost",
                "".join(P.div(f, f"intelligence-{i}") for i, f in enumerate(figs)) if figs else
                _empty("no intelligence scores in these results (debug flavors have none; "
                       "see workloads with published models)")))

    prof, loads = [], []
    for src, doc in sources:
        for b in breakdowns(doc):
            prof.append(P.div(plots.time_breakdown({**b, "title": f"{b['title']} ({src})"}), "time-breakdown"))
        for e in expert_loads(doc):
            loads.append(P.div(plots.expert_heatmap({**e, "title": f"{e['title']} ({src})"}), "expert-load"))
    sec.append(("time", "Where the time goes: compute / transfer / wait per layer and rank, and each rank's idle",
                "".join(prof) if prof else _empty("no profile data (run with --profile or `profile: true`)")))
    sec.append(("experts", "Expert load (layer × expert)",
                "".join(loads) if loads else _empty("no profile data (run an MoE model with --profile)")))

    nav = "".join(f'<a href="#{i}">{esc(h)}</a>' for i, h, _ in sec)
    body = "".join(f'<section id="{i}"><h2>{esc(h)}</h2>{content}</section>' for i, h, content in sec)
    csv_link = f' · table as CSV: <a href="{esc(csv_name)}">{esc(csv_name)}</a>' if csv_name else ""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{esc(title)}</title>"
        f"<style>{CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f"<h1>{esc(title)}</h1><p class='sub'>{esc(files_text(sources))}, {len(rs)} rows · generated "
        f"{esc(time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime()))} by moebench {esc(__version__)}{csv_link}</p>"
        f"<nav>{nav}</nav>{body}"
        f"<script>document.body.dataset.plots = '{P.n}';</script></body></html>\n"
    )
