"""A local OpenAI-compatible streaming server with injectable faults, on asyncio streams (stdlib only): the
tests' fault server, the client-overhead benchmark's zero-latency stub, and a way to try `moebench run` on an
endpoint workload without a GPU. Binds 127.0.0.1 only.

Every completion streams `max_tokens` tokens ("tok" each) in chunks of `tokens_per_chunk`. `Faults` says what
goes wrong; the server notes, per request, when it read the request and wrote each content chunk
(time.perf_counter: CLOCK_MONOTONIC, comparable across processes on Linux).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, Literal, Optional

# what transformers serve accepts of ours: stream_options yes, vLLM's ignore_eos and continuous usage no
KNOWN_FIELDS = {"model", "messages", "prompt", "max_tokens", "max_completion_tokens", "stream", "temperature",
                "stream_options"}


@dataclass
class Faults:
    tokens_per_chunk: int = 1
    usage: Literal["none", "final", "continuous"] = "final"  # continuous: only when the request asks for it
    done_marker: bool = True
    first_token_delay_s: float = 0.0
    token_delay_s: float = 0.0
    error_after_chunks: Optional[int] = None  # an error object mid-stream after this many content chunks
    drop_after_chunks: Optional[int] = None  # close the connection mid-stream after this many content chunks
    http_500_every: Optional[int] = None  # every n-th completion request answers HTTP 500
    # every n-th completion request (of those that stream): aborted after 3 chunks (finish_reason "abort", then usage
    # and [DONE] as vLLM ends an aborted request), a first chunk of an unforeseen shape (`choices: [null]`), or no [DONE]
    abort_every: Optional[int] = None
    eos_after: Optional[int] = None  # the model's own end of sequence after this many tokens (ignore_eos not honoured)
    empty_events: bool = False  # a `data:` line with nothing after it before each content chunk (legal SSE)
    odd_chunk_every: Optional[int] = None
    no_done_every: Optional[int] = None
    http_500_first: int = 0  # the first n completion requests answer HTTP 503 (a server warming up)
    silent_after: Optional[int] = None  # completion requests after the n-th get no answer (for SILENT_S seconds)
    reject_unknown: bool = False  # HTTP 422 for fields beyond KNOWN_FIELDS (ignore_eos, continuous_usage_stats)
    reject_fields: tuple[str, ...] = ()  # HTTP 422 for only these (a server with some of the extensions)
    metrics: bool = False  # serve a Prometheus /metrics
    foreign_metrics: bool = False  # serve another exporter's /metrics instead (none of the names moebench reads)
    # serve SGLang's expert-distribution endpoints, dumping `stat`-mode records (.pt) into this folder
    expert_distribution_dir: Optional[str] = None
    prompt_tokens: int = 7


SILENT_S = 5.0


@dataclass
class StubLog:
    """Per completion request: (arrived, [chunk write times]) in perf_counter seconds."""

    requests: list[tuple[float, list[float]]] = field(default_factory=list)
    bodies: list[dict] = field(default_factory=list)
    keep_bodies: bool = True


def metrics_text(running: int, chunks: int, tokens: int) -> str:
    """vLLM-named metrics: in-flight requests, and every chunk written counted as one engine iteration."""
    return f"""# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{model_name="stub"}} {running}.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{model_name="stub"}} 0.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{model_name="stub"}} {min(1.0, running / 100)}
# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{{model_name="stub"}} 0.0
# HELP vllm:iteration_tokens_total Histogram of number of tokens per engine_step.
# TYPE vllm:iteration_tokens_total histogram
vllm:iteration_tokens_total_bucket{{le="+Inf",model_name="stub"}} {chunks}.0
vllm:iteration_tokens_total_count{{model_name="stub"}} {chunks}.0
vllm:iteration_tokens_total_sum{{model_name="stub"}} {tokens}.0
"""


# the stub's MoE while it records an expert distribution: layer 0 spreads tokens round-robin over the experts,
# layer 1 sends every token to expert 0
STUB_LAYERS, STUB_EXPERTS = 2, 4


class StubServer:
    def __init__(self, faults: Optional[Faults] = None, model: str = "stub-model"):
        self.faults = faults or Faults()
        self.model = model
        self.log = StubLog()
        self.port = 0
        self._n = 0
        self._running = 0
        self._chunks = 0
        self._tokens = 0
        self._server: Optional[asyncio.AbstractServer] = None
        self._recording = False
        self._steps: list[list[list[int]]] = []  # per forward pass: [layer][expert] tokens, while recording
        self._routed = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: one connection, many requests
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                body = await reader.readexactly(int(hdrs.get("content-length", "0")))
                arrived = time.perf_counter()
                if not await self._route(method, path, body, arrived, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass  # the client went away, or the server is stopping: nothing to answer
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _route(self, method: str, path: str, body: bytes, arrived: float, w: asyncio.StreamWriter) -> bool:
        f = self.faults
        if method == "GET" and path.endswith("/models"):
            return await _send(w, 200, json.dumps({"object": "list", "data": [{"id": self.model, "object": "model"}]}))
        if method == "GET" and path == "/metrics":
            if f.foreign_metrics:
                return await _send(w, 200, "# HELP node_load1 1m load average.\n# TYPE node_load1 gauge\n"
                                           "node_load1 0.5\n")
            if not f.metrics:
                return await _send(w, 404, '{"detail":"Not Found"}')
            return await _send(w, 200, metrics_text(self._running, self._chunks, self._tokens))
        if path.endswith("_expert_distribution_record") and f.expert_distribution_dir is not None:
            return await _send(w, 200, self._expert_distribution(path.rsplit("/", 1)[-1]))
        if method != "POST" or not path.endswith("completions"):
            return await _send(w, 404, '{"detail":"Not Found"}')
        req = json.loads(body)
        if self.log.keep_bodies:
            self.log.bodies.append(req)
        unknown = (set(req) - KNOWN_FIELDS) | set(req.get("stream_options") or {}) - {"include_usage"}
        if (f.reject_unknown and unknown) or unknown & set(f.reject_fields):
            return await _send(w, 422, json.dumps({"detail": f"Unexpected fields in the request: {sorted(unknown)}"}))
        self._n += 1
        if self._n <= f.http_500_first:
            return await _send(w, 503, '{"error": {"message": "injected: not ready"}}')
        if f.http_500_every and self._n % f.http_500_every == 0:
            return await _send(w, 500, '{"error": {"message": "injected failure"}}')
        if f.silent_after is not None and self._n > f.silent_after:
            await asyncio.sleep(SILENT_S)  # bounded, so the stub's shutdown never waits on it for long
            return False
        self._running += 1
        try:
            await self._stream(req, arrived, w, path.endswith("chat/completions"))
        finally:
            self._running -= 1
        return True

    def _expert_distribution(self, action: str) -> str:
        """SGLang's answers are plain sentences; the record goes to a file, as SGLang's `stat` mode writes it:
        {"rank": 0, "logical_count": int tensor [passes, layers, experts]}."""
        if action == "start_expert_distribution_record":
            self._recording, self._steps = True, []
            return "Start recording the expert distribution.\n"
        if action == "stop_expert_distribution_record":
            self._recording = False
            return "Stop recording the expert distribution.\n"
        import torch

        assert self.faults.expert_distribution_dir is not None
        counts = torch.tensor(self._steps or [[[0] * STUB_EXPERTS] * STUB_LAYERS], dtype=torch.int64)
        torch.save({"rank": 0, "logical_count": counts},
                   f"{self.faults.expert_distribution_dir}/expert_distribution_recorder_{time.time()}.pt")
        return "Dump expert distribution record.\n"

    def _route_tokens(self, m: int) -> None:
        step = [[0] * STUB_EXPERTS for _ in range(STUB_LAYERS)]
        for _ in range(m):
            step[0][self._routed % STUB_EXPERTS] += 1
            step[1][0] += 1
            self._routed += 1
        self._steps.append(step)

    async def _stream(self, req: dict, arrived: float, w: asyncio.StreamWriter, chat: bool) -> None:
        f = self.faults
        me = self._n  # this request's number, before any await lets another one in
        nth = lambda every: bool(every) and me % every == 0  # noqa: E731
        n = int(req.get("max_tokens") or req.get("max_completion_tokens") or 16)
        if f.eos_after is not None:
            n = min(n, f.eos_after)
        opts = req.get("stream_options") or {}
        usage_final = f.usage != "none" and opts.get("include_usage")
        continuous = f.usage == "continuous" and opts.get("continuous_usage_stats")
        w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        writes: list[float] = []
        self.log.requests.append((arrived, writes))
        head = '{"id":"x","object":"chat.completion.chunk","model":"%s","choices":' % self.model
        if f.first_token_delay_s:
            await asyncio.sleep(f.first_token_delay_s)
        if nth(f.odd_chunk_every):
            _event(w, head + "[null]}")
        abort = 3 if nth(f.abort_every) else None
        sent, k = 0, 0
        while sent < n:
            if abort is not None and k == abort:
                _event(w, head + '[{"index":0,"delta":{},"finish_reason":"abort"}]}')
                break
            if f.drop_after_chunks is not None and k == f.drop_after_chunks:
                w.transport.abort()
                return
            if f.error_after_chunks is not None and k == f.error_after_chunks:
                _event(w, '{"error": {"message": "injected error mid-stream", "code": 500}}')
                break
            if f.empty_events:
                _event(w, "")
            m = min(f.tokens_per_chunk, n - sent)
            sent += m
            text = json.dumps(" tok" * m)
            choice = '{"index":0,"delta":{"content":%s}}' % text if chat else '{"index":0,"text":%s}' % text
            usage = (',"usage":{"prompt_tokens":%d,"completion_tokens":%d}' % (f.prompt_tokens, sent)
                     if continuous else "")
            _event(w, head + "[" + choice + "]" + usage + "}")
            writes.append(time.perf_counter())
            k += 1
            self._chunks += 1
            self._tokens += m
            if self._recording:
                self._route_tokens(m)
            await w.drain()
            if f.token_delay_s and sent < n:
                await asyncio.sleep(f.token_delay_s * m)
        else:
            _event(w, head + '[{"index":0,"delta":{},"finish_reason":"length"}]}')
        if sent == n or abort is not None:  # not after an error object mid-stream
            if usage_final:
                _event(w, head + '[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}'
                       % (f.prompt_tokens, sent, f.prompt_tokens + sent))
            if f.done_marker and not nth(f.no_done_every):
                _event(w, "[DONE]")
        w.write(b"0\r\n\r\n")
        await w.drain()


def _event(w: asyncio.StreamWriter, data: str) -> None:
    payload = f"data: {data}\n\n".encode()
    w.write(b"%x\r\n%s\r\n" % (len(payload), payload))


async def _send(w: asyncio.StreamWriter, status: int, body: str) -> bool:
    raw = body.encode()
    reason = {200: "OK", 404: "Not Found", 422: "Unprocessable Entity", 500: "Internal Server Error",
              503: "Service Unavailable"}[status]
    w.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (status, reason.encode(), len(raw), raw))
    await w.drain()
    return True


@contextlib.contextmanager
def serve_in_thread(faults: Optional[Faults] = None, model: str = "stub-model") -> Iterator[StubServer]:
    """A running stub on its own event loop in a daemon thread; stopped on exit."""
    server = StubServer(faults, model)
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=main, daemon=True, name="moebench-stub")
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("stub server did not start in 10 s")
    try:
        yield server
    finally:
        async def close() -> None:
            if server._server is not None:
                server._server.close()
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    t.cancel()

        asyncio.run_coroutine_threadsafe(close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def main(argv: Optional[list[str]] = None) -> None:
    """`python -m moebench.endpoint.stub`: serve until Ctrl-C, to try an endpoint workload without a GPU."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m moebench.endpoint.stub", description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (0: any free one)")
    ap.add_argument("--ttft-ms", type=float, default=30.0, help="time to the first token")
    ap.add_argument("--tpot-ms", type=float, default=4.0, help="time per further token")
    ap.add_argument("--tokens-per-chunk", type=int, default=1)
    ap.add_argument("--usage", choices=("none", "final", "continuous"), default="continuous")
    ap.add_argument("--metrics", action="store_true", help="serve vLLM-named Prometheus /metrics")
    a = ap.parse_args(argv)
    faults = Faults(tokens_per_chunk=a.tokens_per_chunk, usage=a.usage, first_token_delay_s=a.ttft_ms / 1e3,
                    token_delay_s=a.tpot_ms / 1e3, metrics=a.metrics)
    server = StubServer(faults)
    server.port = a.port

    async def serve() -> None:
        import signal

        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):  # also where SIGINT came ignored (a background job)
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await server.start()
        print(f"stub serving {server.base_url} (Ctrl-C or SIGTERM stops it)", flush=True)
        await stop.wait()

    try:
        asyncio.run(serve())
    except OSError as exc:  # the port is taken
        raise SystemExit(f"error: cannot serve on 127.0.0.1:{a.port}: {exc.strerror or exc}") from None


if __name__ == "__main__":
    main()
