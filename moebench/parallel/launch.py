"""`moebench run WORKLOAD --nproc N`: N local ranks through torch's elastic launcher (the API behind torchrun),
each running `python -m moebench run WORKLOAD …` with the same options.

This process hosts the rendezvous store and watches the ranks; when one fails it stops the others (the agent
sends SIGTERM, then SIGKILL after its shutdown timeout), and prints the verdict as one line naming the rank that
caused it, then exits 5. Rank 0 keeps the partial results file up to date; the verdict is written into it.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Optional

from moebench.errors import BadInput, ExitCode, MoebenchError, RunFailed
from moebench.parallel.faults import LAUNCH_DIR_ENV

# exit codes a rank reports with its own one-line message already printed (bad input, environment)
_SELF_REPORTED = {int(ExitCode.USAGE), int(ExitCode.BAD_INPUT), int(ExitCode.ENVIRONMENT)}


def inside_launcher() -> bool:
    """True when this process is already one rank of a launched job (torchrun, srun, or our own agent)."""
    return "RANK" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) > 1


def forwarded_args(ctx: Any, workload: Path, drop: tuple[str, ...] = ("nproc",)) -> list[str]:
    """The current `moebench run` invocation (its click context `ctx`), re-spelled for the ranks minus --nproc.

    Read from the context rather than a fixed list, so options added to `run` later are forwarded too.
    """
    out = [str(workload)]
    for p in ctx.command.params:
        if p.name in drop or getattr(p, "param_type_name", "") != "option":
            continue
        v = ctx.params.get(p.name)
        if v is None or v == p.default:
            continue
        if p.is_flag:
            out.append(p.opts[0] if v else p.secondary_opts[0])
            continue
        out += [p.opts[0], str(v.value if isinstance(v, enum.Enum) else v)]
    return out


def _quiet_agent() -> None:
    """The agent logs every worker it starts and stops; the verdict line says what matters."""
    if os.environ.get("MOEBENCH_DEBUG") == "1":
        return
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def launch_local(nproc: int, args: list[str], *, wl: Any, source: str, out_dir: Path,
                 device: Optional[str] = None) -> None:
    """Run `moebench run *args` on `nproc` local ranks; returns when all succeeded, raises RunFailed otherwise.
    `device`: the --device override, checked here once rather than by every rank (whose exits would race)."""
    from moebench.device import resolve_device

    if nproc != wl.parallel.world_size:
        raise BadInput(f"{source}: parallel.world_size is {wl.parallel.world_size} but --nproc is {nproc}")
    resolve_device(device or wl.device)
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from moebench.models import entry_arch
    from moebench.parallel.mesh import MeshShape, check_plan
    from moebench.results import new_run_id

    for entry in wl.model_entries:  # fail before starting N processes: the ranks would all say the same
        cfg = entry_arch(entry.name, entry.weights, entry.layers)[1]
        check_plan(MeshShape.of(wl.parallel), cfg, entry.name, wl.scenario.batch_sizes, source)
    _quiet_agent()
    run_id = new_run_id(wl.name)
    partial = Path(out_dir) / f"{run_id}.json"
    launch_dir = Path(tempfile.mkdtemp(prefix="moebench-launch-"))
    env = {"MOEBENCH_RUN_ID": run_id, LAUNCH_DIR_ENV: str(launch_dir)}
    if "TORCH_CPP_LOG_LEVEL" not in os.environ and os.environ.get("MOEBENCH_DEBUG") != "1":
        # gloo logs a peer's failure from C++ ("Rank 1 successfully reached monitoredBarrier, but received errors
        # …") beside the one line that names the rank; MOEBENCH_DEBUG=1 keeps it
        env["TORCH_CPP_LOG_LEVEL"] = "FATAL"
    if "OMP_NUM_THREADS" not in os.environ:  # as torchrun does: N ranks must not each claim every core
        from moebench.machine import usable_cpus

        env["OMP_NUM_THREADS"] = str(max(1, usable_cpus() // nproc))
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
        rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1,
        logs_specs=DefaultLogsSpecs(log_dir=str(launch_dir / "logs")),
    )
    try:
        elastic_launch(config, sys.executable)("-m", "moebench", "run", *args)
    except ChildFailedError as exc:
        if _torn_down(exc.failures, launch_dir, nproc):
            _teardown_note(exc.failures, nproc, partial)
            return
        raise _verdict(exc.failures, launch_dir, nproc, partial, wl, source) from None
    except SignalException as exc:
        msg = f"interrupted ({signal.Signals(exc.sigval).name})"
        if all((launch_dir / f"rank{r}.done").exists() for r in range(nproc)):  # rank 0 had saved them whole
            raise MoebenchError(f"{msg} in the teardown, after every rank had finished; the results in {partial} "
                                "are whole", code=ExitCode.INTERRUPTED) from None
        from moebench.outdir import fallback_path

        if not (_records(partial) or _records(fallback_path(partial))):  # only the header rank 0 writes when
            # the ranks are up, or nothing: a file of no records is one report, compare and the gate refuse
            partial.unlink(missing_ok=True)
            raise MoebenchError(f"{msg} before the first record was whole; nothing saved",
                                code=ExitCode.INTERRUPTED) from None
        path = _finish_partial(partial, msg, [], wl, source)
        raise MoebenchError(f"{msg}; partial results in {path}", code=ExitCode.INTERRUPTED) from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(launch_dir, ignore_errors=True)


def _stopped(code: int) -> bool:
    """A rank the agent stopped (SIGTERM) when another died: by the signal, or through moebench's handler (130)."""
    return code in (-int(signal.SIGTERM), int(ExitCode.INTERRUPTED))


