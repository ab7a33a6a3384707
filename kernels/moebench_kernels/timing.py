"""GPU timing shared by the tuner and the kernel benchmarks: L2 flushed, CUDA events, optional graph replay.

A decode-sized fused MoE is four launches of a few µs of GPU work each; timed eagerly, Triton's Python launch
path (tens of µs per launch) would be measured instead of the kernels. Replaying a captured CUDA graph removes
it, as the engine's decode step does. The L2 (50 MB on an H100) is flushed by reading a 256 MiB buffer before
every repeat, so that weights are read from HBM as they are in a real forward pass. A read, not a write: L2 is
write-back, and a zeroing flush would leave up to 50 MB of dirty lines to be written back inside the timed
kernel (up to ~10 µs at HBM speed, against a 40 µs decode point); read lines are clean and are dropped for free.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

_FLUSH_BYTES = 256 << 20


class CudaTimer:
    def __init__(self) -> None:
        self.flush = torch.zeros(_FLUSH_BYTES // 4, dtype=torch.int32, device="cuda")

    def events(self, run: Callable[[], Any], repeats: int) -> list[float]:
        """Milliseconds of each of `repeats` calls, L2 flushed before each."""
        out = []
        for _ in range(repeats):
            self.flush.sum()  # also writes back the previous repeat's dirty lines, before the clock starts
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            run()
            b.record()
            b.synchronize()
            out.append(a.elapsed_time(b))
        return out

    def time(self, fn: Callable[[], Any], warmup: int, repeats: int, graph: bool) -> list[float]:
        """Per-repeat milliseconds of `fn` (no host syncs inside when `graph`), replayed from a CUDA graph
        when `graph`."""
        for _ in range(max(warmup, 1)):
            fn()
        torch.cuda.synchronize()
        if not graph:
            return self.events(fn, repeats)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()  # caching-allocator blocks made on the stream the capture uses
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fn()
        g.replay()
        torch.cuda.synchronize()
        try:
            return self.events(g.replay, repeats)
        finally:
            del g


def median(xs: list[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2]
