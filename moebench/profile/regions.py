"""Named regions `L{layer}/{phase}` around every phase of every layer.

When no recorder is installed (plain runs) `region` is a shared no-op context, so the model code pays one
attribute lookup per phase. A recorder (moebench.profile) installs itself with `set_recorder`.
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Protocol


class Recorder(Protocol):
    def region(self, name: str) -> ContextManager[Any]: ...


_NULL = contextlib.nullcontext()
_RECORDER: Recorder | None = None


def set_recorder(rec: Recorder | None) -> None:
    global _RECORDER
    _RECORDER = rec


def get_recorder() -> Recorder | None:
    return _RECORDER


def region(name: str) -> ContextManager[Any]:
    rec = _RECORDER
    return _NULL if rec is None else rec.region(name)
