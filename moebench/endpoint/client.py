"""One streamed request, timed and accounted: the OpenAI chat/completions SSE stream parsed the way servers really
send it (several tokens per chunk, a usage chunk with `choices: []`, `data: [DONE]` or not, an error object
mid-stream, HTTP 4xx/5xx, timeouts).

HTTP is aiohttp's (its C parser keeps a 2-core client at several times httpx's request rate against the same
stub: benchmarks/endpoint_client_overhead.py). Times are `time.perf_counter()` seconds taken when the bytes holding a chunk are read; a network read holding
several events gives them the same time, which is what the client saw. Token counts come from continuous usage (every chunk
carries the running `completion_tokens`), else the final usage chunk, else the local tokenizer; each request says
which (MEASURE.md "Serving endpoints").
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Optional

from moebench.endpoint.dataset import Prompt

if TYPE_CHECKING:
    import aiohttp

    from moebench.endpoint.tokens import Tokenizer

TokenSource = Literal["continuous_usage", "final_usage", "tokenizer", "dataset", "none"]
_ERROR_BODY_CHARS = 300
# finish reasons of a request the server gave up on (vLLM and SGLang "abort", TensorRT-LLM "error"): its tokens are
# not an answer, and counting it ok would shorten TPOT and inflate the request rate
_FAILED_FINISH = ("abort", "error", "cancelled")


@dataclass
class RequestRecord:
    """What one request did. Times in perf_counter seconds; `queued_s` waited for a client slot before `start`."""

    start: float
    queued_s: float = 0.0
    first_token: Optional[float] = None
    end: Optional[float] = None
    chunk_times: list[float] = field(default_factory=list)  # content chunks only
    chunk_tokens: Optional[list[int]] = None  # Δtokens per content chunk, where continuous usage gave them
    prompt_tokens: Optional[int] = None
    output_tokens: Optional[int] = None
    prompt_source: TokenSource = "none"
    output_source: TokenSource = "none"
    error: Optional[str] = None
    status: Optional[int] = None
    done_marker: bool = False
    finish_reason: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class RequestOptions:
    """The request body the probe found the server accepts."""

    url: str
    model: str
    api: Literal["chat", "completions"]
    stream_usage: bool = True  # stream_options.include_usage
    continuous_usage: bool = False  # stream_options.continuous_usage_stats (vLLM)
    ignore_eos: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 600.0
    expect_done: bool = False  # the probe saw `data: [DONE]`: a stream that ends without it was cut short


def payload(opts: RequestOptions, prompt: Prompt) -> dict[str, Any]:
    body: dict[str, Any] = {"model": opts.model, "max_tokens": prompt.max_tokens, "stream": True}
    if opts.api == "chat":
        body["messages"] = [{"role": "user", "content": prompt.text}]
    else:
        body["prompt"] = prompt.text
    if opts.stream_usage:
        body["stream_options"] = {"include_usage": True}
        if opts.continuous_usage:
            body["stream_options"]["continuous_usage_stats"] = True
    if opts.ignore_eos:
        body["ignore_eos"] = True
    return body


def open_session(max_connections: Optional[int], connect_timeout_s: float = 10.0) -> "aiohttp.ClientSession":
    """One session per run: keep-alive connections, at most `max_connections` (None: unbounded) open at once.
    Proxies from the environment are ignored: the endpoint is measured, not the path through a proxy."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=max_connections or 0, limit_per_host=0, force_close=False)
    return aiohttp.ClientSession(connector=connector, trust_env=False,
                                 timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s))


async def send(session: "aiohttp.ClientSession", opts: RequestOptions, prompt: Prompt,
               tokenizer: Optional["Tokenizer"] = None, queued_s: float = 0.0) -> RequestRecord:
    """Send one streamed request and account for it; never raises for what the server or network does."""
    import aiohttp

    rec = RequestRecord(start=time.perf_counter(), queued_s=queued_s)
    pieces: list[str] = []
    try:
        async with asyncio.timeout(opts.timeout_s):
            async with session.post(opts.url, json=payload(opts, prompt), headers=opts.headers) as resp:
                rec.status = resp.status
                if resp.status >= 400:
                    body = (await resp.read()).decode("utf-8", "replace")
                    rec.error = f"HTTP {resp.status}: {' '.join(body.split())[:_ERROR_BODY_CHARS]}"
                else:
                    await _read_stream(resp, rec, pieces, opts.api)
    except TimeoutError:
        rec.error = f"timeout after {opts.timeout_s:g} s"
    except (aiohttp.ClientError, OSError) as exc:
        rec.error = f"{'stream broken' if rec.chunk_times else 'connection'}: {type(exc).__name__}: {exc}"[:_ERROR_BODY_CHARS]
    except Exception as exc:  # a response no parser branch foresaw: this request failed, the level goes on
        rec.error = f"unreadable response: {type(exc).__name__}: {exc}"[:_ERROR_BODY_CHARS]
    rec.end = time.perf_counter()
    if rec.error is None and not rec.chunk_times:
        rec.error = "no content in the stream"
    if rec.error is None and rec.finish_reason in _FAILED_FINISH:
        rec.error = f"finish_reason {rec.finish_reason!r}: the server ended the request early"
    if rec.error is None and opts.expect_done and not rec.done_marker:
        rec.error = "stream ended without data: [DONE] (the probe's had it): cut short"
    _count_tokens(rec, "".join(pieces), prompt, tokenizer)
    return rec


