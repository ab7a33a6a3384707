"""A whole fp32 MoE layer's experts in one C call on CPU (AVX2/FMA, OpenMP): the engine's CPU fast path.

Legend: T tokens, D model dim, F expert hidden dim, E experts, K experts per token, R = T·K routed rows
(row r = t·K + k), m the rows one expert gets. Computes exactly `fused_moe_ref`'s function
(y[t] = Σ_k w[t,k] · (W2[e] · act(W13[e] · x[t] + b13[e]) + b2[e]), ids outside [0, E) contribute nothing),
checked against it and against the per-token formula in tests/kernels/test_cpu_moe.py.

Why one call: Qwen3-30B-A3B has 128 experts of 18.9 MB; driving them from Python as 2 GEMMs each costs a
parallel region (fork, join, a tail where one core idles) per GEMM, and at 8-113 experts per layer that
kept the layer at 68-76 % of the read roof. Here every phase is one OpenMP loop over (expert, 16-wide
output panel) work items, dynamically scheduled, in one parallel region:

  0. counting sort of the R rows by expert (serial, µs); the expert's rows of x are packed into tiles of
     ≤ MR = 6 rows, k-major ([D][6]: the broadcast operand of the microkernel);
  1. gate+up: per (expert, panel of 16 columns of F): the gate panel and the up panel, then act(gate, up)
     (+ biases) written straight into the packed tiles ([F][6]) that step 2 reads;
  2. down: per (expert, panel of 16 columns of D): routing weight (+ bias) in the epilogue, written to
     out_RD at the row's original index r;
  3. combine: y[t] = Σ_k out_RD[t·K + k] over the live slots, parallel over t.

The GEMM is BLIS-style: a 6×16 outer-product microkernel (12 ymm accumulators; per k two 8-wide weight loads,
six broadcasts, twelve FMAs) over weight panels laid out k-major ([K][16]). An expert's m rows are cut into
ceil(m/6) tiles of near-equal size (m = 8 -> 4 + 4, not 6 + 2: ≥ 4 rows give the 8 independent accumulators
that hide FMA latency on two FMA pipes); the first tile streams the panel from memory, KC = 256 columns at a
time, the other tiles reuse it from L1, and all of them prefetch the next KC columns (of this panel, or of the
thread's next work item) at an even rate, so the memory stream overlaps the FMAs without pauses.

Weight layout, and what it costs (measure it; see kernels/NOTES.md): by default each expert weight tensor is
packed once into that panel layout (`packed_weights`: one pass over the weights at their first use: outside the
timed region of a benchmark, at the first forward of the engine, as oneDNN/IPEX prepack weights; in 2 MiB
pages where the OS allows), kept in a cache keyed by the tensor's memory and invalidated by in-place updates. The copy costs as much memory again
as the expert weights (2.4 GB for a Qwen3-30B-A3B layer in fp32, 5.6 GB for Mixtral-8x7B;
`packed_bytes()` says how much is held); it is skipped when it would take more than half of the available
memory. With MOEBENCH_CPU_PREPACK=0 (or no room) the kernel packs each 16×KC block itself from the
row-major weights by 8×8 register transposes: no extra memory, but the transposes compete with the FMAs and
with the memory stream (measured: 19-22 GB/s of weight traffic against 27-33 with prepacked panels).

Built by _cbuild (cc -O3 -mavx2 -mfma -fopenmp); `available()` is False (and fused_moe_ref uses plain torch)
without x86-64 AVX2+FMA, without a compiler, or with MOEBENCH_CPU_GEMM=0.
"""

from __future__ import annotations

import ctypes
import os
import weakref
from functools import lru_cache
from typing import Optional

import torch

from moebench_kernels import _cbuild

