import asyncio
import itertools
import statistics
import time

import pytest

from moebench.endpoint.client import RequestRecord
from moebench.endpoint.dataset import Prompt
from moebench.endpoint.load import Level, arrivals, run_level

from .conftest import run

PROMPTS = [Prompt(f"p{i}", 4, None) for i in range(40)]


def fake_server(latency_s: float):
    """A send() that takes `latency_s` and notes how many requests were in flight at once."""
    state = {"now": 0, "peak": 0}

    async def send(prompt: Prompt, queued_s: float) -> RequestRecord:
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        rec = RequestRecord(start=time.perf_counter(), queued_s=queued_s)
        try:
            await asyncio.sleep(latency_s)
        finally:
            state["now"] -= 1
        rec.first_token = rec.end = time.perf_counter()
        rec.chunk_times = [rec.end]
        return rec

    return send, state


def level(send, lv, prompts=PROMPTS, **kw):
    kw.setdefault("max_duration_s", 30)

    async def go():
        return await run_level(send, prompts, lv, stop=asyncio.Event(), **kw)

    return run(go())


def test_closed_loop_keeps_exactly_n_in_flight_and_sends_each_prompt_once():
    send, state = fake_server(0.01)
    r = level(send, Level("concurrency", 4))
    assert len(r.records) == 40 and r.cut == 0 and not r.stopped
    assert state["peak"] == 4
    assert 0.09 <= r.wall_s < 2  # 10 waves of 10 ms


def test_a_level_is_bounded_in_time_and_cut_requests_are_counted():
    send, _ = fake_server(0.2)
    r = level(send, Level("concurrency", 3), max_duration_s=0.3)
    assert len(r.records) == 3 and r.cut == 3  # one wave done, the second cut at the limit
    assert r.wall_s < 1


def test_open_loop_rate_and_client_queue():
    send, state = fake_server(0.05)
    r = level(send, Level("rate", 200.0), arrival="constant", max_concurrency=2)
    assert len(r.records) == 40 and state["peak"] == 2
    # arrivals every 5 ms against two 50 ms slots: later requests wait in the client's queue
    assert max(x.queued_s for x in r.records) > 0.2


def test_an_arrival_still_in_the_client_queue_at_the_limit_was_never_sent():
    """Open loop under max_concurrency: at the time limit one request is in flight (cut: in the failure ratio) and
    the arrivals queued behind it in the client were never sent (unsent: in no ratio)."""
    send, state = fake_server(0.2)
    r = level(send, Level("rate", 200.0), arrival="constant", max_concurrency=1, max_duration_s=0.3)
    assert len(r.records) == 1 and r.cut == 1 and state["peak"] == 1
    assert r.unsent == 40 - 2  # every prompt arrived within 0.2 s: all but the answered and the cut one waited
    closed = level(send, Level("concurrency", 3), max_duration_s=0.3)
    assert closed.cut == 3 and closed.unsent == 0  # a closed loop sends each request as a client frees


def test_stop_ends_the_level_and_marks_it():
    send, _ = fake_server(0.5)

    async def go():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.1, stop.set)
        return await run_level(send, PROMPTS, Level("concurrency", 2), max_duration_s=30, stop=stop)

    r = run(go())
    assert r.stopped and r.cut == 2 and r.wall_s < 1


@pytest.mark.parametrize("arrival,burstiness,cv", [("poisson", 1.0, 1.0), ("gamma", 0.25, 2.0),
                                                    ("constant", 1.0, 0.0)])
def test_arrival_gaps_have_the_rate_and_burstiness_asked(arrival, burstiness, cv):
    gaps = list(itertools.islice(arrivals(10.0, arrival, burstiness, seed=1), 20000))
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(0.1, rel=0.05)
    assert statistics.pstdev(gaps) / mean == pytest.approx(cv, abs=0.1)
