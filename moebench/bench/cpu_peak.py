"""The host's fp32 FMA peak, measured: every thread runs independent AVX2 FMA chains on registers.

The CPU roofs' compute ceiling is the better of this and a large BLAS matmul. The matmul alone under-read it on
this project's 2-vCPU AMD host: MKL and OpenBLAS at 2048³-4096³ read 0.13-0.18 TFLOP/s while cpu_moe's own
GEMMs sustained 0.19 (Mixtral-8x7B at 256 tokens), which showed as 108-119 % "of roof" at compute-bound points.
`None` where the C kernels cannot be built (no AVX2/FMA, no compiler): the matmul then stands alone.
"""

from __future__ import annotations

import ctypes
import time
from functools import lru_cache
from typing import Optional

_SOURCE = r"""
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>

/* 12 independent accumulators per thread (FMA latency 4-5 cycles × 2 pipes needs >= 10 in flight); returns
   a sum so the work cannot be dropped. Flops done: nthreads * iters * 12 * 8 * 2. */
double moebench_fma_peak(int64_t iters, int nthreads) {
    double total = 0;
    #pragma omp parallel num_threads(nthreads) reduction(+:total)
    {
        /* distinct starting values: equal ones let the compiler merge the chains into one */
        __m256 a0 = _mm256_set1_ps(1.0f), a1 = _mm256_set1_ps(1.1f), a2 = _mm256_set1_ps(1.2f);
        __m256 a3 = _mm256_set1_ps(1.3f), a4 = _mm256_set1_ps(1.4f), a5 = _mm256_set1_ps(1.5f);
        __m256 a6 = _mm256_set1_ps(1.6f), a7 = _mm256_set1_ps(1.7f), a8 = _mm256_set1_ps(1.8f);
        __m256 a9 = _mm256_set1_ps(1.9f), a10 = _mm256_set1_ps(2.0f), a11 = _mm256_set1_ps(2.1f);
        const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
        for (int64_t i = 0; i < iters; i++) {
            a0 = _mm256_fmadd_ps(a0, m, c); a1 = _mm256_fmadd_ps(a1, m, c); a2 = _mm256_fmadd_ps(a2, m, c);
            a3 = _mm256_fmadd_ps(a3, m, c); a4 = _mm256_fmadd_ps(a4, m, c); a5 = _mm256_fmadd_ps(a5, m, c);
            a6 = _mm256_fmadd_ps(a6, m, c); a7 = _mm256_fmadd_ps(a7, m, c); a8 = _mm256_fmadd_ps(a8, m, c);
            a9 = _mm256_fmadd_ps(a9, m, c); a10 = _mm256_fmadd_ps(a10, m, c); a11 = _mm256_fmadd_ps(a11, m, c);
        }
        __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                                 _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
        s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
        float v[8];
        _mm256_storeu_ps(v, s);
        for (int i = 0; i < 8; i++) total += v[i];
    }
    return total;
}
"""


@lru_cache(maxsize=1)
def _library() -> Optional[ctypes.CDLL]:
    from moebench_kernels import _cbuild

    lib = _cbuild.load("cpu_peak", _SOURCE, {"moebench_fma_peak": [ctypes.c_int64, ctypes.c_int]})
    if lib is not None:
        lib.moebench_fma_peak.restype = ctypes.c_double
    return lib


def fma_peak_tflops(threads: int, seconds: float = 0.05) -> Optional[float]:
    """fp32 TFLOP/s of `threads` threads running register-resident FMAs for about `seconds`; None without the
    C kernels."""
    lib = _library()
    if lib is None:
        return None
    iters = 1 << 16
    while True:  # grow until one call lasts long enough to time (and the clock has ramped up)
        t0 = time.perf_counter()
        lib.moebench_fma_peak(iters, threads)
        dt = time.perf_counter() - t0
        if dt >= seconds or iters >= 1 << 34:
            return threads * iters * 12 * 8 * 2 / dt / 1e12
        iters *= 2 if dt < seconds / 4 else max(2, int(seconds / dt) + 1)