_SOURCE = r"""
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MR 6
#define NR 16
#define KC 256

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* exp(x) to ~2 ulp on [-87, 88] (Cephes' expf polynomial), clamped outside */
static inline __m256 exp_ps(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* act 0: silu(g) * u;  act 1: GPT-OSS: g = min(g, 7), u = clamp(u, -7, 7), (u + 1) * g * sigmoid(1.702 g) */
static inline __m256 act_ps(__m256 g, __m256 u, int act) {
    const __m256 one = _mm256_set1_ps(1.0f);
    if (act == 1) {
        g = _mm256_min_ps(g, _mm256_set1_ps(7.0f));
        u = _mm256_min_ps(_mm256_max_ps(u, _mm256_set1_ps(-7.0f)), _mm256_set1_ps(7.0f));
        __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, exp_ps(_mm256_mul_ps(g, _mm256_set1_ps(-1.702f)))));
        return _mm256_mul_ps(_mm256_add_ps(u, one), _mm256_mul_ps(g, s));
    }
    __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), g))));
    return _mm256_mul_ps(_mm256_mul_ps(g, s), u);
}

/* c[i][0..16) (+)= sum_k a[k*MR + i] * b[k*NR + 0..16) for i < mr; a: one packed row tile, b: a packed panel.
   mr is a compile-time constant at each call site (ukr_any), so unused accumulators vanish. Step k also
   prefetches pf + k·pfstep/256 bytes (pfstep < 64·256 when several tiles share the lines of one chunk). */
static inline __attribute__((always_inline)) void ukr(const int mr, int64_t kc, const float* restrict a,
                                                      const float* restrict b, float* restrict c, int64_t ldc,
                                                      int add, const char* pf, int64_t pfstep) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    /* unrolled: the loop's own µops (counter, prefetch address) otherwise crowd the 4-6 row tiles' FMAs;
       measured 1.03-1.08x at 6-16 rows/expert with the weights in L3, none lower */
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_load_ps(b + k * NR), b1 = _mm256_load_ps(b + k * NR + 8);
        const float* ak = a + k * MR;
        _mm_prefetch(pf + ((k * pfstep) >> 8), _MM_HINT_T0);
        __m256 t = _mm256_broadcast_ss(ak);
        c00 = _mm256_fmadd_ps(t, b0, c00); c01 = _mm256_fmadd_ps(t, b1, c01);
        if (mr > 1) { t = _mm256_broadcast_ss(ak + 1); c10 = _mm256_fmadd_ps(t, b0, c10); c11 = _mm256_fmadd_ps(t, b1, c11); }
        if (mr > 2) { t = _mm256_broadcast_ss(ak + 2); c20 = _mm256_fmadd_ps(t, b0, c20); c21 = _mm256_fmadd_ps(t, b1, c21); }
        if (mr > 3) { t = _mm256_broadcast_ss(ak + 3); c30 = _mm256_fmadd_ps(t, b0, c30); c31 = _mm256_fmadd_ps(t, b1, c31); }
        if (mr > 4) { t = _mm256_broadcast_ss(ak + 4); c40 = _mm256_fmadd_ps(t, b0, c40); c41 = _mm256_fmadd_ps(t, b1, c41); }
        if (mr > 5) { t = _mm256_broadcast_ss(ak + 5); c50 = _mm256_fmadd_ps(t, b0, c50); c51 = _mm256_fmadd_ps(t, b1, c51); }
    }
#define UKR_STORE(i, x0, x1)                                                                        \
    if (mr > i) {                                                                                   \
        float* ci = c + i * ldc;                                                                    \
        if (add) { x0 = _mm256_add_ps(x0, _mm256_loadu_ps(ci)); x1 = _mm256_add_ps(x1, _mm256_loadu_ps(ci + 8)); } \
        _mm256_storeu_ps(ci, x0); _mm256_storeu_ps(ci + 8, x1);                                     \
    }
    UKR_STORE(0, c00, c01) UKR_STORE(1, c10, c11) UKR_STORE(2, c20, c21)
    UKR_STORE(3, c30, c31) UKR_STORE(4, c40, c41) UKR_STORE(5, c50, c51)
#undef UKR_STORE
}

static void ukr_any(int mr, int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int add,
                    const char* pf, int64_t pfstep) {
    switch (mr) {
        case 1: ukr(1, kc, a, b, c, ldc, add, pf, pfstep); break;
        case 2: ukr(2, kc, a, b, c, ldc, add, pf, pfstep); break;
        case 3: ukr(3, kc, a, b, c, ldc, add, pf, pfstep); break;
        case 4: ukr(4, kc, a, b, c, ldc, add, pf, pfstep); break;
        case 5: ukr(5, kc, a, b, c, ldc, add, pf, pfstep); break;
        default: ukr(6, kc, a, b, c, ldc, add, pf, pfstep); break;
    }
}

/* b[k][j] = w[j][k] for k < kc, j < 16: rows j >= nrows repeat the last row (finite, never stored) */
static void pack_panel(const float* w, int64_t ldw, int64_t nrows, int64_t kc, float* restrict b) {
    for (int h = 0; h < 2; h++) {
        const float* r[8];
        for (int i = 0; i < 8; i++) r[i] = w + min64(8 * h + i, nrows - 1) * ldw;
        float* bh = b + 8 * h;
        int64_t k = 0;
        for (; k + 8 <= kc; k += 8) {
            __m256 v0 = _mm256_loadu_ps(r[0] + k), v1 = _mm256_loadu_ps(r[1] + k);
            __m256 v2 = _mm256_loadu_ps(r[2] + k), v3 = _mm256_loadu_ps(r[3] + k);
            __m256 v4 = _mm256_loadu_ps(r[4] + k), v5 = _mm256_loadu_ps(r[5] + k);
            __m256 v6 = _mm256_loadu_ps(r[6] + k), v7 = _mm256_loadu_ps(r[7] + k);
            __m256 t0 = _mm256_unpacklo_ps(v0, v1), t1 = _mm256_unpackhi_ps(v0, v1);
            __m256 t2 = _mm256_unpacklo_ps(v2, v3), t3 = _mm256_unpackhi_ps(v2, v3);
            __m256 t4 = _mm256_unpacklo_ps(v4, v5), t5 = _mm256_unpackhi_ps(v4, v5);
            __m256 t6 = _mm256_unpacklo_ps(v6, v7), t7 = _mm256_unpackhi_ps(v6, v7);
            __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float* o = bh + k * NR;
            _mm256_store_ps(o + 0 * NR, _mm256_permute2f128_ps(s0, s4, 0x20));
            _mm256_store_ps(o + 1 * NR, _mm256_permute2f128_ps(s1, s5, 0x20));
            _mm256_store_ps(o + 2 * NR, _mm256_permute2f128_ps(s2, s6, 0x20));
            _mm256_store_ps(o + 3 * NR, _mm256_permute2f128_ps(s3, s7, 0x20));
            _mm256_store_ps(o + 4 * NR, _mm256_permute2f128_ps(s0, s4, 0x31));
            _mm256_store_ps(o + 5 * NR, _mm256_permute2f128_ps(s1, s5, 0x31));
            _mm256_store_ps(o + 6 * NR, _mm256_permute2f128_ps(s2, s6, 0x31));
            _mm256_store_ps(o + 7 * NR, _mm256_permute2f128_ps(s3, s7, 0x31));
        }
        for (; k < kc; k++)
            for (int i = 0; i < 8; i++) bh[k * NR + i] = r[i][k];
    }
}

/* first row of tile t when m rows are cut into nt near-equal tiles */
static inline int64_t tile_start(int64_t m, int64_t nt, int64_t t) { return t * (m / nt) + min64(t, m % nt); }

/* c[0..m)[0..16) = A · W^T for one 16-row panel of W (rows [0, nrows) at stride ldw, K columns), read from its
   prepacked copy bp ([K][16]) when there is one, else packed here KC columns at a time into bbuf; A is the
   expert's m rows as ceil(m/MR) packed tiles of [K][MR]. pnext: the prepacked panel this thread computes next
   (or NULL), whose first KC columns are prefetched during the last chunk. */
static void panel_gemm(const float* w, int64_t ldw, int64_t nrows, int64_t K, const float* bp, const float* a,
                       int64_t m, float* c, int64_t ldc, float* bbuf, const float* pnext) {
    int64_t nt = (m + MR - 1) / MR;
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
        int64_t kc = min64(KC, K - k0);
        const float* b = bp ? bp + k0 * NR : bbuf;
        if (!bp) pack_panel(w + k0, ldw, nrows, kc, bbuf);
        /* While the tiles run on this chunk (the first from memory, the others from L1), the next chunk is
           prefetched, each tile taking its share of its KC lines spread over its k loop: the memory stream then
           never pauses. (The first tile alone prefetching the next chunk, and each panel starting cold, gave
           55-68 % of the roof at 8-16 rows/expert.) Below 4 rows the hardware prefetcher alone streams faster
           (measured 5-12 % at 1-2 rows): there is little compute to overlap and no prefetch to issue. */
        const float* nb = !bp || m < 4 ? NULL : k0 + KC < K ? b + KC * NR : pnext;
        for (int64_t t = 0; t < nt; t++) {
            int64_t r0 = tile_start(m, nt, t);
            ukr_any((int)(tile_start(m, nt, t + 1) - r0), kc, a + t * K * MR + k0 * MR, b, c + r0 * ldc, ldc, k0 > 0,
                    nb ? (const char*)nb + t * KC / nt * 64 : (const char*)b, nb ? 64 * 256 / nt : 0);
        }
    }
}

/* out[((e * ng + s) * P + p) * K * 16 ..]: rows [s·N/ng + 16p, +16) of w[e] ([N][K]) packed [K][16], P = ceil(N/ng/16)
   (the layout panel_gemm reads: w13 with ng = 2, gate and up panels apart; w2 with ng = 1) */
int moebench_moe_pack(const float* w, int64_t E, int64_t N, int64_t K, int64_t ng, float* out, int nthreads) {
    int64_t n = N / ng, P = (n + NR - 1) / NR;
#ifdef MADV_HUGEPAGE
    /* 2 MiB pages for the (still untouched) copy where THP is "madvise": with 4 KiB pages the prefetches of a
       2.4 GB stream miss the TLB every 64 lines (measured 1-13 % slower at 8-16 rows/expert) */
    uintptr_t lo = ((uintptr_t)out + (1 << 21) - 1) & ~(uintptr_t)((1 << 21) - 1);
    uintptr_t hi = (uintptr_t)(out + E * ng * P * K * NR) & ~(uintptr_t)((1 << 21) - 1);
    if (hi > lo) madvise((void*)lo, hi - lo, MADV_HUGEPAGE);
#endif
    #pragma omp parallel for schedule(dynamic, 4) num_threads(nthreads)
    for (int64_t it = 0; it < E * ng * P; it++) {
        int64_t p = it % P, s = (it / P) % ng, e = it / (P * ng);
        pack_panel(w + (e * N + s * n + p * NR) * K, K, min64(NR, n - p * NR), K, out + it * K * NR);
    }
    return 0;
}

/* The float work buffers (packed x and h tiles, out_RD, per-thread scratch: 43 MB for Qwen3-30B-A3B at T = 256)
   are kept between the calls of one calling thread, up to ARENA_KEEP bytes: freshly allocated they come from
   mmap and fault in a page per 4 KiB at every call (measured 5-12 ms, 5-8 % of the layer at T = 128-256). */
#define ARENA_KEEP ((size_t)256 << 20)
static __thread float* arena = NULL;
static __thread size_t arena_bytes = 0;

static float* arena_get(size_t bytes) {
    if (bytes > arena_bytes) {
        free(arena);
        arena = aligned_alloc(64, (bytes + 63) / 64 * 64);
        arena_bytes = arena ? bytes : 0;
    }
    return arena;
}

int moebench_fused_moe(const float* x, int64_t T, int64_t D, const int64_t* ids, const float* tw, int64_t K,
                       const float* w13, const float* w2, const float* w13p, const float* w2p, const float* b13,
                       const float* b2, int64_t E, int64_t F, int act, float* y, int nthreads) {
    int64_t R = T * K;
    int64_t *cnt = calloc(E + 1, sizeof(int64_t)), *off = calloc(E + 1, sizeof(int64_t));
    int64_t *tb = calloc(E + 1, sizeof(int64_t)), *rows = malloc((R + 1) * sizeof(int64_t));
    int64_t *ex = malloc((E + 1) * sizeof(int64_t));
    int rc = -1;
    float *xp, *hp, *out, *scratch;
    if (!cnt || !off || !tb || !rows || !ex) goto done;
    for (int64_t r = 0; r < R; r++) if (ids[r] >= 0 && ids[r] < E) cnt[ids[r]]++;
    int64_t nex = 0, mmax = 1;
    for (int64_t e = 0; e < E; e++) {
        off[e + 1] = off[e] + cnt[e];
        tb[e + 1] = tb[e] + (cnt[e] + MR - 1) / MR;
        if (cnt[e]) ex[nex++] = e;
        if (cnt[e] > mmax) mmax = cnt[e];
    }
    int64_t ntile = tb[E];
    for (int64_t e = 0; e < E; e++) cnt[e] = off[e];  /* cnt is the fill cursor for a moment */
    for (int64_t r = 0; r < R; r++) if (ids[r] >= 0 && ids[r] < E) rows[cnt[ids[r]]++] = r;
    for (int64_t e = 0; e < E; e++) cnt[e] = off[e + 1] - off[e];
    int64_t* te = malloc((ntile + 1) * sizeof(int64_t));
    if (!te) goto done;
    for (int64_t e = 0; e < E; e++) for (int64_t t = tb[e]; t < tb[e + 1]; t++) te[t] = e;
    int64_t scratch_per = KC * NR + ((mmax * 2 * NR + 15) / 16) * 16;
    size_t nx = (ntile * D * MR + 31) / 16 * 16, nh = (ntile * F * MR + 31) / 16 * 16, no = (R * D + 31) / 16 * 16;
    xp = arena_get((nx + nh + no + nthreads * scratch_per) * sizeof(float));
    if (!xp) { free(te); goto done; }
    hp = xp + nx; out = hp + nh; scratch = out + no;
    int64_t p1 = (F + NR - 1) / NR, p2 = (D + NR - 1) / NR, next1 = 0, next2 = 0;
    #pragma omp parallel num_threads(nthreads)
    {
        float* bbuf = scratch + omp_get_thread_num() * scratch_per;
        float* ct = bbuf + KC * NR;
        #pragma omp for schedule(dynamic, 4)
        for (int64_t it = 0; it < ntile; it++) {  /* 0: pack each expert's rows of x into [D][MR] tiles */
            int64_t e = te[it], m = cnt[e], nt = tb[e + 1] - tb[e], t = it - tb[e];
            int64_t r0 = tile_start(m, nt, t), mr = tile_start(m, nt, t + 1) - r0;
            const float* src[MR];
            for (int64_t i = 0; i < mr; i++) src[i] = x + (rows[off[e] + r0 + i] / K) * D;
            float* dst = xp + it * D * MR;
            for (int64_t k = 0; k < D; k++)
                for (int64_t i = 0; i < mr; i++) dst[k * MR + i] = src[i][k];
        }
        /* 1: gate and up panels, activation into h's tiles. Work items are claimed one ahead from a shared
           counter (a dynamic schedule that tells each thread its next panel, to prefetch it) */
        for (int64_t it = __atomic_fetch_add(&next1, 1, __ATOMIC_RELAXED), nx; it < nex * p1; it = nx) {
            nx = __atomic_fetch_add(&next1, 1, __ATOMIC_RELAXED);
            int64_t e = ex[it / p1], f0 = (it % p1) * NR, nr = min64(NR, F - f0), m = cnt[e];
            const float* we = w13 + e * 2 * F * D;
            const float* xa = xp + tb[e] * D * MR;
            const float* gp = w13p ? w13p + ((e * 2) * p1 + it % p1) * D * NR : NULL;
            const float* gn = w13p && nx < nex * p1 ? w13p + ((ex[nx / p1] * 2) * p1 + nx % p1) * D * NR : NULL;
            panel_gemm(we + f0 * D, D, nr, D, gp, xa, m, ct, 2 * NR, bbuf, gp ? gp + p1 * D * NR : NULL);
            panel_gemm(we + (F + f0) * D, D, nr, D, gp ? gp + p1 * D * NR : NULL, xa, m, ct + NR, 2 * NR, bbuf, gn);
            int64_t nt = tb[e + 1] - tb[e];
            for (int64_t t = 0; t < nt; t++) {
                int64_t r0 = tile_start(m, nt, t), r1 = tile_start(m, nt, t + 1);
                float* ht = hp + (tb[e] + t) * F * MR + f0 * MR;
                for (int64_t r = r0; r < r1; r++) {
                    float h[NR];
                    for (int j = 0; j < NR; j += 8) {
                        __m256 g = _mm256_loadu_ps(ct + r * 2 * NR + j), u = _mm256_loadu_ps(ct + r * 2 * NR + NR + j);
                        if (b13 && j + 8 <= nr) {
                            g = _mm256_add_ps(g, _mm256_loadu_ps(b13 + e * 2 * F + f0 + j));
                            u = _mm256_add_ps(u, _mm256_loadu_ps(b13 + e * 2 * F + F + f0 + j));
                        } else if (b13) {
                            float bg[8] = {0}, bu[8] = {0};
                            for (int64_t q = j; q < nr; q++) { bg[q - j] = b13[e * 2 * F + f0 + q]; bu[q - j] = b13[e * 2 * F + F + f0 + q]; }
                            g = _mm256_add_ps(g, _mm256_loadu_ps(bg)); u = _mm256_add_ps(u, _mm256_loadu_ps(bu));
                        }
                        _mm256_storeu_ps(h + j, act_ps(g, u, act));
                    }
                    for (int64_t j = 0; j < nr; j++) ht[j * MR + (r - r0)] = h[j];
                }
            }
        }
        #pragma omp barrier
        /* 2: down panels, routing weight, rows to out[r]; claimed one ahead as in 1 */
        for (int64_t it = __atomic_fetch_add(&next2, 1, __ATOMIC_RELAXED), nx; it < nex * p2; it = nx) {
            nx = __atomic_fetch_add(&next2, 1, __ATOMIC_RELAXED);
            int64_t e = ex[it / p2], d0 = (it % p2) * NR, nr = min64(NR, D - d0), m = cnt[e];
            panel_gemm(w2 + e * D * F + d0 * F, F, nr, F, w2p ? w2p + (e * p2 + it % p2) * F * NR : NULL,
                       hp + tb[e] * F * MR, m, ct, NR, bbuf,
                       w2p && nx < nex * p2 ? w2p + (ex[nx / p2] * p2 + nx % p2) * F * NR : NULL);
            for (int64_t i = 0; i < m; i++) {
                int64_t r = rows[off[e] + i];
                float wt = tw[r], *o = out + r * D + d0;
                const float* c = ct + i * NR;
                if (b2) for (int64_t j = 0; j < nr; j++) o[j] = (c[j] + b2[e * D + d0 + j]) * wt;
                else for (int64_t j = 0; j < nr; j++) o[j] = c[j] * wt;
            }
        }
        #pragma omp barrier
        #pragma omp for schedule(static)
        for (int64_t t = 0; t < T; t++) {  /* 3: combine the K slots of each token */
            float* yt = y + t * D;
            int first = 1;
            for (int64_t k = 0; k < K; k++) {
                int64_t r = t * K + k;
                if (ids[r] < 0 || ids[r] >= E) continue;
                const float* o = out + r * D;
                if (first) memcpy(yt, o, (size_t)D * sizeof(float));
                else for (int64_t d = 0; d < D; d++) yt[d] += o[d];
                first = 0;
            }
            if (first) memset(yt, 0, (size_t)D * sizeof(float));
        }
    }
    free(te);
    rc = 0;
done:
    free(cnt); free(off); free(tb); free(rows); free(ex);
    if (arena_bytes > ARENA_KEEP) { free(arena); arena = NULL; arena_bytes = 0; }
    return rc;
}
"""


