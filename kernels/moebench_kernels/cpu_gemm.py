"""Small-M fp32 GEMM for the CPU path: out_MN = a_MK · w_NK^T with M = the few rows one expert gets.

Legend: M rows (tokens routed to one expert), N output features, K input features.

Why: decode and small batches give each expert 1-30 rows. BLAS libraries treat such products as M separate
matrix-vector products or pick blockings for large M, so they stream the expert's weights from memory up to M
times: measured on a 2-core AMD EPYC (AVX2), MKL's sgemm reaches 4-10 GB/s of weight traffic at M = 2-16 and
oneDNN 9-18 GB/s, against a ~30 GB/s read roof. This kernel streams each weight row once and applies it to
all M rows from L1: a block of 3 weight rows × a 256-512 wide K chunk stays in L1 while the input rows pass
over it four at a time (3 × 4 fp32x8 accumulators, dot-product form, one horizontal sum per block and
chunk); threads split N. The input rows are first copied at a padded stride (rows 4 KiB apart alias in L1).
Measured there (benchmarks/cpu_small_m_gemm.py, Mixtral's 28672 × 4096): 85-110 % of the read roof for
M = 1-4, 75-80 % at M = 6-8; from M ≈ 12 it is compute-bound at 100-120 GFLOP/s, 60-70 % of the host's
best BLAS on a large square product, and oneDNN takes over above M = CPU_SMALL_M (fused_moe._linear).

Built by _cbuild (`cc -O3 -mavx2 -mfma -fopenmp`); `available()` is False (and callers use torch) without
x86-64 AVX2+FMA, without a compiler, or with MOEBENCH_CPU_GEMM=0. `linear_small_m_ref` is the torch oracle.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from typing import Optional

import torch

from moebench_kernels import _cbuild

_SOURCE = r"""
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#define MMAX 64
#define NR 3

/* out[m, n] = sum_k a[m, k] * w[n, k]; M <= MMAX, K % 8 == 0; rows of a, w, out at strides lda, ldw, ldo.
   Blocks of NR = 3 weight rows; input rows four at a time: 12 accumulators + 3 weight + 1 input register
   = the 16 ymm registers of AVX2. */
