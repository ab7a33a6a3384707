"""Where a run's results go: `--out` is checked before anything is measured, and a result that `--out` refuses
later (disk full, remounted read-only, permissions changed) is saved to a named fallback file instead of lost.

An `--out` that cannot be written is the environment's fault (exit 4): the argument is a well-formed folder, and
the same command works on a writable disk. A write that fails after measuring began is a failed run (exit 5),
whose measurements are saved elsewhere and named in the one-line error.
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from moebench.errors import BadInput, EnvironmentProblem, RunFailed
from moebench.results import dumps, write_atomic

# A result file is tens of KB; with per-phase profiles and many records, a few hundred. Less free space than this
# would fail on the first write, after the first model was measured.
MIN_FREE_BYTES = 1 << 20


def check_out_dir(out_dir: str | Path) -> Path:
    """Create `out_dir` if needed and prove a file can be written there; one line otherwise."""
    if not str(out_dir).strip():  # Path("") is the working folder: results would land wherever the shell stood
        raise BadInput("--out: empty; give a folder")
    p = Path(out_dir)
    if p.exists() and not p.is_dir():
        raise BadInput(f"--out {p}: exists and is not a folder")
    above = next((q for q in p.parents if q.exists()), None)
    if above is not None and not above.is_dir():  # `afile/sub`: the argument's fault, as `afile` is
        raise BadInput(f"--out {p}: {above} is not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".moebench-probe-", dir=p)
        try:
            os.write(fd, b"probe")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
        st = os.statvfs(p)
    except OSError as exc:
        raise EnvironmentProblem(f"--out {p}: cannot write there ({exc.strerror or exc})") from None
    free = st.f_bavail * st.f_frsize
    if free < MIN_FREE_BYTES:
        raise EnvironmentProblem(f"--out {p}: only {free // 1024} KB free; a result needs up to "
                                 f"{MIN_FREE_BYTES // 1024} KB")
    return p


@contextmanager
def out_dir_for(out_dir: str | Path, *, tidy: bool = True) -> Iterator[Path]:
    """check_out_dir for the length of a command: the folders it had to create are removed again, while still
    empty, when the command fails (a refused workload must not leave an empty results folder behind). `tidy`
    False for every rank but rank 0, whose results the folder is for."""
    p = Path(out_dir)
    # deepest first; `a/..` names no folder of its own (rmdir refuses it) and `a` still goes
    made = [q for q in (p, *p.parents) if not q.exists() and q.name not in ("..", ".")]
    try:
        yield check_out_dir(p)
    except BaseException:
        for q in made if tidy else []:
            try:
                q.rmdir()  # refuses a folder with anything in it: results are never removed
            except OSError:
                break
        raise


def fallback_path(path: Path) -> Path:
    """Where a result goes when its folder refuses it: the system's temporary folder ($TMPDIR), same file name."""
    return Path(tempfile.gettempdir()) / f"moebench-unsaved-{path.name}"


class ResultNotSaved(RunFailed):
    """`--out` refused a result write; the document went to `partial_path` (or stdout) instead."""


def save_result(path: str | Path, doc: dict[str, Any],
                write: Callable[[Path, dict[str, Any]], Path] = write_atomic) -> Path:
    """write(path, doc) (write_atomic, or a schema-checked write); when that fails with an OSError, the document
    is written to fallback_path (or, if that fails too, printed on stdout) and ResultNotSaved (exit 5) says where."""
    path = Path(path)
    try:
        return write(path, doc)
    except OSError as exc:
        why = f"cannot write {path} ({exc.strerror or exc})"
    if not doc.get("complete"):  # a complete document stays complete: only its place changed
        doc.setdefault("error", why)
    spare = fallback_path(path)
    try:
        write(spare, doc)
    except OSError:
        sys.stdout.write(dumps(doc) + "\n")
        sys.stdout.flush()
        raise ResultNotSaved(f"{why}; the results were printed on stdout instead") from None
    raise ResultNotSaved(f"{why}; the results were saved to {spare} instead", partial_path=str(spare))


def save_stopped(exc: BaseException, doc: dict[str, Any], path: Path) -> None:
    """A run that `exc` stopped after measuring began: save `doc`, what was measured (its `complete` still
    false), to `path` with the reason in `error`, and raise the one line the CLI prints: interrupted (Ctrl-C or
    SIGTERM: exit 130) or out of memory (exit 5), naming the file; before the first record (or kernel point) is
    whole, nothing is saved and the line says so. Returns, for the caller to re-raise `exc`, when `exc` is
    anything else (after saving what was measured), or when `exc` is a write that `--out` refused (the document
    was saved elsewhere already). The one path of model and kernel workloads."""
    from moebench.errors import ExitCode, MoebenchError, Terminated

    if isinstance(exc, ResultNotSaved):
        return
    by = " by SIGTERM" if isinstance(exc, Terminated) else ""
    if not (doc.get("records") or doc.get("points")):
        # stopped while setting up (measuring roofs, building a model) or inside the first model × batch size: a
        # file of no records would be one that report, compare and the gate refuse
        when = "anything was measured" if not doc else f"the first {'point' if 'points' in doc else 'record'} was whole"
        if isinstance(exc, KeyboardInterrupt):
            raise MoebenchError(f"interrupted{by} before {when}; nothing saved", code=ExitCode.INTERRUPTED) from None
        if _out_of_memory(exc):
            raise RunFailed(f"out of memory before {when}: {exc}; nothing saved") from exc
        return
    how = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
    doc["error"] = f"interrupted ({how})" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
    save_result(path, doc)
    if isinstance(exc, KeyboardInterrupt):
        raise MoebenchError(f"interrupted{by}; partial results in {path}", code=ExitCode.INTERRUPTED) from None
    if _out_of_memory(exc):
        raise RunFailed(f"out of memory: {exc}; partial results in {path}", partial_path=str(path)) from exc


def _out_of_memory(exc: BaseException) -> bool:
    import torch  # the runners that measure have imported it already

    return isinstance(exc, torch.OutOfMemoryError)
