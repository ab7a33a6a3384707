"""One rule for option values: a command line that does not parse (an unknown option, a missing value, `--price
abc`) is a usage error, exit 2; a value that parses but is wrong (out of range, not finite) is bad input, exit 3,
as a wrong value in a workload is. typer's own `min=` would make `--price -3` exit 2 while `--price inf` exits 3,
so range checks are these callbacks instead."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional, TypeVar

import typer

from moebench.errors import BadInput

N = TypeVar("N", int, float)


def at_least(lo: float, *, above: bool = False) -> Callable[[typer.CallbackParam, Optional[N]], Optional[N]]:
    """A typer callback: the value must be finite and ≥ `lo` (> `lo` with `above`); None (not given) passes."""

    def check(param: typer.CallbackParam, value: Optional[N]) -> Optional[N]:
        if value is None:
            return value
        if not math.isfinite(value) or value < lo or (above and value == lo):
            name = param.opts[0] if param.opts else param.name
            kind = "a finite number " if isinstance(value, float) else ""
            raise BadInput(f"{name} must be {kind}{'>' if above else '≥'} {lo:g}, got {value}")
        return value

    return check


def out_folder(param: typer.CallbackParam, value: str) -> Path:
    """A typer callback for `--out`, declared `str`: typer's Path type reads `--out ''` as the working folder, and
    results would land wherever the shell stood; here it is refused (exit 3) as `check_out_dir` refuses it."""
    if not value.strip():
        raise BadInput(f"{param.opts[0] if param.opts else param.name}: empty; give a folder")
    return Path(value)
