"""`moebench run [WORKLOAD]`: run a model, kernel or endpoint workload, print its table, write results."""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.markup import escape

from moebench.cli._options import at_least, out_folder
from moebench.cli._output import emit_json, err, is_rank0, log, out
from moebench.errors import BadInput

REPO_WORKLOADS = Path(__file__).resolve().parents[2] / "workloads"


class DeviceChoice(str, enum.Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def default_workload() -> Path:
    for p in (Path("workloads/quickstart.yaml"), REPO_WORKLOADS / "quickstart.yaml"):
        if p.is_file():
            return p
    raise BadInput("no WORKLOAD given and workloads/quickstart.yaml not found (run from the repository root)")



def _show(doc: dict, dest: Any, json_: bool, table: Callable[[dict], Any], wide: bool = False) -> None:
    """One JSON document on stdout, or the result's table (a wide one unfolded); then where the results went."""
    from moebench.report.tables import print_at_natural_width

    if json_:
        emit_json(doc)
    elif wide:
        print_at_natural_width(out, table(doc))
    else:
        out.print(table(doc))
    log(f"results: {dest}")


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        ctx: typer.Context,
        workload: Optional[Path] = typer.Argument(None, help="Workload YAML (default: workloads/quickstart.yaml)."),
        device: Optional[DeviceChoice] = typer.Option(None, "--device", help="Override the workload's device."),
        out_dir: str = typer.Option("results/runs", "--out", callback=out_folder, metavar="PATH", help="Folder for the results JSON."),
        json_: bool = typer.Option(False, "--json", help="Print the result as one JSON document on stdout."),
        repeats: Optional[int] = typer.Option(None, "--repeats", callback=at_least(1), help="Override timing.repeats (the gate's samples)."),
        nproc: Optional[int] = typer.Option(None, "--nproc", callback=at_least(1), help="Launch N local ranks (torch elastic launcher)."),
        profile: bool = typer.Option(False, "--profile", help="Time every phase of every layer on every rank."),
        wide: bool = typer.Option(False, "--wide", help="Every metric in the table, with tail latencies (p90/p99; an endpoint's p99) and end-to-end latency."),
        endpoint: Optional[str] = typer.Option(None, "--endpoint", help="Measure this OpenAI-compatible server "
                                               "(base URL, e.g. http://127.0.0.1:8000/v1) with default load."),
    ) -> None:
        """Run a workload: every model × batch size, timed; ends with the dense-vs-MoE table."""
        from moebench.outdir import out_dir_for
        from moebench.workload import load_workload

        if endpoint is not None and workload is not None:
            raise typer.BadParameter("give either WORKLOAD or --endpoint, not both")
        if endpoint is not None:
            from moebench.endpoint.workload import quick_workload

            path, wl = Path("--endpoint"), quick_workload(endpoint)
        else:
            path = workload or default_workload()
            wl = load_workload(path)
        # before anything is measured: a full or read-only disk is exit 4, not lost results
        with out_dir_for(out_dir, tidy=is_rank0()):
            _dispatch(ctx, wl, path, out_dir=out_dir, device=device, json_=json_, repeats=repeats, nproc=nproc,
                      profile=profile, wide=wide)


def _dispatch(ctx: typer.Context, wl: Any, path: Path, *, out_dir: Path, device: Optional[DeviceChoice], json_: bool,
              repeats: Optional[int], nproc: Optional[int], profile: bool, wide: bool) -> None:
    """The workload, by kind, once --out is known to take a result."""
    from moebench.progress import progress_for
    from moebench.workload import Workload

    if wl.kind == "endpoint":
        from moebench.endpoint.runner import run_endpoint_workload
        from moebench.report.endpoint_table import levels_table

        given = [flag for flag, on in (("--device", device), ("--nproc", nproc), ("--profile", profile)) if on]
        if given:  # the server owns its devices and processes: these would be silently ignored
            raise typer.BadParameter(f"{', '.join(given)}: not for an endpoint workload (the server runs it)")
        if repeats is not None:
            wl = wl.model_copy(update={"timing": wl.timing.model_copy(update={"repeats": repeats})})

        doc, dest = run_endpoint_workload(wl, out_dir=out_dir, workload_path=str(path), log=log)
        _show(doc, dest, json_, lambda d: levels_table(d, wide=wide), wide)
        return
    if not isinstance(wl, Workload):  # kind: kernel
        from moebench.bench.runner import render_table, run_kernel_workload
        from moebench.outdir import save_result
        from moebench.results import new_run_id

        given = [flag for flag, on in (("--nproc", nproc), ("--profile", profile), ("--wide", wide)) if on]
        if given:  # one process times one layer, in a table of its own: these would be silently ignored
            raise typer.BadParameter(f"{', '.join(given)}: not for a kernel workload (one process, one layer)")
        if repeats is not None:  # on the CPU override's timing too, which replaces the main one there
            more = {"repeats": repeats}
            cpu = wl.cpu and wl.cpu.timing and wl.cpu.model_copy(
                update={"timing": wl.cpu.timing.model_copy(update=more)})
            wl = wl.model_copy(update={"timing": wl.timing.model_copy(update=more), **({"cpu": cpu} if cpu else {})})

        dest = out_dir / f"{new_run_id(wl.name)}.json"
        doc = run_kernel_workload(wl, device=device.value if device else None, console_err=log,
                                  progress=progress_for(err, json_=json_, rank0=is_rank0()), partial_path=dest)
        dest = save_result(dest, doc)
        _show(doc, dest, json_, render_table)
        return
    updates: dict = {}
    if repeats is not None:
        updates["timing"] = wl.timing.model_copy(update={"repeats": repeats})
    if profile:
        updates["profile"] = True
    if updates:
        wl = wl.model_copy(update=updates)
    if nproc is not None:
        from moebench.parallel.launch import forwarded_args, inside_launcher, launch_local

        if inside_launcher():  # torchrun / srun already started the ranks: --nproc can only agree
            if nproc != int(os.environ.get("WORLD_SIZE") or os.environ.get("SLURM_NTASKS") or 1):
                raise BadInput(f"--nproc {nproc} disagrees with the launcher's world size; leave --nproc out under torchrun or srun")
        elif nproc > 1 or wl.parallel.world_size > 1:
            launch_local(nproc, forwarded_args(ctx, path), wl=wl, source=str(path), out_dir=out_dir,
                         device=device.value if device else None)
            return
    from moebench.engine.runner import run_workload

    doc, dest = run_workload(wl, device=device.value if device else None, out_dir=out_dir,
                             workload_path=str(path), log=log,
                             progress=progress_for(err, json_=json_, rank0=is_rank0()))
    if not is_rank0():
        return
    from moebench.report.caveats import caveats

    if json_:
        emit_json(doc)
    else:
        from moebench.report.tables import print_run_table

        print_run_table(out, doc, wide=wide)
    for line in caveats(doc):  # under the numbers, once each: the log said "busy" on stderr, maybe unseen
        (err if json_ else out).print(f"[yellow]note:[/yellow] {escape(line)}", highlight=False)
    profiled = [r for r in doc["records"] if r.get("profile")]
    if profiled:
        from moebench.profile import render_summary

        for rec in profiled:  # the "where the time goes" view: data, unless --json owns stdout
            title = f"{rec['model']} batch {rec['batch_size']}"
            if rec.get("basis") == "extrapolated":  # the table above scales to L layers; the profile does not
                title += f" ({rec['layers_run']} of {rec['layers_total']} layers, as run: not extrapolated)"
            (err if json_ else out).print(render_summary(rec["profile"], title=title))
    log(f"results: {dest}")
