"""Plotly figures for the HTML report. Every user-controlled string is HTML-escaped before it reaches plotly.js,
whose text rendering understands a subset of HTML (plotly.js turns the entities back into characters).

Basis is always visible: measured = filled circle / solid bar, extrapolated = open diamond / hatched bar,
projected = cross / cross-hatched bar with a dashed line.
"""

from __future__ import annotations

import html
from typing import Any, Iterable, Optional

import plotly.graph_objects as go

from moebench.report.format import fmt
from moebench.report.rows import per_unit, value
from moebench.tokenomics import pareto_front

SYMBOL = {"measured": "circle", "extrapolated": "diamond-open", "projected": "x"}
PATTERN = {"measured": "", "extrapolated": "/", "projected": "x"}
DASH = {"measured": "solid", "extrapolated": "dot", "projected": "dash"}
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
PHASE_COLOURS = {"compute": "#1f77b4", "transfer": "#ff7f0e", "wait": "#d62728", "idle": "#bbbbbb"}


def esc(s: Any) -> str:
    return html.escape("" if s is None else str(s), quote=True)


def _layout(fig: go.Figure, title: str, **kw: Any) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01}, template="plotly_white", height=kw.pop("height", 460),
        margin={"l": 70, "r": 20, "t": 60, "b": 60}, legend={"font": {"size": 11}}, **kw,
    )
    return fig


def _series(rs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[tuple, list[dict[str, Any]]]:
    out: dict[tuple, list[dict[str, Any]]] = {}
    for r in rs:
        out.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    return out


def _colours(names: Iterable[Any]) -> dict[Any, str]:
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(dict.fromkeys(names))}


