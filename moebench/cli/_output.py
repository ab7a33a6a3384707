"""stdout is for data (tables, or exactly one JSON document with --json); logs and progress go to stderr."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Optional

from rich.console import Console

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


def fmt(x: Optional[float], digits: int = 3) -> str:
    """Human number: 3 significant digits, thousands kept readable; None -> em dash."""
    if x is None:
        return "—"
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 1e5:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}g}"


def fmt_params(n: Optional[float]) -> str:
    if n is None:
        return "—"
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(int(n))
