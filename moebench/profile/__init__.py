"""Where the time goes: region timers, cross-rank wait analysis, Kineto trace analysis, NVML sampling.

The engine needs two names, imported lazily (so `moebench.profile.regions`, which the models import, stays
free of the rest): `ProfileSession`, `render_summary`. The routing overrides every run installs are
moebench.routing.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "ProfileSession": "moebench.profile.session",
    "summarize": "moebench.profile.summary",
    "render_summary": "moebench.profile.summary",
    "hta_metrics": "moebench.profile.trace",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'moebench.profile' has no attribute {name!r}")


__all__ = sorted(_LAZY)
