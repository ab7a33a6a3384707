"""Build and load the CPU kernels' C sources: `cc -O3 -mavx2 -mfma -fopenmp`, cached by source hash.

Shared by cpu_gemm.py and cpu_moe.py. A library is built on first use (under a second) into $MOEBENCH_CACHE or
~/.cache/moebench_kernels and loaded with ctypes. `load` returns None (callers use torch) without x86-64
AVX2+FMA, without a compiler, or with MOEBENCH_CPU_GEMM=0.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Optional, Sequence


def _cache_dir() -> Path:
    return Path(os.environ.get("MOEBENCH_CACHE") or Path.home() / ".cache" / "moebench_kernels")


def cpu_has_avx2_fma() -> bool:
    if platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx2" in flags and " fma" in flags


def enabled() -> bool:
    """Whether the C kernels may be used at all here (AVX2+FMA, and not switched off by MOEBENCH_CPU_GEMM=0)."""
    return os.environ.get("MOEBENCH_CPU_GEMM", "1") != "0" and cpu_has_avx2_fma()


def load(name: str, source: str, signatures: dict[str, Sequence[type]]) -> Optional[ctypes.CDLL]:
    """The compiled `source` with `signatures` (function -> ctypes argument types; results are int), or None."""
    if not enabled():
        return None
    tag = hashlib.sha256(source.encode()).hexdigest()[:16]
    so = _cache_dir() / f"{name}-{tag}.so"
    if not so.exists():
        try:
            so.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory() as tmp:
                src = Path(tmp) / f"{name}.c"
                src.write_text(source)
                part = Path(tmp) / so.name
                subprocess.run([os.environ.get("CC", "cc"), "-O3", "-mavx2", "-mfma", "-fopenmp", "-shared", "-fPIC",
                                "-o", str(part), str(src), "-lm"], check=True, capture_output=True, timeout=120)
                os.replace(part, so)  # atomic: concurrent first uses never load a half-written file
        except (OSError, subprocess.SubprocessError):
            return None
    try:
        lib = ctypes.CDLL(str(so))
    except OSError:
        return None
    for fn, argtypes in signatures.items():
        f = getattr(lib, fn)
        f.argtypes = list(argtypes)
        f.restype = ctypes.c_int
    return lib