@lru_cache(maxsize=1)
def _library() -> Optional[ctypes.CDLL]:
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    return _cbuild.load("cpu_moe", _SOURCE, {
        "moebench_fused_moe": [ptr, i64, i64, ptr, ptr, i64, ptr, ptr, ptr, ptr, ptr, ptr, i64, i64, ctypes.c_int, ptr,
                               ctypes.c_int],
        "moebench_moe_pack": [ptr, i64, i64, i64, i64, ptr, ctypes.c_int]})


def available() -> bool:
    """Whether the compiled kernel can run here (builds it on the first call)."""
    return _library() is not None


_ACT = {"silu": 0, "swiglu_oai": 1}


def supports(x_TD: torch.Tensor, w13_E2FD: torch.Tensor, w2_EDF: torch.Tensor, topk_weights_TK: torch.Tensor,
             activation: str, b13_E2F: Optional[torch.Tensor] = None, b2_ED: Optional[torch.Tensor] = None) -> bool:
    """Whether `fused_moe_cpu` takes these tensors: CPU fp32 throughout, contiguous weights (never copied here:
    an fp32 layer is gigabytes), a known activation."""
    ts = [x_TD, w13_E2FD, w2_EDF, topk_weights_TK] + [b for b in (b13_E2F, b2_ED) if b is not None]
    return (activation in _ACT and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in ts)
            and all(t.is_contiguous() for t in ts[1:]))


