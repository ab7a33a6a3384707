"""How reports, tables and the commands print numbers: 3 significant digits, parameters as 7.24B."""

from __future__ import annotations

from typing import Optional


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