def _torn_down(failures: dict[int, Any], launch_dir: Path, world: int) -> bool:
    """Every rank had marked its work whole (rank 0 its results saved) and the ranks that failed died by a signal
    (gloo's abort in the teardown) or were stopped: the run stands. An exit code of its own (a crash printing the
    table) is still a failure."""
    done = all((launch_dir / f"rank{r}.done").exists() for r in range(world))
    return done and all(f.exitcode < 0 or _stopped(f.exitcode) for f in failures.values())


def _teardown_note(failures: dict[int, Any], world: int, partial: Path) -> None:
    """Every rank finished its work (rank 0 had saved the whole results) before one died tearing its process group
    down: the run stands, and the line says what happened."""
    codes = {r: f.exitcode for r, f in failures.items()}
    # the agent stops the ranks still exiting when one dies: they are not what went wrong
    own = {r: c for r, c in codes.items() if not _stopped(c)} or codes
    ranks = ", ".join(f"{r} ({_how(c)})" for r, c in sorted(own.items()))
    print(f"note: rank{'s' if len(own) > 1 else ''} {ranks} of {world} died in the process group's teardown, after every rank had finished; "
          f"the results in {partial} are whole", file=sys.stderr)


def _how(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


def _verdict(failures: dict[int, Any], launch_dir: Path, world: int, partial: Path, wl: Any, source: str) -> BaseException:
    """The one line: who caused the failure and how, from exit codes and the ranks' own reports."""
    reports = {}
    for p in launch_dir.glob("rank*.json"):
        try:
            r = json.loads(p.read_text())
            reports[r["rank"]] = r
        except (OSError, ValueError, KeyError):
            continue
    codes = {r: f.exitcode for r, f in failures.items()}
    own = [c for c in codes.values() if c in _SELF_REPORTED]
    if not reports and own and all(c in _SELF_REPORTED or _stopped(c) for c in codes.values()):
        # a rank refused the input or the machine and said why (exit 3 or 4); the others were stopped after it
        return SystemExit(own[0])
    culprits: list[int] = []
    local = sorted(r for r, rep in reports.items() if rep["kind"] == "local")
    # a rank the agent stopped (SIGTERM, or 130 through moebench's handler) after another one failed by itself is
    # a survivor, not a culprit, even when the signal came before it could write its own report
    died = sorted(r for r, c in codes.items() if not (local and _stopped(c))
                  and (c < 0 or (c != int(ExitCode.RUN_FAILED) and r not in reports)))
    if died:
        r = died[0]
        culprits, msg = [r], f"rank {r} of {world} died ({_how(codes[r])})"
    elif local:
        culprits, msg = [local[0]], reports[local[0]]["message"]
    else:
        named = sorted({c for rep in reports.values() for c in rep["culprits"]})
        first = reports.get(0) or next(iter(reports.values()), None)
        if named and first:
            culprits = named
            msg = next((rep["message"] for rep in reports.values() if rep["culprits"]), first["message"])
        elif first:
            msg = first["message"]
        else:
            r = min(codes) if codes else 0
            culprits, msg = [r], f"rank {r} of {world} failed (exit code {codes.get(r)})"
    if died and "(during " not in msg:
        msg += _during(partial, wl)
    try:
        path = _finish_partial(partial, msg, culprits, wl, source)
    except RunFailed as exc:  # --out refused the file: it says where the results went instead (unless rank 0 did)
        said = exc.partial_path is not None and exc.partial_path in msg
        return RunFailed(msg if said else f"{msg}; {exc}", partial_path=exc.partial_path)
    return RunFailed(f"{msg}; partial results in {path}", partial_path=str(path))


def _records(partial: Path) -> Optional[int]:
    """How many records rank 0's partial results hold; None when it wrote none that can be read."""
    try:
        return len(json.loads(partial.read_text())["records"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _during(partial: Path, wl: Any) -> str:
    """` (during mixtral:debug batch 8)`: the first model × batch size the partial results lack."""
    done = _records(partial)
    if done is None:
        return ""
    todo = [f"{e.name} batch {b}" for e in wl.model_entries for b in wl.scenario.batch_sizes]
    return f" (during {todo[done]})" if done < len(todo) else ""


def _finish_partial(path: Path, msg: str, culprits: list[int], wl: Any, source: str) -> Path:
    """Write the verdict into rank 0's partial results file (or a minimal one, if rank 0 never wrote it)."""
    from moebench.outdir import fallback_path, save_result
    from moebench.results import new_doc

    doc: Optional[dict[str, Any]] = None
    for saved in (fallback_path(path), path):  # rank 0 saved its latest there when --out refused a write
        if doc is None and saved.is_file():
            try:
                doc = json.loads(saved.read_text())
            except (OSError, ValueError):
                doc = None
    if doc is None:
        doc = new_doc(kind="engine", run_id=path.stem, workload_path=source, workload=wl.model_dump(mode="json"),
                      hardware={}, world_size=wl.parallel.world_size)
    doc.update(complete=False, error=msg, failed_ranks=culprits)
    return save_result(path, doc)