def _err(rs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    med = [value(r, name) for r in rs]
    hi = [None if m is None or value(r, name, "p80") is None else value(r, name, "p80") - m for r, m in zip(rs, med)]
    lo = [None if m is None or value(r, name, "p20") is None else m - value(r, name, "p20") for r, m in zip(rs, med)]
    return {"type": "data", "symmetric": False, "array": hi, "arrayminus": lo, "thickness": 1, "width": 3}


# The figures read flat rows (moebench.report.rows) plus a `series` key: the run's label in legends.


def pareto(rs: list[dict[str, Any]]) -> Optional[go.Figure]:
    """Throughput per GPU vs interactivity, one curve per model × hardware × basis, labelled with $/M tokens."""
    pts = [r for r in rs if value(r, "interactivity_tokens_per_s_per_user") and value(r, "output_tokens_per_s_per_gpu")]
    if not pts:
        return None
    fig = go.Figure()
    colour = _colours(r["model"] for r in pts)
    for (model, hw, basis), s in _series(pts, ("model", "series", "basis")).items():
        s = sorted(s, key=lambda r: r["batch_size"])
        xy = [(value(r, "interactivity_tokens_per_s_per_user"), value(r, "output_tokens_per_s_per_gpu")) for r in s]
        front = set(pareto_front(xy))
        usd = [value(r, "usd_per_mtok_blended") for r in s]
        label = [f"${fmt(u)}/M" if u is not None else "" for u in usd]
        custom = [[esc(model), esc(hw), r["batch_size"], fmt(u), esc(basis),
                   fmt(value(r, "usd_per_mtok_input")), fmt(value(r, "usd_per_mtok_output")), per_unit(r["device"])]
                  for r, u in zip(s, usd)]
        fig.add_trace(go.Scatter(
            x=[p[0] for p in xy], y=[p[1] for p in xy], mode="markers+text+lines" if len(s) > 1 else "markers+text",
            name=f"{esc(model)} · {esc(hw)}" + ("" if basis == "measured" else f" ({esc(basis)})"),
            text=label, textposition="top center", textfont={"size": 10},
            marker={"symbol": SYMBOL.get(basis, "circle"), "size": 10, "color": colour[model],
                    "opacity": [1.0 if i in front else 0.45 for i in range(len(s))]},
            line={"dash": DASH.get(basis, "solid"), "color": colour[model], "width": 1.5},
            error_x=_err(s, "interactivity_tokens_per_s_per_user"), error_y=_err(s, "output_tokens_per_s_per_gpu"),
            customdata=custom,
            hovertemplate="%{customdata[0]} on %{customdata[1]}<br>batch %{customdata[2]} (%{customdata[4]})"
            "<br>interactivity %{x:.3g} tok/s/user<br>throughput %{y:.3g} tok/s/%{customdata[7]}"
            "<br>$/M tokens: blended %{customdata[3]}, in %{customdata[5]}, out %{customdata[6]}<extra></extra>",
        ))
    unit = "/".join(sorted({per_unit(r["device"]) for r in pts}))  # a CPU run's figures are per process
    return _layout(
        fig, f"Throughput per {unit} vs interactivity (batch-size sweep; labels: blended $/M tokens)",
        xaxis={"title": "interactivity (output tokens/s per user) →", "type": "log"},
        yaxis={"title": f"output tokens/s per {unit} →", "type": "log"},
    )


def cost_by_hardware(rs: list[dict[str, Any]]) -> Optional[go.Figure]:
    """Blended $/M tokens per hardware and batch size, one bar per model; each bar states its interactivity."""
    pts = [r for r in rs if value(r, "usd_per_mtok_blended") is not None]
    if not pts:
        return None
    fig = go.Figure()
    colour = _colours(r["model"] for r in pts)
    for model, s in _series(pts, ("model",)).items():
        model = model[0]
        s = sorted(s, key=lambda r: (str(r["series"]), r["batch_size"]))
        inter = [value(r, "interactivity_tokens_per_s_per_user") for r in s]
        fig.add_trace(go.Bar(
            x=[[esc(r["series"]) for r in s], [f"batch {r['batch_size']}" for r in s]],
            y=[value(r, "usd_per_mtok_blended") for r in s], name=esc(model),
            marker={"color": colour[model], "pattern": {"shape": [PATTERN.get(r["basis"], "") for r in s]}},
            error_y=_err(s, "usd_per_mtok_blended"),
            text=[f"@{fmt(i)} tok/s/user" for i in inter], textposition="outside", textfont={"size": 9},
            customdata=[[esc(model), esc(r["basis"]), fmt(i), fmt(value(r, "usd_per_mtok_input")),
                         fmt(value(r, "usd_per_mtok_output"))] for r, i in zip(s, inter)],
            hovertemplate="%{customdata[0]} (%{customdata[1]})<br>%{x}<br>blended $%{y:.3g}/M tokens"
            "<br>input $%{customdata[3]}/M, output $%{customdata[4]}/M<br>at %{customdata[2]} tok/s/user<extra></extra>",
        ))
    return _layout(
        fig, "$/M tokens by hardware (blended 3:1; hatched = extrapolated, cross-hatched = projected)",
        barmode="group", yaxis={"title": "USD per million tokens (blended)", "type": "log"},
        xaxis={"title": "hardware · batch size"},
    )


def intelligence_vs_cost(rs: list[dict[str, Any]]) -> list[go.Figure]:
    """Published score vs blended $/M tokens, one figure per index version (versions are never mixed)."""
    pts = [r for r in rs if r.get("intelligence_score") is not None and value(r, "usd_per_mtok_blended")]
    figs = []
    for (index, version), s in _series(pts, ("intelligence_index", "intelligence_version")).items():
        fig = go.Figure()
        colour = _colours(r["model"] for r in s)
        for (model, hw, basis), t in _series(s, ("model", "series", "basis")).items():
            t = sorted(t, key=lambda r: r["batch_size"])
            fig.add_trace(go.Scatter(
                x=[value(r, "usd_per_mtok_blended") for r in t], y=[r["intelligence_score"] for r in t],
                mode="markers+text", text=[esc(model) if i == 0 else "" for i in range(len(t))],
                textposition="middle right", name=f"{esc(model)} · {esc(hw)}" + ("" if basis == "measured" else f" ({esc(basis)})"),
                marker={"symbol": SYMBOL.get(basis, "circle"), "size": 11, "color": colour[model]},
                customdata=[[esc(model), esc(hw), r["batch_size"], fmt(value(r, "interactivity_tokens_per_s_per_user")),
                             fmt(value(r, "intelligence_score_per_usd_per_mtok"))] for r in t],
                hovertemplate="%{customdata[0]} on %{customdata[1]}, batch %{customdata[2]}<br>score %{y:g}"
                "<br>blended $%{x:.3g}/M at %{customdata[3]} tok/s/user<br>score per $/M: %{customdata[4]}<extra></extra>",
            ))
        figs.append(_layout(
            fig, f"Intelligence vs cost — {esc(index)} {esc(version)} (one point per batch size)",
            xaxis={"title": "USD per million tokens (blended) ← cheaper", "type": "log"},
            yaxis={"title": f"score ({esc(index)} {esc(version)}) ↑"},
        ))
    return figs


def time_breakdown(entry: dict[str, Any]) -> go.Figure:
    """Stacked compute / transfer / wait ms per layer, grouped by rank, for one profiled model run; a rank's idle
    (step time outside every region) is its own bar after the layers (per-layer idle, where given, stacks on top)."""
    layers = entry["layers"]  # list of {rank, layer, compute_ms, transfer_ms, wait_ms, idle_ms}
    x = [[f"rank {r['rank']}" for r in layers], [esc(r["layer"]) for r in layers]]
    fig = go.Figure()
    for phase, colour in PHASE_COLOURS.items():
        ys = [r.get(f"{phase}_ms") for r in layers]
        if all(y is None for y in ys):
            continue
        fig.add_trace(go.Bar(x=x, y=ys, name=f"{phase} ms", marker={"color": colour},
                             hovertemplate=f"%{{x}}<br>{phase} %{{y:.3g}} ms<extra></extra>"))
    return _layout(
        fig, f"Where the time goes per layer and rank — {esc(entry['title'])}", barmode="stack",
        yaxis={"title": "ms per step"}, xaxis={"title": "rank · layer"}, height=420,
    )


def expert_heatmap(entry: dict[str, Any]) -> go.Figure:
    """Tokens routed to each expert (columns) in each layer (rows), for one profiled MoE run."""
    z = entry["tokens_LE"]
    ylab = [esc(y) for y in entry.get("layer_labels") or [f"L{i}" for i in range(len(z))]]
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"e{j}" for j in range(len(z[0]) if z else 0)], y=ylab, colorscale="Viridis",
        colorbar={"title": "tokens"}, hovertemplate="%{y} expert %{x}: %{z} tokens<extra></extra>",
    ))
    bal = entry.get("balancedness")
    sub = f" (balancedness mean/max {fmt(bal)})" if bal is not None else ""
    return _layout(
        fig, f"Expert load — {esc(entry['title'])}{sub}", xaxis={"title": "expert"},
        yaxis={"title": "layer", "autorange": "reversed"}, height=max(300, 40 + 22 * len(z)),
    )
