"""Named regions `L{layer}/{phase}` around every phase of every layer, and `collective` around every
collective call (the regions whose time splits into wait and transfer).

When no recorder is installed (plain runs) both return a shared no-op context, so the model code pays one
attribute lookup per phase. A recorder (moebench.profile) installs itself with `set_recorder`.

Phases: attn, router, dispatch, experts, combine, mlp, allreduce, lm_head (docs/measure.md).
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Protocol


class Recorder(Protocol):
    def region(self, name: str) -> ContextManager[Any]: ...

    def collective(self, name: str) -> ContextManager[Any]: ...


_NULL = contextlib.nullcontext()
_RECORDER: Recorder | None = None


def set_recorder(rec: Recorder | None) -> None:
    global _RECORDER
    _RECORDER = rec


def get_recorder() -> Recorder | None:
    return _RECORDER


def region(name: str) -> ContextManager[Any]:
    """A compute region (e.g. `L3/experts`)."""
    rec = _RECORDER
    return _NULL if rec is None else rec.region(name)


def collective(name: str) -> ContextManager[Any]:
    """A communication region around one collective call (e.g. `L3/dispatch`, `L3/allreduce`)."""
    rec = _RECORDER
    return _NULL if rec is None else rec.collective(name)
