"""Statistics as result documents carry them: median, p20–p80 spread, p90/p99 tail, n, basis, unit, samples."""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Literal, Optional

# How a number was obtained (docs/report.md): timed, timed on N of L layers and scaled, an analytic projection,
# or an estimate from catalog figures (energy from the all-in power) — never shown as measured.
Basis = Literal["measured", "extrapolated", "projected", "estimated"]


def percentile(xs: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    s = sorted(xs)
    if not s:
        return math.nan
    pos = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


# What every statistic reports besides n (docs/measure.md): the median, p20–p80 as its spread, p90 and p99 as
# the tail. Files written before p90/p99 existed lack them; readers treat them as optional.
PERCENTILES: dict[str, float] = {"median": 50, "p20": 20, "p80": 80, "p90": 90, "p99": 99}


def stat(samples: Iterable[float], basis: Basis = "measured", unit: str = "") -> dict[str, Any]:
    """Median, p20, p80, p90, p99 and n of `samples`, labelled with how they were obtained; samples kept for the
    gate."""
    xs = [float(x) for x in samples]
    return {
        **{key: percentile(xs, q) for key, q in PERCENTILES.items()},
        "n": len(xs),
        "basis": basis,
        "unit": unit,
        "samples": xs,
    }


def is_number(v: Any) -> bool:
    """A JSON number (bool is not one, though Python makes it an int)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def profiled(doc: dict[str, Any]) -> bool:
    """Whether a result's records were timed with the profiler on (`--profile`): their latencies include its
    overhead, which the record's `profile.overhead` measured side by side."""
    return any(isinstance(r, dict) and r.get("profile") for r in doc.get("records") or [])


def derive(s: dict[str, Any] | None, fn: Callable[[float], Optional[float]], unit: str = "", basis: Basis | None = None):
    """A statistic of fn(sample) per sample (so monotone maps keep their spread honest); None propagates."""
    if s is None:
        return None
    ys = [fn(x) for x in s["samples"]]
    if any(y is None for y in ys):
        return None
    return stat(ys, basis or s["basis"], unit)


