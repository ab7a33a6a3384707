"""The region recorder a profiled run installs with `regions.set_recorder`: one timestamped record per region.

Clocks: `time.perf_counter_ns` on CPU (CLOCK_MONOTONIC, shared by the processes of one host); on GPU, CUDA events
on the current stream, placed on the host clock through a reference event recorded right after a synchronize at
the start of each step (so a region's times are when the *stream* reached it, which is what wait needs).

Every region also opens a `torch.profiler.record_function` range (and an NVTX range on GPU) with the same name,
so Kineto, Nsight and this recorder show the same `L{layer}/{phase}` labels.

A record is `(name, kind, start_ns, end_ns, exclusive_ns)`: `kind` is "compute" or "comm"; `exclusive_ns` is the
region's time minus the regions nested in it (a tensor-parallel all-reduce inside `L3/attn` is comm, not attn).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

COMPUTE, COMM = "compute", "comm"

DELAY_MS_ENV, DELAY_RANK_ENV = "MOEBENCH_TEST_DELAY_MS", "MOEBENCH_TEST_DELAY_RANK"


def test_delay_ms(rank: int) -> float:
    """Test-only knob: ms to stall at the start of every `L{i}/attn` region on rank MOEBENCH_TEST_DELAY_RANK
    (default 0). Lets a test inject a known straggler and check that it reappears as wait on the other ranks."""
    ms = float(os.environ.get(DELAY_MS_ENV, "0") or 0)
    if ms <= 0:
        return 0.0
    return ms if int(os.environ.get(DELAY_RANK_ENV, "0") or 0) == rank else 0.0


@dataclass
class Step:
    """One forward (a prefill or a decode step) and the regions inside it, all on this rank's host clock (ns)."""

    index: int
    stage: str  # "prefill" | "decode"
    tokens: int
    begin_ns: int
    end_ns: int = 0
    records: list[tuple[str, str, int, int, int]] = field(default_factory=list)
    timed: bool = True  # False for warm-up forwards
    segment: Any = None  # e.g. the batch size the engine is timing

    def to_wire(self) -> list:
        """Compact picklable form for all_gather_object."""
        return [self.index, self.stage, self.tokens, self.begin_ns, self.end_ns, self.records, self.timed, self.segment]

    @classmethod
    def from_wire(cls, w: list) -> "Step":
        return cls(index=w[0], stage=w[1], tokens=w[2], begin_ns=w[3], end_ns=w[4], records=[tuple(r) for r in w[5]],
                   timed=w[6], segment=w[7])


class _Span:
    """Context manager for one region; slots keep the per-phase cost to a few attribute writes."""

    __slots__ = ("rec", "name", "kind", "idx", "rf")

    def __init__(self, rec: "TimelineRecorder", name: str, kind: str):
        self.rec, self.name, self.kind = rec, name, kind

    def __enter__(self):
        rec = self.rec
        # record_function costs tens of µs even with no profiler running: enter it only when one listens
        self.rf = torch.profiler.record_function(self.name) if torch.autograd._profiler_enabled() else None
        if self.rf is not None:
            self.rf.__enter__()
        if rec.cuda:
            torch.cuda.nvtx.range_push(self.name)
        self.idx = rec._open(self.name, self.kind)
        if rec.delay_s and self.kind == COMPUTE and self.name.endswith("/attn"):
            rec._delay()  # inside the region: the delayed rank's own time shows it as compute
        return self

    def __exit__(self, *exc):
        rec = self.rec
        rec._close(self.idx)
        if rec.cuda:
            torch.cuda.nvtx.range_pop()
        if self.rf is not None:
            self.rf.__exit__(*exc)
        return False


class TimelineRecorder:
    """Implements `moebench.profile.regions.Recorder`. Regions outside a step (between forwards) are ignored."""

    def __init__(self, device: str = "cpu", rank: int = 0):
        self.cuda = device.startswith("cuda")
        self.delay_s = test_delay_ms(rank) / 1e3
        self.steps: list[Step] = []
        self._step: Optional[Step] = None
        # open/closed raw entries of the current step: [name, kind, start, end, parent]; start/end are ns on CPU,
        # CUDA events on GPU until step_end resolves them
        self._raw: list[list[Any]] = []
        self._stack: list[int] = []
        self._ref_event = None
        self._pool: list = []  # CUDA events reused across steps (creating them costs launch-bound steps)
        self._used = 0

    # -- Recorder protocol -------------------------------------------------------------------------------
    def region(self, name: str) -> _Span:
        return _Span(self, name, COMPUTE)

    def collective(self, name: str) -> _Span:
        return _Span(self, name, COMM)

    def _delay(self) -> None:
        if self.cuda:  # hold the stream, not just the host, so the delay reaches the collectives
            torch.cuda._sleep(int(self.delay_s * 1.4e9))  # ~cycles at a typical boost clock; a test knob only
        else:  # spin, not sleep: a loaded host wakes sleepers late, which would stretch the delay unpredictably
            end = time.perf_counter() + self.delay_s
            while time.perf_counter() < end:
                pass

    # -- clock ----------------------------------------------------------------------------------------------
    def _now(self):
        if self.cuda:
            if self._used == len(self._pool):
                self._pool.append(torch.cuda.Event(enable_timing=True))
            ev = self._pool[self._used]
            self._used += 1
            ev.record()
            return ev
        return time.perf_counter_ns()

    def _open(self, name: str, kind: str) -> int:
        if self._step is None:
            return -1
        parent = self._stack[-1] if self._stack else -1
        self._raw.append([name, kind, self._now(), None, parent])
        self._stack.append(len(self._raw) - 1)
        return len(self._raw) - 1

    def _close(self, idx: int) -> None:
        if idx < 0 or self._step is None:
            return
        self._raw[idx][3] = self._now()
        if self._stack and self._stack[-1] == idx:
            self._stack.pop()

    # -- steps ----------------------------------------------------------------------------------------------
    def step_begin(self, stage: str, tokens: int, *, timed: bool = True, segment: Any = None) -> None:
        if self.cuda:
            torch.cuda.synchronize()  # the reference event then marks "now" on both clocks
            begin = time.perf_counter_ns()
            self._used = 0
            self._ref_event = self._now()
        else:
            begin = time.perf_counter_ns()
        self._step = Step(index=len(self.steps), stage=stage, tokens=tokens, begin_ns=begin, timed=timed,
                          segment=segment)
        self._raw, self._stack = [], []

    def step_end(self) -> Optional[Step]:
        step = self._step
        if step is None:
            return None
        if self.cuda:
            torch.cuda.synchronize()
        step.end_ns = time.perf_counter_ns()
        self._step = None
        raw = [r for r in self._raw if r[3] is not None]
        if self.cuda:
            ref, base = self._ref_event, step.begin_ns
            for r in raw:
                r[2] = base + int(ref.elapsed_time(r[2]) * 1e6)
                r[3] = base + int(ref.elapsed_time(r[3]) * 1e6)
        child_ns = [0] * len(self._raw)
        for r in raw:
            if r[4] >= 0:
                child_ns[r[4]] += r[3] - r[2]
        for i, r in enumerate(self._raw):
            if r[3] is not None:
                step.records.append((r[0], r[1], r[2], r[3], r[3] - r[2] - child_ns[i]))
        self._raw, self._stack = [], []
        self.steps.append(step)
        return step
