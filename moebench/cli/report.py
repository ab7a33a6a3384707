"""`moebench report RESULTS... --out DIR`: a CSV of every metric and one self-contained HTML report."""

from __future__ import annotations

from pathlib import Path

import typer

from rich.markup import escape

from moebench.cli._options import out_folder
from moebench.cli._output import emit_json, err, log, out


def register(app: typer.Typer) -> None:
    @app.command()
    def report(
        results: list[Path] = typer.Argument(
            ..., help="Result JSON files (any hardware, any commit) or folders of them, and `moebench project --json` "
            "outputs."),
        out_dir: str = typer.Option("results/report", "--out", callback=out_folder, metavar="PATH", help="Folder for report.csv and report.html."),
        title: str = typer.Option("moebench report", "--title", help="Title of the HTML page."),
        json_: bool = typer.Option(False, "--json", help="Print the written paths and row count as one JSON document."),
    ) -> None:
        """Write report.csv (one row per model × batch size × hardware) and report.html (plots, self-contained)."""
        from moebench.errors import BadInput
        from moebench.outdir import out_dir_for
        from moebench.report.compare import require_records
        from moebench.report.html import render
        from moebench.report.rows import rows, write_csv
        from moebench.report.sources import files_text, load_sources, result_files
        from moebench.results import write_text_atomic

        results = result_files(results)
        sources, left_out = require_records(results, load_sources(results))  # before the folder is made
        rs = rows(sources)
        html = render(sources, rs, csv_name="report.csv", title=title, left_out=left_out)  # both before either is written
        with out_dir_for(out_dir):
            try:
                csv_path = write_csv(rs, out_dir / "report.csv")
                html_path = write_text_atomic(out_dir / "report.html", html)
            except OSError as exc:
                raise BadInput(f"--out {out_dir}: cannot write the report ({exc.strerror or exc})") from None
        if json_:
            emit_json({"csv": str(csv_path), "html": str(html_path), "rows": len(rs), "files": [str(p) for p in results]})
        else:
            out.print(f"{csv_path}\n{html_path}")
        log(f"{len(rs)} row{'' if len(rs) == 1 else 's'} from {files_text(sources)}")
        for note in left_out:
            err.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False)
