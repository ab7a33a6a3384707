"""Kernel backends: name -> the six functions the model pieces call.

`get_backend("auto" | "torch" | "triton", device)`:
  auto    Triton on CUDA (torch, with a note on stderr, when Triton is not installed), torch on CPU.
  torch   the plain-torch `*_ref` functions (any device; the engine's CPU path).
  triton  the Triton kernels. On CPU they run in Triton's interpreter (correctness only; a note on stderr
          says it is slow). The interpreter must be chosen before `import triton` (Triton binds its own jitted
          helpers at import time), so this sets TRITON_INTERPRET=1 when Triton is not imported yet, and raises
          EnvironmentProblem when it already is, in compiled mode. Triton missing -> EnvironmentProblem.

`TORCH` and `TRITON` are the objects the `moebench.kernels` entry points name; moebench finds third-party
backends in that group itself (moebench.models.common.ops). Nothing here imports torch or Triton until a
backend is built.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

from moebench_kernels._jit import import_triton, interpreting, triton_imported_without_interpreter

FUNCS = ("fused_moe", "topk_softmax", "grouped_topk_sigmoid", "topk_then_softmax", "rmsnorm", "fused_add_rmsnorm")
_MODULES = {"fused_moe": "fused_moe", "topk_softmax": "router", "grouped_topk_sigmoid": "router",
            "topk_then_softmax": "router", "rmsnorm": "rmsnorm", "fused_add_rmsnorm": "rmsnorm"}
_noted: set[str] = set()


def _note_once(msg: str) -> None:
    if msg not in _noted:
        _noted.add(msg)
        print(f"moebench_kernels: {msg}", file=sys.stderr)


@dataclass(frozen=True)
class Backend:
    """The functions of one backend, bound for one device type."""

    name: str
    device: str
    fused_moe: Callable[..., Any]
    topk_softmax: Callable[..., Any]
    grouped_topk_sigmoid: Callable[..., Any]
    topk_then_softmax: Callable[..., Any]
    rmsnorm: Callable[..., Any]
    fused_add_rmsnorm: Callable[..., Any]
    interpreted: bool = False  # Triton kernels run by Triton's interpreter: correct, and timing the interpreter

    @property
    def label(self) -> str:
        """The backend as a result names it: `triton (interpreted)` where times measure the interpreter."""
        return f"{self.name} (interpreted)" if self.interpreted else self.name


@dataclass(frozen=True)
class BackendSpec:
    """What an entry point names: a backend that is built (and its modules imported) only on request."""

    name: str
    description: str
    suffix: str  # function-name suffix in the kernel modules: "_ref" for torch, "" for Triton

    def build(self, device: str) -> Backend:
        import importlib

        funcs = {}
        for f in FUNCS:
            mod = importlib.import_module(f"moebench_kernels.{_MODULES[f]}")
            funcs[f] = getattr(mod, f + self.suffix)
        return Backend(name=self.name, device=device, interpreted=self.suffix == "" and interpreting(), **funcs)


TORCH = BackendSpec("torch", "plain-torch references (grouped by expert); the CPU path", "_ref")
TRITON = BackendSpec("triton", "Triton kernels (fused MoE, routers, RMSNorm); interpreter on CPU", "")
_SPECS = {"torch": TORCH, "triton": TRITON}


def _device_type(device: Any) -> str:
    s = str(device)
    if s == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return s.split(":")[0]


def _bad_input(msg: str) -> Exception:
    try:
        from moebench.errors import BadInput
    except ImportError:  # moebench_kernels used on its own
        return ValueError(msg)
    return BadInput(msg)


def _environment_problem(msg: str) -> Exception:
    try:
        from moebench.errors import EnvironmentProblem
    except ImportError:
        return RuntimeError(msg)
    return EnvironmentProblem(msg)


def _prepare_triton(dev: str) -> None:
    if dev == "cpu":
        if triton_imported_without_interpreter():
            raise _environment_problem(
                "the triton backend on CPU needs Triton's interpreter, but triton was already imported in "
                "compiled mode; start Python with TRITON_INTERPRET=1 set, or choose the backend before anything "
                "imports triton")
        os.environ["TRITON_INTERPRET"] = "1"
        import_triton()
        _note_once("triton on CPU runs Triton's interpreter (TRITON_INTERPRET=1): correct but very "
                   "slow; use it for checking, not timing")
        return
    import_triton()
    if interpreting():
        _note_once(f"TRITON_INTERPRET=1 is set, so the triton backend on {dev} is interpreted (slow)")


def get_backend(name: str = "auto", device: Any = "cpu") -> Backend:
    """The backend `name` ("auto" | "torch" | "triton") for `device` ("cpu", "cuda", "cuda:1", "auto")."""
    dev = _device_type(device)
    if name == "auto":
        if dev == "cuda":
            try:
                _prepare_triton(dev)
                name = "triton"
            except Exception as exc:  # noqa: BLE001 - any reason Triton cannot run: fall back, and say why
                _note_once(f"auto chose torch on CUDA because the triton backend is unavailable: {exc}")
                name = "torch"
        else:
            name = "torch"
    elif name == "triton":
        _prepare_triton(dev)
    elif name not in _SPECS:
        import difflib

        close = difflib.get_close_matches(name, list(_SPECS) + ["auto"], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _bad_input(f"unknown kernel backend {name!r}{hint}; choose auto, torch or triton")
    return _SPECS[name].build(dev)