int moebench_gemm_small_m(const float* a_in, int64_t lda_in, const float* w, int64_t ldw, float* out, int64_t ldo,
                           int64_t M, int64_t N, int64_t K, int nthreads) {
    int64_t nblocks = (N + NR - 1) / NR;
    /* K chunk: the input rows' slice (M x KC) and the weight block (3 x KC) should share L1 (32 KiB) */
    int64_t KC = M <= 8 ? 512 : 256;
    /* Rows of a and w lie a multiple of 4 KiB apart for the usual K, so they share L1 sets and evict each
       other (8 ways); a copy of a with a padded row stride spreads them out. */
    int64_t lda = K + 16;
    float* a = (float*)aligned_alloc(64, (size_t)(M * lda * sizeof(float)));
    if (!a) return -1;
    for (int64_t m = 0; m < M; m++) memcpy(a + m * lda, a_in + m * lda_in, (size_t)K * sizeof(float));
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t b = 0; b < nblocks; b++) {
        int64_t n0 = b * NR, nr = N - n0 < NR ? N - n0 : NR;
        float acc[MMAX][NR];
        memset(acc, 0, sizeof(acc));
        /* a partial block repeats its last row: loads stay in bounds, results are not stored */
        const float* w0 = w + n0 * ldw;
        const float* w1 = w + (n0 + (nr > 1 ? 1 : 0)) * ldw;
        const float* w2 = w + (n0 + (nr > 2 ? 2 : nr - 1)) * ldw;
        for (int64_t k0 = 0; k0 < K; k0 += KC) {
            int64_t kc = K - k0 < KC ? K - k0 : KC;
            const float* v0 = w0 + k0; const float* v1 = w1 + k0; const float* v2 = w2 + k0;
            int64_t m = 0;
            for (; m + 4 <= M; m += 4) {
                const float* x0 = a + m * lda + k0;
                __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c02 = _mm256_setzero_ps();
                __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps(), c12 = _mm256_setzero_ps();
                __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c22 = _mm256_setzero_ps();
                __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps(), c32 = _mm256_setzero_ps();
                for (int64_t k = 0; k < kc; k += 8) {
                    __m256 b0 = _mm256_loadu_ps(v0 + k), b1 = _mm256_loadu_ps(v1 + k), b2 = _mm256_loadu_ps(v2 + k);
                    __m256 x = _mm256_loadu_ps(x0 + k);
                    c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01); c02 = _mm256_fmadd_ps(x, b2, c02);
                    x = _mm256_loadu_ps(x0 + lda + k);
                    c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11); c12 = _mm256_fmadd_ps(x, b2, c12);
                    x = _mm256_loadu_ps(x0 + 2 * lda + k);
                    c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21); c22 = _mm256_fmadd_ps(x, b2, c22);
                    x = _mm256_loadu_ps(x0 + 3 * lda + k);
                    c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31); c32 = _mm256_fmadd_ps(x, b2, c32);
                }
                acc[m][0] += hsum(c00); acc[m][1] += hsum(c01); acc[m][2] += hsum(c02);
                acc[m + 1][0] += hsum(c10); acc[m + 1][1] += hsum(c11); acc[m + 1][2] += hsum(c12);
                acc[m + 2][0] += hsum(c20); acc[m + 2][1] += hsum(c21); acc[m + 2][2] += hsum(c22);
                acc[m + 3][0] += hsum(c30); acc[m + 3][1] += hsum(c31); acc[m + 3][2] += hsum(c32);
            }
            for (; m < M; m++) {  /* 1-3 rows left: two accumulators per weight row hide the FMA latency */
                const float* x0 = a + m * lda + k0;
                __m256 c0 = _mm256_setzero_ps(), c1 = _mm256_setzero_ps(), c2 = _mm256_setzero_ps();
                __m256 d0 = _mm256_setzero_ps(), d1 = _mm256_setzero_ps(), d2 = _mm256_setzero_ps();
                int64_t k = 0;
                for (; k + 16 <= kc; k += 16) {
                    __m256 x = _mm256_loadu_ps(x0 + k), y = _mm256_loadu_ps(x0 + k + 8);
                    c0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(v0 + k), c0);
                    c1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(v1 + k), c1);
                    c2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(v2 + k), c2);
                    d0 = _mm256_fmadd_ps(y, _mm256_loadu_ps(v0 + k + 8), d0);
                    d1 = _mm256_fmadd_ps(y, _mm256_loadu_ps(v1 + k + 8), d1);
                    d2 = _mm256_fmadd_ps(y, _mm256_loadu_ps(v2 + k + 8), d2);
                }
                for (; k < kc; k += 8) {
                    __m256 x = _mm256_loadu_ps(x0 + k);
                    c0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(v0 + k), c0);
                    c1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(v1 + k), c1);
                    c2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(v2 + k), c2);
                }
                acc[m][0] += hsum(_mm256_add_ps(c0, d0)); acc[m][1] += hsum(_mm256_add_ps(c1, d1));
                acc[m][2] += hsum(_mm256_add_ps(c2, d2));
            }
        }
        for (int64_t m = 0; m < M; m++)
            for (int64_t j = 0; j < nr; j++) out[m * ldo + n0 + j] = acc[m][j];
    }
    free(a);
    return 0;
}
"""

M_MAX = 64  # the C side's row limit (MMAX)


@lru_cache(maxsize=1)
def _library() -> Optional[ctypes.CDLL]:
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    return _cbuild.load("cpu_gemm", _SOURCE, {"moebench_gemm_small_m": [ptr, i64, ptr, i64, ptr, i64, i64, i64, i64,
                                                                         ctypes.c_int]})


def available() -> bool:
    """Whether the compiled kernel can run here (builds it on the first call)."""
    return _library() is not None


def supports(a_MK: torch.Tensor, w_NK: torch.Tensor) -> bool:
    """The shapes and layouts `linear_small_m` takes: fp32 CPU tensors with unit column stride, K % 8 == 0."""
    return (a_MK.device.type == "cpu" and a_MK.dtype == w_NK.dtype == torch.float32 and a_MK.dim() == 2
            and w_NK.dim() == 2 and 0 < a_MK.shape[0] <= M_MAX and a_MK.shape[1] == w_NK.shape[1]
            and a_MK.shape[1] % 8 == 0 and a_MK.stride(1) == 1 and w_NK.stride(1) == 1)


def linear_small_m(a_MK: torch.Tensor, w_NK: torch.Tensor, out_MN: Optional[torch.Tensor] = None) -> torch.Tensor:
    """a_MK · w_NK^T (fp32, `supports(a, w)` must hold, `available()` must be True)."""
    lib = _library()
    assert lib is not None and supports(a_MK, w_NK)
    M, K = a_MK.shape
    N = w_NK.shape[0]
    if out_MN is None:
        out_MN = torch.empty(M, N, dtype=torch.float32)
    assert out_MN.shape == (M, N) and out_MN.stride(1) == 1
    lib.moebench_gemm_small_m(a_MK.data_ptr(), a_MK.stride(0), w_NK.data_ptr(), w_NK.stride(0), out_MN.data_ptr(),
                              out_MN.stride(0), M, N, K, torch.get_num_threads())
    return out_MN


def linear_small_m_ref(a_MK: torch.Tensor, w_NK: torch.Tensor) -> torch.Tensor:
    """Plain torch; the oracle for `linear_small_m`."""
    return a_MK @ w_NK.t()
