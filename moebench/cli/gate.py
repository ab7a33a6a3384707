"""`moebench gate --baseline BASE.json CURRENT.json`: the regression verdict (exit 1 on regression)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from moebench.cli._output import emit_json, fmt, log, out
from moebench.metrics import gated


def _verdict_table(res, base_label: str, cur_label: str):
    from rich.markup import escape
    from rich.table import Table

    t = Table(
        title=f"gate: {escape(cur_label)} vs baseline {escape(base_label)} — factor {res.factor:.0%}, alpha {res.alpha:g}",
        caption="worse = time-equivalent ratio of the medians (current/baseline for lower-is-better, "
        "baseline/current otherwise); runs = the same between the runs' speeds (each run's p20), its one-sided 95% "
        "bound (3 runs a side: the current's best run vs the baseline's worst) with the run counts; "
        "median (p20–p80) ×n samples",
        caption_justify="left",
    )
    for c, j in [("model", "left"), ("batch", "right"), ("metric", "left"), ("better", "left"),
                 ("baseline", "right"), ("current", "right"), ("worse", "right"), ("runs", "right"), ("test", "left"),
                 ("p", "right"), ("verdict", "left")]:
        t.add_column(c, justify=j)
    style = {"regressed": "bold red", "missing": "bold red", "improved": "green", "inconclusive": "yellow", "ok": "", "new": "cyan", "skipped": "dim"}
    # records are keyed by prompt and output length too: when those vary, show them, or a changed scenario reads
    # as the same batch size both "new" and "missing"
    shapes = len({(r.prompt_tokens, r.output_tokens) for r in res.rows}) > 1
    for r in res.rows:
        def cell(m, lo, hi, n):
            return "—" if m is None else f"{fmt(m)} [dim]({fmt(lo)}–{fmt(hi)}) ×{n}[/dim]"

        t.add_row(
            escape(r.model), f"{r.batch_size} [dim]({r.prompt_tokens}+{r.output_tokens})[/dim]" if shapes else str(r.batch_size),
            escape(r.metric), r.better,
            cell(r.baseline_median, r.baseline_p20, r.baseline_p80, r.baseline_n),
            cell(r.current_median, r.current_p20, r.current_p80, r.current_n),
            "—" if r.worse_ratio is None else f"{r.worse_ratio:.3f}",
            "—" if r.runs_ratio is None else f"{r.runs_ratio:.3f} [dim]{r.baseline_runs}/{r.current_runs}[/dim]",
            r.test or "—",
            "—" if r.p_value is None else f"{r.p_value:.2g}",
            f"[{style[r.status]}]{escape(r.verdict_line())}[/]" if style[r.status] else escape(r.verdict_line()),
        )
    return t


def _busy_line(res) -> str | None:
    """Why verdicts were held back on a busy machine, said once for the table (each row says only which side was
    busy); the JSON rows carry each record's reason."""
    held = [r for r in res.rows if r.held_back]
    if not held:
        return None
    whys = sorted({r.contended for r in held}, key=[r.contended for r in held].index)
    more = f" (and {len(whys) - 1} other record(s) like it: --json gives each)" if len(whys) > 1 else ""
    return (f"busy machine: {len(held)} verdict(s) held back as inconclusive — {whys[0]}{more}; "
            "gate runs measured on a quiet machine")


def _load(path: Path) -> dict:
    """A result file; a `moebench project --json` document, which load_result reads as no results file at all, is
    named for what it is."""
    from moebench.errors import BadInput
    from moebench.report.sources import read_projection
    from moebench.results import load_result

    try:
        return load_result(path)
    except BadInput:
        proj = read_projection(path)
        if proj is not None and "schema_version" not in proj and isinstance(proj.get("hardware"), list):
            raise BadInput(f"{path}: a projection (`moebench project --json`), not a measured run: the gate compares "
                           "measured runs (`moebench compare` sets a projection beside them)") from None
        raise


