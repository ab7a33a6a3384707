"""`moebench validate WORKLOAD`: schema, model names and parallel layout checked without running anything."""

from __future__ import annotations

from pathlib import Path

import typer

from moebench.cli._output import emit_json, out


def register(app: typer.Typer) -> None:
    @app.command()
    def validate(
        workload: Path = typer.Argument(..., help="Workload YAML file."),
        json_: bool = typer.Option(False, "--json", help="Print one JSON document (the resolved workload)."),
    ) -> None:
        """Check a workload file: every key, value and model name."""
        from moebench.workload import load_workload

        wl = load_workload(workload)
        if wl.kind == "endpoint":  # what `run` checks before its first request; no network needed
            from moebench.endpoint.runner import prepare

            prepare(wl, str(workload))
        if wl.kind == "kernel":  # what `run` checks before it allocates, where the workload's device is here
            from moebench.bench.runner import check_layer_fits
            from moebench.device import resolve_device
            from moebench.errors import EnvironmentProblem

            try:
                dev = resolve_device(wl.device)
            except EnvironmentProblem:  # a GPU workload validated on a laptop: the run checks it there
                pass
            else:
                check_layer_fits(wl.for_device(dev), dev)
        if json_:
            emit_json({"valid": True, "path": str(workload), "workload": wl.model_dump(mode="json")})
        else:
            what = ", ".join(m.name for m in wl.model_entries) if hasattr(wl, "model_entries") else wl.kind
            out.print(f"ok: {workload} ({wl.kind} workload {wl.name!r}: {what})", highlight=False)
