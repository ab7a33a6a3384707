"""`moebench compare A.json B.json ...`: side-by-side tables with ratios, per model × batch size."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from moebench.cli._output import emit_json, fmt, out
from moebench.report.rows import per_unit


def _key(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"R{i}"


def _runs_table(res):
    from rich.table import Table

    t = Table(title="runs compared — ratios are to the first run holding each record (B/A = B ÷ A)", title_justify="left")
    for c in ("", "label", "file", "hardware", "device · dtype · kernels", "ranks", "routing", "price (tier)",
              "machine", "git sha", "created (UTC)"):
        t.add_column(c)
    for i, r in enumerate(res["runs"]):
        price = (f"${fmt(r['usd_per_gpu_hour'])}/{per_unit(r['device'])}-h ({r['price_tier']})"
                 if r["usd_per_gpu_hour"] is not None else "—")
        t.add_row(_key(i), escape(r["label"]), escape(r["file"]), escape(f"{r['hardware_name']} ({r['hardware_id']})"),
                  escape(" · ".join(str(r[k] or "—") for k in ("device", "dtype", "kernels"))),
                  str(r["world_size"] or "—"),
                  escape(r["routing"] or "—"), escape(price), _machine(r["contention"]), escape((r["git_sha"] or "—")[:12]),
                  escape(str(r["created_utc"] or "—")))
    return t


def _machine(c) -> str:
    """Whether the run had the machine to itself: quiet, contended (the notes say why), or not recorded."""
    if not c["recorded"]:
        return "[dim]not recorded[/dim]"
    return "[bold yellow]contended[/bold yellow]" if c["contended"] else "quiet"


def _group_table(g, labels: list[str], runs: list[dict]):
    from rich.table import Table

    from moebench.metrics import BY_NAME
    from moebench.report.tables import spread

    keys = {lb: _key(i) for i, lb in enumerate(labels)}
    ref = g["reference"]
    basis = ", ".join([f"{keys[lb]} {b}" for lb, b in g["basis"].items() if b and b != "measured"]
                      # a counter (nvml, rapl, dcgm) measured it; only an estimate or its absence is a caveat
                      + [f"{keys[lb]} energy {e}" for lb, e in g["energy_source"].items()
                         if e in ("estimated", "not measured")])
    # per-GPU ratios divide by these: say them where they differ or where a projection's layout chose them
    ws = {lb: w for lb, w in g["world_size"].items() if w is not None}
    if len(set(ws.values())) > 1 or any(g["basis"][lb] == "projected" for lb in ws):
        units = {lb: per_unit(next((r["device"] for r in runs if r["label"] == lb), None)) for lb in ws}
        basis = ", ".join(filter(None, [", ".join(f"{keys[lb]} {w} {units[lb]}{'s' if w > 1 else ''}"
                                                  for lb, w in ws.items()), basis]))
    t = Table(title=escape(f"{g['model']} · batch {g['batch_size']} · prompt {g['prompt_tokens']} + output {g['output_tokens']}"
                           f" · {g['serving'] or 'unknown'} serving")
              + (f" [dim]({escape(basis)})[/dim]" if basis else ""), title_justify="left",
              caption=escape(f"note: {g['note']}") if g["note"] else None, caption_justify="left")
    t.add_column("metric")
    t.add_column("better")
    for lb in labels:
        t.add_column(f"{keys[lb]} {escape(lb)}", justify="right")
    others = [lb for lb in labels if lb != ref and g["basis"][lb] is not None]  # runs holding this point
    for lb in others:
        t.add_column(f"{keys[lb]}/{keys[ref]}", justify="right")
    for m in g["metrics"]:
        cells = [m["metric"], m["better"]]
        for lb in labels:
            cells.append(spread(m["values"][lb], tail=BY_NAME[m["metric"]].tail))
        for lb in others:
            r = m["ratios"][lb]
            if r is None:
                cells.append("—")
                continue
            good = (r > 1) == (m["better"] == "higher")
            style = "" if abs(r - 1) < 0.02 else ("green" if good else "red")
            cells.append(f"[{style}]×{r:.3g}[/]" if style else f"×{r:.3g}")
        t.add_row(*cells)
    return t


def register(app: typer.Typer) -> None:
    @app.command()
    def compare(
        results: list[Path] = typer.Argument(
            ..., help="Two or more result JSON files (other hardware, other commits), folders of them, or projections."),
        json_: bool = typer.Option(False, "--json", help="Print the comparison as one JSON document on stdout."),
    ) -> None:
        """Side-by-side tables per model × batch size, with each metric's ratio to the first file."""
        from moebench.report.compare import compare as run_compare
        from moebench.report.compare import require_records
        from moebench.report.sources import load_sources, result_files

        results = result_files(results)
        sources, left_out = require_records(results, load_sources(results))
        res = run_compare(sources)
        res["notes"] = left_out + res["notes"]
        if json_:
            emit_json(res)
            return
        out.print(_runs_table(res))
        for note in res["notes"]:
            out.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False)
        labels = [r["label"] for r in res["runs"]]
        for g in res["groups"]:
            out.print(_group_table(g, labels, res["runs"]))