async def _read_stream(resp: "aiohttp.ClientResponse", rec: RequestRecord, pieces: list[str], api: str) -> None:
    """Read to the end of the body even after `[DONE]`: leaving it unread would close the keep-alive connection.
    SSE events are split here from the raw bytes as they arrive."""
    clock = time.perf_counter
    loads = json.loads
    times, deltas = rec.chunk_times, []
    last_completion = 0
    continuous = True
    buf = b""
    async for raw in resp.content.iter_any():
        now = clock()
        buf += raw
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if not line.startswith(b"data:"):
                continue  # blank separators, comments (": ping"), event:/id: fields
            data = line[5:].strip().decode("utf-8", "replace")  # json.loads of str skips its encoding sniffing
            if data == "[DONE]":
                rec.done_marker = True
                continue
            if not data:  # `data:` with nothing after it is legal SSE (an empty event), not a malformed one
                continue
            try:
                obj = loads(data)
            except ValueError:
                rec.error = f"malformed SSE data: {data[:80]!r}"
                return
            if not isinstance(obj, dict):
                continue
            if obj.get("error"):
                err = obj["error"]
                msg = err.get("message", err) if isinstance(err, dict) else err
                rec.error = f"error mid-stream: {msg}"[:_ERROR_BODY_CHARS]
                return
            usage = obj.get("usage")
            choices = obj.get("choices")
            text = None
            if choices:
                c0 = choices[0] if isinstance(choices, list) else None
                delta = c0.get("delta") if isinstance(c0, dict) else None
                if not isinstance(c0, dict) or (api == "chat" and delta is not None and not isinstance(delta, dict)):
                    rec.error = f"malformed chunk: {data[:80]!r}"
                    return
                if api == "chat":
                    delta = delta or {}
                    text = delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning")
                else:
                    text = c0.get("text")
                if text is not None and not isinstance(text, str):  # content parts, numbers: not a text delta
                    rec.error = f"malformed chunk (content is not text): {data[:80]!r}"
                    return
                if c0.get("finish_reason"):
                    rec.finish_reason = str(c0["finish_reason"])
            if text:
                if rec.first_token is None:
                    rec.first_token = now
                times.append(now)
                pieces.append(text)
                ct = usage.get("completion_tokens") if isinstance(usage, dict) else None
                if isinstance(ct, int) and continuous:
                    deltas.append(ct - last_completion)
                    last_completion = ct
                else:
                    continuous = False
            if isinstance(usage, dict):
                if isinstance(usage.get("prompt_tokens"), int):
                    rec.prompt_tokens, rec.prompt_source = usage["prompt_tokens"], "final_usage"
                if isinstance(usage.get("completion_tokens"), int):
                    rec.output_tokens, rec.output_source = usage["completion_tokens"], "final_usage"
    if continuous and deltas and rec.output_tokens == last_completion:
        rec.chunk_tokens, rec.output_source = deltas, "continuous_usage"


def _count_tokens(rec: RequestRecord, text: str, prompt: Prompt, tokenizer: Optional["Tokenizer"]) -> None:
    # A usage of 0 beside streamed text is not a count. Fewer tokens than content chunks (3 for 16) is impossible
    # from an engine, each of whose chunks carries a token, but a proxy that re-chunks the text makes it honestly:
    # the local tokenizer, where there is one, decides; more tokens than chunks is legal (several per chunk).
    undercount = rec.output_tokens is not None and rec.output_tokens < len(rec.chunk_times)
    if text and (rec.output_tokens == 0 or (undercount and tokenizer is not None)):
        rec.output_tokens, rec.output_source, rec.chunk_tokens = None, "none", None
    if rec.output_tokens is None and tokenizer is not None and text:
        rec.output_tokens, rec.output_source = tokenizer.count(text), "tokenizer"
    if rec.prompt_tokens is None:
        if tokenizer is not None:
            rec.prompt_tokens, rec.prompt_source = tokenizer.count(prompt.text), "tokenizer"
        elif prompt.prompt_tokens is not None:
            rec.prompt_tokens, rec.prompt_source = prompt.prompt_tokens, "dataset"
