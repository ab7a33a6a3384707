"""The `moebench` command: one file per verb; each module's `register(app)` adds its command.

Errors: an anticipated failure (MoebenchError) prints one line and exits with its code; anything else is
`internal error: …` with exit 70 (a traceback only with MOEBENCH_DEBUG=1).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import traceback
from typing import Any, Optional

import typer

from moebench import __version__
from moebench.errors import ExitCode, MoebenchError, Terminated

# typer vendors click (typer._click) in recent releases; its usage errors derive from this class.
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")

COMMANDS = ("run", "ls", "validate", "compare", "report", "gate", "project")

app = typer.Typer(
    name="moebench",
    help="Tokenomics benchmarking and profiling for dense and Mixture-of-Experts LLMs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"moebench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Tokenomics benchmarking and profiling for dense and Mixture-of-Experts LLMs."""


for _name in COMMANDS:
    importlib.import_module(f"moebench.cli.{_name}").register(app)


def _fail(msg: str, code: int) -> "NoReturn":  # noqa: F821
    sys.stderr.write(msg.rstrip().replace("\n", " ") + "\n")
    sys.exit(code)


def _on_sigterm(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated("stopped by SIGTERM")


def main(argv: Optional[list[str]] = None) -> None:
    old_term = None
    if threading.current_thread() is threading.main_thread():
        old_term = signal.signal(signal.SIGTERM, _on_sigterm)  # as Ctrl-C: partial results saved and named, exit 130
    try:
        _main(argv)
    finally:
        if old_term is not None:
            # main() called in-process (tests) leaves the caller's handler as it was; the command keeps one to its
            # last instruction, so a SIGTERM while the interpreter and torch shut down exits 130, not 143
            signal.signal(signal.SIGTERM, old_term if argv is not None else _late_sigterm)


def _late_sigterm(signum: int, frame: Any) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(ExitCode.INTERRUPTED))


def _main(argv: Optional[list[str]]) -> None:
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="moebench")
    except MoebenchError as exc:
        _fail("error: " + " ".join(str(exc).split()), int(exc.code))  # one line, whatever the message carries
    except typer.Abort as exc:  # click's wrapping of a KeyboardInterrupt (or Terminated) outside our handlers
        _fail("interrupted by SIGTERM" if isinstance(exc.__cause__, Terminated) else "interrupted",
              int(ExitCode.INTERRUPTED))
    except _ClickException as exc:
        # click's message can carry tabs, newlines and typer's "Value error, " prefix: one plain line
        msg = " ".join(exc.format_message().replace("Value error, ", "").split())
        _fail(f"usage error: {msg}", int(ExitCode.USAGE))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:
        _fail("interrupted by SIGTERM" if isinstance(exc, Terminated) else "interrupted", int(ExitCode.INTERRUPTED))
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if os.environ.get("MOEBENCH_DEBUG") == "1":
            traceback.print_exc()
        _fail(f"internal error: {type(exc).__name__}: {exc}", int(ExitCode.INTERNAL))
    if rv == ExitCode.INTERRUPTED:  # typer turns Ctrl-C outside our own handlers into a plain exit code 130
        _fail("interrupted", int(ExitCode.INTERRUPTED))
    sys.exit(rv if isinstance(rv, int) else 0)