# (data_ptr, shape, groups) -> (weakref to the tensor owning the memory, its _version when packed, packed copy).
# Views of one weight share the entry; it goes when the owner is freed (its memory may then be reused).
_PACKED: dict[tuple, tuple[weakref.ref, int, torch.Tensor]] = {}


def _mem_available_bytes() -> int:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def packed_weights(w_ENK: torch.Tensor, groups: int) -> Optional[torch.Tensor]:
    """w's copy in the microkernel's panel layout ([E][groups][ceil(N/groups/16)][K][16], fp32), built on first
    use and rebuilt when w changes in place; None with MOEBENCH_CPU_PREPACK=0 or when it would take more than
    half of the memory available. The copy costs as much memory as w again (plus padding to 16 rows)."""
    key = (w_ENK.data_ptr(), tuple(w_ENK.shape), groups)
    hit = _PACKED.get(key)
    if hit is not None and hit[0]() is not None and hit[1] == w_ENK._version:
        return hit[2]
    if os.environ.get("MOEBENCH_CPU_PREPACK", "1") == "0":
        return None
    E, N, K = w_ENK.shape
    P = -(-(N // groups) // 16)
    numel = E * groups * P * K * 16
    if 4 * numel > _mem_available_bytes() // 2:
        return None
    _PACKED.pop(key, None)  # a stale copy goes before its replacement is allocated
    out = torch.empty(numel, dtype=torch.float32)
    lib = _library()
    assert lib is not None
    lib.moebench_moe_pack(w_ENK.data_ptr(), E, N, K, groups, out.data_ptr(), torch.get_num_threads())

    def forget(ref: weakref.ref) -> None:
        if _PACKED.get(key, (None,))[0] is ref:
            del _PACKED[key]

    owner = w_ENK._base if w_ENK._base is not None else w_ENK
    _PACKED[key] = (weakref.ref(owner, forget), w_ENK._version, out)
    return out


def packed_bytes() -> int:
    """Memory held by prepacked weight copies (bytes)."""
    return sum(4 * p.numel() for r, _, p in _PACKED.values() if r() is not None)


def fused_moe_cpu(x_TD: torch.Tensor, w13_E2FD: torch.Tensor, w2_EDF: torch.Tensor, topk_weights_TK: torch.Tensor,
                  topk_ids_TK: torch.Tensor, activation: str = "silu", b13_E2F: Optional[torch.Tensor] = None,
                  b2_ED: Optional[torch.Tensor] = None) -> torch.Tensor:
    """y_TD (fp32) for the shapes `fused_moe_ref` takes (checked there); `supports(...)` and `available()` must
    hold. Raises MemoryError when the C side cannot allocate its buffers (≈ 4·R·D + 4·(R + 6E)·(D + F) bytes)."""
    lib = _library()
    assert lib is not None and supports(x_TD, w13_E2FD, w2_EDF, topk_weights_TK, activation, b13_E2F, b2_ED)
    T, D = x_TD.shape
    E, F2, _ = w13_E2FD.shape
    K = topk_ids_TK.shape[1]
    x = x_TD.contiguous()
    ids = topk_ids_TK.to(torch.int64).contiguous()
    tw = topk_weights_TK.contiguous()
    y = torch.empty(T, D, dtype=torch.float32)
    w13p, w2p = packed_weights(w13_E2FD, 2), packed_weights(w2_EDF, 1)
    rc = lib.moebench_fused_moe(x.data_ptr(), T, D, ids.data_ptr(), tw.data_ptr(), K, w13_E2FD.data_ptr(),
                                w2_EDF.data_ptr(), None if w13p is None else w13p.data_ptr(),
                                None if w2p is None else w2p.data_ptr(),
                                None if b13_E2F is None else b13_E2F.data_ptr(),
                                None if b2_ED is None else b2_ED.data_ptr(), E, F2 // 2, _ACT[activation],
                                y.data_ptr(), torch.get_num_threads())
    if rc != 0:
        raise MemoryError("moebench_kernels.cpu_moe: could not allocate the layer's work buffers")
    return y
