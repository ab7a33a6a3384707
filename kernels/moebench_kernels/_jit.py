"""Deferred `triton.jit`: kernel files import without importing Triton.

Why: Triton decides at *import* time whether it runs compiled or interpreted (`TRITON_INTERPRET=1` must be in the
environment before `import triton`, because `triton.language` itself holds jitted helpers such as `tl.sigmoid`).
The torch references live in the same files as the kernels (one file per kernel), and the CPU path of the engine
imports them; if that import pulled Triton in, a later `get_backend("triton", "cpu")` could no longer switch the
interpreter on. So a kernel is a plain function until its first launch, when it is handed to `triton.jit`.

Kernel bodies name `tl` as a module global; that global is bound to `triton.language` at the first launch.
Device functions a kernel calls are marked `@triton_helper`; Triton resolves them by global name when it
compiles, so at the first launch of any kernel of a module, that module's helpers are jitted in place.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable


def interpreting() -> bool:
    """True when Triton runs (or, imported later, will run) its interpreter: TRITON_INTERPRET=1."""
    return os.environ.get("TRITON_INTERPRET", "0") in ("1", "true", "True")


def triton_imported_without_interpreter() -> bool:
    """True when Triton is already imported in compiled mode, so the interpreter can no longer be switched on."""
    return "triton" in sys.modules and not interpreting()


def import_triton() -> Any:
    """`import triton`, or `moebench.errors.EnvironmentProblem` (exit code 4) with the reason."""
    try:
        import triton
        import triton.language  # noqa: F401
    except ImportError as exc:
        from moebench.errors import EnvironmentProblem

        raise EnvironmentProblem(
            f"the triton kernel backend needs the `triton` package ({exc}); install it or use kernels: torch"
        ) from None
    return triton


class LazyKernel:
    """A Triton kernel compiled on first launch: `kernel[grid](*args, **meta)` as with `@triton.jit`."""

    def __init__(self, fn: Callable[..., None]):
        self.fn = fn
        self.__name__ = fn.__name__
        self._jitted: Any = None

    def jitted(self) -> Any:
        if self._jitted is None:
            triton = import_triton()
            module_globals = self.fn.__globals__
            module_globals["tl"] = triton.language
            for name, obj in list(module_globals.items()):
                if getattr(obj, "_moebench_triton_helper", False):
                    module_globals[name] = triton.jit(obj)
            self._jitted = triton.jit(self.fn)
        return self._jitted

    def __getitem__(self, grid: Any) -> Any:
        return self.jitted()[grid]

    def __repr__(self) -> str:
        state = "compiled" if self._jitted is not None else "not yet compiled"
        return f"<LazyKernel {self.__name__} ({state})>"


def triton_kernel(fn: Callable[..., None]) -> LazyKernel:
    """Decorator: like `@triton.jit`, deferred to the first launch (see module docstring)."""
    return LazyKernel(fn)


def triton_helper(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Marks a device function called from kernels; jitted in place with its module's first kernel."""
    fn._moebench_triton_helper = True  # type: ignore[attr-defined]
    return fn


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def cdiv(a: int, b: int) -> int:
    return -(-a // b)
