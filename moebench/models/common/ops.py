"""The kernel backend the model pieces call (torch reference on CPU, Triton on CUDA); chosen once per run."""

from __future__ import annotations

from typing import Any

_BACKEND: Any = None


def set_backend(name: str = "auto", device: str = "cpu") -> Any:
    """Select the backend (`auto` | `torch` | `triton`) for `device`; returns it."""
    global _BACKEND
    from moebench_kernels import get_backend

    _BACKEND = get_backend(name, device)
    return _BACKEND


def ops() -> Any:
    """The current backend; the torch reference until `set_backend` chose otherwise."""
    if _BACKEND is None:
        return set_backend("torch", "cpu")
    return _BACKEND