def check_same_workload(base_docs: list[dict], cur_docs: list[dict]) -> None:
    """The gate compares one workload across commits; two different workloads share no record, and every
    baseline record would read as missing — a regression verdict for what is a wrong pair of files (exit 3)."""
    from moebench.errors import BadInput

    def names(docs: list[dict]) -> set[str]:
        return {str((d.get("workload") or {}).get("name")) for d in docs}

    from moebench.gate import record_key

    def keys(docs: list[dict]) -> set[tuple]:
        return {record_key(r) for d in docs for r in d.get("records") or []}

    base, cur = names(base_docs), names(cur_docs)
    if base != cur or len(base) > 1:
        raise BadInput(f"baseline ran workload {', '.join(sorted(base))} and current {', '.join(sorted(cur))}: the "
                       "gate compares runs of one workload (use `moebench compare` for different ones)")
    if keys(base_docs) and keys(cur_docs) and not keys(base_docs) & keys(cur_docs):
        raise BadInput("baseline and current share no model × batch size × scenario (prompt, output, serving): "
                       "nothing to gate — the same workload name with other sizes is another workload")


def register(app: typer.Typer) -> None:
    @app.command()
    def gate(
        current: list[Path] = typer.Argument(..., help="Current result JSON(s); several files are pooled per record."),
        baseline: list[Path] = typer.Option(
            ..., "--baseline", help="Baseline result JSON, or a folder of them (repeat to pool several)."),
        factor: float = typer.Option(0.10, "--factor", help="Tolerated slowdown before significance is asked (0.10 = 10%)."),
        alpha: float = typer.Option(0.002, "--alpha", help="Significance level of the Mann-Whitney U test."),
        metric: Optional[list[str]] = typer.Option(
            None, "--metric", help="Metric to gate (repeatable; dotted for nested: usd_per_mtok.blended). "
            f"Default: {', '.join(gated())}."),
        json_: bool = typer.Option(False, "--json", help="Print the verdict as one JSON document on stdout."),
    ) -> None:
        """Fail (exit 1) when a metric is worse than the baseline by more than the factor AND significantly so."""
        from moebench.gate import gate as run_gate
        from moebench.report.sources import result_files

        baseline = result_files(baseline)
        current = result_files(current)
        base_docs = [_load(p) for p in baseline]
        cur_docs = [_load(p) for p in current]
        check_same_workload(base_docs, cur_docs)
        res = run_gate(base_docs, cur_docs, metrics=metric or None, factor=factor, alpha=alpha)
        for note in res.notes:
            log(f"note: {note}")
        if json_:
            emit_json({**res.to_json(), "baseline": [str(p) for p in baseline], "current": [str(p) for p in current]})
        else:
            out.print(_verdict_table(res, ", ".join(p.name for p in baseline), ", ".join(p.name for p in current)))
            busy = _busy_line(res)
            if busy:
                out.print(busy, highlight=False, markup=False)
        judged = [r for r in res.rows if r.status not in ("skipped", "new")]  # the checks the verdict rests on
        rest = len(res.rows) - len(judged)
        bad = [r for r in res.rows if r.status in ("regressed", "missing")]
        if bad:
            gone = sum(r.status == "missing" for r in bad)
            what = f"; {gone} of them missing from the current run" if gone else ""
            log(f"regression: {len(bad)} of {len(judged)} checks failed{what} "
                f"({', '.join(sorted({f'{r.model} b{r.batch_size} {r.metric}' for r in bad})[:6])}"
                f"{' …' if len(bad) > 6 else ''})")
            raise typer.Exit(1)
        unsure = [r for r in res.rows if r.status == "inconclusive"]
        crowded = [r for r in unsure if r.contended]
        if crowded:  # exit 0, as every inconclusive verdict: measuring again decides (docs/ci-gate.md)
            log(f"inconclusive: {len(crowded)} of {len(judged)} checks were timed on a contended machine — "
                f"{crowded[0].contended}; gate runs measured on a quiet machine")
        if len(unsure) > len(crowded):
            log(f"inconclusive: {len(unsure) - len(crowded)} of {len(judged)} checks are worse by more than the factor "
                "but within the run-to-run spread; measure more runs on both sides and gate again (docs/ci-gate.md)")
        if unsure:
            return
        log(f"ok: no regression in {len(judged)} checks" + (f" ({rest} not judged: new or skipped)" if rest else ""))
