"""Load generation: a closed loop (N requests always in flight) or an open loop (arrivals at a rate: Poisson, gamma
with a burstiness, or constant), bounded in count and in time. A request still running when a level's time is up
is cancelled and counted as `cut`: apart from the requests that failed, but in the level's failure ratio. An
open-loop arrival still waiting in the client's own queue (`max_concurrency`) then was never sent: `unsent`, in
no ratio."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterator, Literal, Optional

from moebench.endpoint.client import RequestRecord
from moebench.endpoint.dataset import Prompt

Send = Callable[[Prompt, float], Awaitable[RequestRecord]]  # (prompt, queued_s) -> record


@dataclass(frozen=True)
class Level:
    mode: Literal["concurrency", "rate"]
    value: float  # requests in flight, or requests per second

    @property
    def label(self) -> str:
        return f"concurrency {int(self.value)}" if self.mode == "concurrency" else f"rate {self.value:g}/s"


@dataclass
class LevelRun:
    records: list[RequestRecord] = field(default_factory=list)
    started: float = 0.0  # perf_counter seconds
    ended: float = 0.0
    cut: int = 0  # sent, and in flight when the time limit or a stop came
    unsent: int = 0  # arrived but still in the client's queue (open loop under max_concurrency) then: never sent
    sending: int = 0  # requests sent and not yet answered (what `cut` counts at the end)
    stopped: bool = False  # a stop (SIGINT/SIGTERM) ended it early

    @property
    def wall_s(self) -> float:
        return self.ended - self.started


def arrivals(rate: float, arrival: str, burstiness: float, seed: int) -> Iterator[float]:
    """Gaps in seconds between arrivals, mean 1/rate: exponential (Poisson), gamma of shape `burstiness`
    (coefficient of variation 1/√burstiness: < 1 burstier than Poisson), or constant."""
    rng = random.Random(seed)
    while True:
        if arrival == "constant":
            yield 1.0 / rate
        elif arrival == "gamma":
            yield rng.gammavariate(burstiness, 1.0 / (rate * burstiness))
        else:
            yield rng.expovariate(rate)


async def run_level(send: Send, prompts: list[Prompt], level: Level, *, max_duration_s: float,
                    stop: asyncio.Event, arrival: str = "poisson", burstiness: float = 1.0,
                    max_concurrency: Optional[int] = None, seed: int = 0) -> LevelRun:
    """Send `prompts` at `level` until all are answered, `max_duration_s` passes, or `stop` is set."""
    run = LevelRun(started=time.perf_counter())
    in_flight: set[asyncio.Task] = set()

    async def one(prompt: Prompt, queued_s: float) -> None:
        run.sending += 1
        try:
            run.records.append(await send(prompt, queued_s))
        finally:
            run.sending -= 1

    if level.mode == "concurrency":
        feeder = _closed(one, prompts, int(level.value), stop, in_flight)
    else:
        gaps = arrivals(level.value, arrival, burstiness, seed)
        feeder = _open(one, prompts, gaps, stop, in_flight, max_concurrency)
    main = asyncio.ensure_future(feeder)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({main, stopper}, timeout=max_duration_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        run.stopped = stop.is_set()
        for t in (main, stopper):
            t.cancel()
        # every unfinished task is a request sent and unanswered or, in an open loop's client queue, one never sent
        waiting = sum(1 for t in in_flight if not t.done())
        run.cut = run.sending
        run.unsent = waiting - run.sending if level.mode == "rate" else 0
        for t in in_flight:
            t.cancel()
        await asyncio.gather(main, stopper, *in_flight, return_exceptions=True)
        run.ended = time.perf_counter()
    return run


async def _closed(one, prompts: list[Prompt], concurrency: int, stop: asyncio.Event,
                  in_flight: set[asyncio.Task]) -> None:
    queue = iter(prompts)

    async def worker() -> None:
        for prompt in queue:  # shared iterator: each prompt goes to one worker
            if stop.is_set():
                return
            await one(prompt, 0.0)

    workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, len(prompts)))]
    in_flight.update(workers)
    await asyncio.gather(*workers)


async def _open(one, prompts: list[Prompt], gaps: Iterator[float], stop: asyncio.Event,
                in_flight: set[asyncio.Task], max_concurrency: Optional[int]) -> None:
    slots = asyncio.Semaphore(max_concurrency) if max_concurrency else None
    clock = time.perf_counter
    due = clock()

    async def gated(prompt: Prompt, arrived: float) -> None:
        if slots is None:
            await one(prompt, 0.0)
            return
        async with slots:  # the client's queue: time waiting here is queue time, not TTFT
            await one(prompt, clock() - arrived)

    for prompt in prompts:
        if stop.is_set():
            return
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        t = asyncio.ensure_future(gated(prompt, due))
        in_flight.add(t)
        t.add_done_callback(in_flight.discard)
        due += next(gaps)
    if in_flight:
        await asyncio.gather(*list(in_flight))
