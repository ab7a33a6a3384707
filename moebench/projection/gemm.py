"""Tile and wave quantization of tensor-core GEMMs: the fraction of its FLOP-roof speed a GEMM's shape allows.

Source: NVIDIA Deep Learning Performance documentation, "Matrix Multiplication Background" user's guide (sections
on tile quantization and wave quantization). A GEMM of M×N×K computes its output in tiles of tm×tn, each by one
SM; the tiles run in waves of one per SM and every wave costs a full tile's time, so

    tiles = ⌈M/tm⌉·⌈N/tn⌉,  waves = ⌈tiles/SMs⌉,  efficiency = M·N / (waves · SMs · tm · tn)

= the tile quantization (M·N / (tiles·tm·tn)) times the wave quantization (tiles / (waves·SMs)). Never above 1:
it only ever slows a GEMM down. Three rules the common GEMM libraries follow, so that narrow GEMMs are not charged
for work no kernel does:
- fewer rows (or columns) than one tile: kernels shrink the tile to them (64-row wgmma tiles, swap-AB small-M
  kernels), so no padding is charged; only the waves count;
- a grid that does not fill the GPU once is split along K (cuBLAS / CUTLASS split-K) into ⌊SMs/tiles⌋ parts, each
  at least 256 deep;
- routed experts: under uniform routing an expert's rows are Binomial(T, K/E) for T tokens (the distribution
  behind E·(1 − (1 − K/E)^T) experts touched), so row tiles are taken in expectation over it, not at the mean
  (512 rows are exactly 4 tiles; 512 ± 20 are 5 tiles half the time). An eager per-expert loop runs one GEMM per
  expert, each quantized on its own; a grouped kernel launches the tiles of all experts together, so they share
  waves.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional

_MIN_SPLIT_K = 256  # the shallowest K slice a split-K GEMM is given (4 k-steps of a 64-deep tile)
_EXACT_SD = 20.0  # rows per expert: exact binomial below this standard deviation, normal approximation above


@dataclass(frozen=True)
class Gemm:
    """`count` matmuls of the same shape in one op: (rows × k) · (k × n).

    Dense: `rows` rows each. Routed experts (`tokens` > 0): `count` experts, each with Binomial(tokens, p) rows."""

    n: int
    k: int
    rows: float = 0.0
    count: float = 1.0
    tokens: int = 0
    p: float = 0.0

    @property
    def mean_rows(self) -> float:
        return self.tokens * self.p if self.tokens else self.rows

    @property
    def flops(self) -> float:
        return 2.0 * self.count * self.mean_rows * self.n * self.k


def wave_efficiency(m: float, n: int, k: int, sms: int, tile: tuple[int, int]) -> float:
    """Fraction of the FLOP roof one M×N×K GEMM reaches on `sms` SMs with `tile` = (tm, tn) output tiles, in (0, 1]."""
    if m <= 0:
        return 1.0
    return m * n / _sm_tiles(m, n, k, sms, tile)


def _sm_tiles(m: float, n: int, k: int, sms: int, tile: tuple[int, int]) -> float:
    """Output elements the GPU is busy for (waves × SMs × tile area / split): the GEMM's time in units of one
    element of output computed over the full K on one SM."""
    tm, tn = min(tile[0], math.ceil(m)), min(tile[1], n)
    return _busy(math.ceil(m / tm) * math.ceil(n / tn), tm * tn, k, sms)


def _busy(tiles: int, tile_area: int, k: int, sms: int) -> float:
    """Waves × SMs × tile area, a grid smaller than the GPU split along K first."""
    split = max(1, min(sms // tiles, k // _MIN_SPLIT_K)) if tiles < sms else 1
    return math.ceil(tiles * split / sms) * sms * tile_area / split


@functools.lru_cache(maxsize=4096)
def _row_pmf(tokens: int, p: float) -> tuple[tuple[float, float], ...]:
    """(rows, probability) of Binomial(tokens, p), on a grid of row counts fine enough for tiles of ≥ 16 rows."""
    mu, sd = tokens * p, math.sqrt(tokens * p * (1 - p))
    if p >= 1.0 or sd == 0.0:
        return ((mu, 1.0),)
    if sd <= _EXACT_SD:
        lo, hi = max(0, int(mu - 8 * sd)), min(tokens, int(mu + 8 * sd) + 1)
        lp = math.lgamma(tokens + 1)
        pmf = [(m, math.exp(lp - math.lgamma(m + 1) - math.lgamma(tokens - m + 1) + m * math.log(p)
                            + (tokens - m) * math.log1p(-p))) for m in range(lo, hi + 1)]
    else:  # normal with continuity correction, in 8-row bins (each bin's rows at its top: never optimistic)
        cdf = lambda x: 0.5 * (1 + math.erf((x + 0.5 - mu) / (sd * math.sqrt(2))))  # noqa: E731
        lo, hi = max(0, int((mu - 8 * sd) // 8) * 8), int(mu + 8 * sd) + 8
        pmf = [(min(m + 8, tokens), cdf(m + 8) - cdf(m)) for m in range(lo, hi, 8)]
    total = sum(w for _, w in pmf)
    return tuple((m, w / total) for m, w in pmf if w > 0)


@functools.lru_cache(maxsize=65536)
def gemm_efficiency(g: Gemm, sms: int, tile: tuple[int, int], grouped: bool = True) -> float:
    """Fraction of the FLOP roof the matmuls of `g` reach together (FLOP-weighted), in (0, 1].

    Routed experts with `grouped`: one launch for all `count` experts (their tiles share waves); otherwise one GEMM
    per expert, each quantized on its own."""
    if not g.tokens:
        return wave_efficiency(g.rows, g.n, g.k, sms, tile)
    pmf = _row_pmf(g.tokens, g.p)
    mean = sum(m * w for m, w in pmf)
    if mean <= 0:
        return 1.0
    if not grouped:
        return mean * g.n / sum(w * _sm_tiles(m, g.n, g.k, sms, tile) for m, w in pmf if m > 0)
    # One grid holds every expert's row tiles; the row tile is sized for the mean rows (as fused-MoE kernels pick
    # their block size from the tokens per expert).
    tm, tn = min(tile[0], math.ceil(mean)), min(tile[1], g.n)
    row_tiles = math.ceil(g.count * sum(w * math.ceil(m / tm) for m, w in pmf))
    return min(1.0, g.count * mean * g.n / _busy(row_tiles * math.ceil(g.n / tn), tm * tn, g.k, sms))


def op_efficiency(gemms: tuple[Gemm, ...], sms: Optional[int], tile: Optional[tuple[int, int]],
                  grouped: bool = True) -> float:
    """FLOP-weighted efficiency of an op's matmuls (harmonic: time adds up); 1.0 without an SM count or a tile."""
    if not gemms or not sms or not tile:
        return 1.0
    work = sum(g.flops for g in gemms)
    time = sum(g.flops / gemm_efficiency(g, sms, tile, grouped) for g in gemms if g.flops > 0)
    return work / time if time > 0 else 1.0
