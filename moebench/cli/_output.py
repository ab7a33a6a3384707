"""stdout is for data (tables, or exactly one JSON document with --json); logs and progress go to stderr."""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console

from moebench.report.format import fmt, fmt_params  # noqa: F401  (the commands print numbers as reports do)

# Piped output (CI logs, files) gets a wide table instead of rich's 80-column default.
out = Console(soft_wrap=False, width=None if sys.stdout.isatty() else int(os.environ.get("COLUMNS") or 220))
err = Console(stderr=True, soft_wrap=True)  # log lines stay whole when stderr is piped


def is_rank0() -> bool:
    return os.environ.get("RANK", "0") == "0"


def log(msg: str) -> None:
    if is_rank0():
        err.print(f"[dim]{msg}[/dim]", highlight=False)


def emit_json(doc: Any) -> None:
    from moebench.results import dumps

    sys.stdout.write(dumps(doc) + "\n")
    sys.stdout.flush()
