"""The collectives moebench issues, and `watched(name)` around each use of them.

`watched` does three things: opens the profiler's collective region (`L{layer}/dispatch|combine|allreduce`,
moebench.profile.regions), tells the fault guard a collective is in flight (its watchdog bounds the time spent
there), and turns a backend error (peer gone, timeout) into `CollectiveFailed` carrying the collective's name.

The helpers below are plain torch.distributed calls; they skip the call entirely on a group of one.
"""

from __future__ import annotations

import contextlib
import re
from datetime import timedelta
from typing import Any, Iterator, Optional, Protocol

import torch
import torch.distributed as dist

from moebench.profile.regions import collective


_SOURCE_REF = re.compile(r"\[[^\]]*\.(?:cc|cpp|h|hpp):\d+\]\s*")  # gloo prefixes its C++ source location


class CollectiveFailed(RuntimeError):
    """A collective raised (a peer closed its connection, or the group timeout expired)."""

    def __init__(self, name: str, cause: BaseException):
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        self.name, self.cause = name, _SOURCE_REF.sub("", first)[:200]
        super().__init__(f"collective {name} failed: {self.cause}")


class InFlight(Protocol):
    def enter(self, name: str, limit_s: Optional[float]) -> None: ...

    def leave(self) -> None: ...


_GUARD: Optional[InFlight] = None


def set_guard(guard: Optional[InFlight]) -> None:
    global _GUARD
    _GUARD = guard


@contextlib.contextmanager
def watched(name: str, *, profile: bool = True, limit_s: Optional[float] = None) -> Iterator[None]:
    """Around one logical communication step (which may be several calls, e.g. counts then payload).

    `limit_s`: how long the guard lets it run (default: derived from the collective timeout).
    """
    g = _GUARD
    if g is not None:
        g.enter(name, limit_s)
    try:
        with collective(name) if profile else contextlib.nullcontext():
            yield
    except CollectiveFailed:
        raise
    except RuntimeError as exc:  # gloo/NCCL errors are RuntimeError subclasses (DistBackendError, ...)
        raise CollectiveFailed(name, exc) from exc
    finally:
        if g is not None:
            g.leave()


def all_reduce_(x: torch.Tensor, group: Any, size: int) -> torch.Tensor:
    """In-place sum over the group; returns x."""
    if size > 1:
        dist.all_reduce(x, group=group)
    return x


def all_to_all(x: torch.Tensor, send_splits: list[int], recv_splits: list[int], group: Any) -> torch.Tensor:
    """Rows of `x` go out in `send_splits` chunks (one per peer, in group order); returns the rows received."""
    out = x.new_empty((sum(recv_splits), *x.shape[1:]))
    dist.all_to_all_single(out, x.contiguous(), output_split_sizes=recv_splits, input_split_sizes=send_splits, group=group)
    return out


def all_gather_rows(x: torch.Tensor, sizes: list[int], rank: int, group: Any) -> torch.Tensor:
    """Concatenate every rank's rows (rank r holds `sizes[r]` rows) in group order; uneven sizes are padded."""
    if len(sizes) == 1:
        return x
    pad = max(sizes)
    buf = x.new_zeros((pad, *x.shape[1:]))
    buf[: sizes[rank]] = x
    parts = [torch.empty_like(buf) for _ in sizes]
    dist.all_gather(parts, buf, group=group)
    return torch.cat([p[:n] for p, n in zip(parts, sizes)])


def barrier(group: Any, timeout_s: float) -> None:
    """All ranks of a gloo group line up; a rank that does not arrive in time is named in the error."""
    dist.monitored_barrier(group=group, timeout=timedelta(seconds=timeout_s), wait_all_ranks=True)


def gather_to_rank0(obj: Any, rank: int, world: int, group: Any) -> Optional[list[Any]]:
    """Every rank's `obj` (picklable), in rank order, on global rank 0; None elsewhere."""
    out = [None] * world if rank == 0 else None
    dist.gather_object(obj, out, dst=0, group=group)
    return out
