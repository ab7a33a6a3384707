"""Can moebench's endpoint client keep up, and what does its own timestamping add? Against the zero-latency stub
(moebench.endpoint.stub) in a separate process on this machine:

    python benchmarks/endpoint_client_overhead.py                  # defaults: 3 repeats, 2000 requests × 64 tokens

Throughput phase: a closed loop at --concurrency, 1 token per chunk, continuous usage (the costliest accounting):
requests/s and streamed tokens/s per repeat over wall time, and per CPU-second the client process used (its own
capacity, since the stub shares the cores); median and spread. Goals: >= 1,000 requests/s, >= 50,000 tokens/s.
Timestamp phase: concurrency 1, the stub pausing --gap-ms between tokens; every chunk's client receive time minus
the stub's write time of that chunk (both time.perf_counter = CLOCK_MONOTONIC, one clock across processes), and
the client's TTFT over the stub's own. Goal: p99 of the added time < 1 ms.

The client and the stub share the machine's cores (2 here, shared with other users): the numbers are the floor of
what the client sustains, labelled with the load average they were taken at.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moebench.endpoint.client import RequestOptions, open_session, send  # noqa: E402
from moebench.endpoint.dataset import Prompt  # noqa: E402
from moebench.endpoint.load import Level, run_level  # noqa: E402
from moebench.endpoint.stub import Faults, serve_in_thread  # noqa: E402
from moebench.results import percentile  # noqa: E402


def _stub_process(conn, faults: Faults) -> None:
    with serve_in_thread(faults) as server:
        server.log.keep_bodies = True
        conn.send(server.port)
        while True:
            msg = conn.recv()
            if msg == "log":
                conn.send(([b.get("messages", [{}])[0].get("content") for b in server.log.bodies],
                           server.log.requests))
                server.log.bodies.clear()
                server.log.requests.clear()
            elif msg == "stop":
                return


class Stub:
    def __init__(self, faults: Faults):
        self.conn, child = mp.Pipe()
        self.proc = mp.get_context("spawn").Process(target=_stub_process, args=(child, faults), daemon=True)
        self.proc.start()
        if not self.conn.poll(30):
            raise RuntimeError("stub did not start")
        self.url = f"http://127.0.0.1:{self.conn.recv()}/v1/chat/completions"

    def log(self):
        self.conn.send("log")
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send("stop")
        self.proc.join(10)


async def _level(url: str, prompts: list[Prompt], concurrency: int, continuous: bool):
    async with open_session(concurrency) as client:
        opts = RequestOptions(url=url, model="stub", api="chat", continuous_usage=continuous)

        async def one(p: Prompt, q: float):
            return await send(client, opts, p, None, q)

        await run_level(one, prompts[: concurrency * 2], Level("concurrency", concurrency), max_duration_s=60,
                        stop=asyncio.Event())  # warm-up: connections open, code paths hot
        return await run_level(one, prompts, Level("concurrency", concurrency), max_duration_s=120,
                               stop=asyncio.Event())


def spread(xs: list[float]) -> str:
    return f"median {statistics.median(xs):,.0f} (min {min(xs):,.0f}, max {max(xs):,.0f}, n {len(xs)})"


def throughput(args) -> tuple[list[float], list[float], list[float], list[float]]:
    """Per repeat: requests/s and tokens/s over wall time, and per CPU-second of the client process (the stub
    runs in its own process, so the client's own capacity is the second pair)."""
    stub = Stub(Faults(tokens_per_chunk=args.tokens_per_chunk, usage="continuous"))
    rps, tps, rpc, tpc = [], [], [], []
    try:
        prompts = [Prompt(f"request {i}", args.tokens, None) for i in range(args.requests)]
        for rep in range(args.repeats):
            cpu0 = time.process_time()
            run = asyncio.run(_level(stub.url, prompts, args.concurrency, True))
            cpu = time.process_time() - cpu0  # includes the warm-up level: the capacity is, if anything, low
            stub.log()
            ok = [r for r in run.records if r.ok]
            assert len(ok) == args.requests and all(r.output_tokens == args.tokens for r in ok), "requests failed"
            rps.append(len(ok) / run.wall_s)
            tps.append(sum(r.output_tokens for r in ok) / run.wall_s)
            rpc.append(len(ok) / cpu)
            tpc.append(sum(r.output_tokens for r in ok) / cpu)
            print(f"  repeat {rep + 1}: {rps[-1]:,.0f} requests/s, {tps[-1]:,.0f} tokens/s ({run.wall_s:.2f} s wall); "
                  f"client CPU {cpu:.2f} s: {rpc[-1]:,.0f} requests and {tpc[-1]:,.0f} tokens per CPU-second")
    finally:
        stub.close()
    return rps, tps, rpc, tpc


def timestamps(args) -> tuple[list[float], list[float], list[float]]:
    stub = Stub(Faults(tokens_per_chunk=1, usage="continuous", token_delay_s=args.gap_ms / 1e3))
    try:
        prompts = [Prompt(f"request {i}", 32, None) for i in range(args.ts_requests)]
        run = asyncio.run(_level(stub.url, prompts, 1, True))
        texts, log = stub.log()
    finally:
        stub.close()
    served = {t: entry for t, entry in zip(texts, log)}
    added, ttft_client, ttft_stub = [], [], []
    for p, r in zip(prompts, sorted(run.records, key=lambda r: r.start)):
        arrived, writes = served[p.text]
        added.extend((c - w) * 1e3 for c, w in zip(r.chunk_times, writes))
        ttft_client.append((r.first_token - r.start) * 1e3)
        ttft_stub.append((writes[0] - arrived) * 1e3)
    return added, ttft_client, ttft_stub


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--tokens", type=int, default=64, help="output tokens per request (one per chunk)")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--tokens-per-chunk", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ts-requests", type=int, default=100)
    ap.add_argument("--gap-ms", type=float, default=2.0)
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"throughput: {args.requests} requests × {args.tokens} tokens, concurrency {args.concurrency}")
    rps, tps, rpc, tpc = throughput(args)
    print(f"requests/s {spread(rps)}  (wall: the stub and the machine's other users share the cores)")
    print(f"tokens/s   {spread(tps)}")
    print(f"client requests per CPU-second {spread(rpc)}  [goal >= 1,000]")
    print(f"client tokens per CPU-second   {spread(tpc)}  [goal >= 50,000]")
    added, tc, ts = timestamps(args)
    print(f"timestamps: {args.ts_requests} requests × 32 chunks, {args.gap_ms:g} ms apart, concurrency 1")
    print(f"  chunk receive − stub write, ms: median {percentile(added, 50):.3f}, p90 {percentile(added, 90):.3f}, "
          f"p99 {percentile(added, 99):.3f}, n {len(added)}  [goal p99 < 1 ms]")
    print(f"  TTFT client − stub, ms: median {percentile([a - b for a, b in zip(tc, ts)], 50):.3f}, p99 "
          f"{percentile([a - b for a, b in zip(tc, ts)], 99):.3f}; ratio of medians client/stub "
          f"{statistics.median(tc) / statistics.median(ts):.2f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
