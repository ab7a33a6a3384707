"""The kernel backend the model pieces call (torch reference on CPU, Triton on CUDA); chosen once per run."""

from __future__ import annotations

from typing import Any

_BACKEND: Any = None


BUILTIN = ("auto", "torch", "triton")


def backend_names() -> list[str]:
    """What a workload's `kernels:` may name: auto, and every `moebench.kernels` entry point (built-ins included)."""
    from moebench.registry import Registry

    return sorted(set(BUILTIN) | set(Registry("moebench.kernels").names()))


def set_backend(name: str = "auto", device: str = "cpu") -> Any:
    """Select the backend for `device` (`auto` | `torch` | `triton` | a `moebench.kernels` plugin); returns it.

    A plugin's entry point names an object with `build(device) -> backend`; the backend has the six functions of
    `moebench_kernels.backends.Backend`, taking the `*_ref` functions' arguments."""
    global _BACKEND
    if name in BUILTIN:
        from moebench_kernels import get_backend

        _BACKEND = get_backend(name, device)
        return _BACKEND
    from moebench.errors import BadInput
    from moebench.registry import Registry
    from moebench_kernels.backends import FUNCS

    plugin = Registry("moebench.kernels").load(name)
    try:
        backend = plugin.build(device)
    except Exception as exc:  # noqa: BLE001 - third-party code: name it, whatever it raised
        raise BadInput(f"kernel backend {name!r} failed to build for {device}: {type(exc).__name__}: {exc}") from exc
    missing = [f for f in FUNCS if not callable(getattr(backend, f, None))]
    if missing:
        raise BadInput(f"kernel backend {name!r} built a {type(backend).__name__} without {', '.join(missing)}")
    _BACKEND = backend
    return _BACKEND


def ops() -> Any:
    """The current backend; the torch reference until `set_backend` chose otherwise."""
    if _BACKEND is None:
        return set_backend("torch", "cpu")
    return _BACKEND
