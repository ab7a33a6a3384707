"""Ask the server once what it supports instead of assuming: the served model (GET /models), usage in the stream
(`stream_options.include_usage`), continuous usage (`continuous_usage_stats`, vLLM), `ignore_eos` (vLLM, SGLang;
transformers serve answers 422 to unknown fields), and a Prometheus `/metrics`."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Optional

from moebench.endpoint.client import RequestOptions, send
from moebench.endpoint.dataset import Prompt
from moebench.endpoint.workload import EndpointSpec
from moebench.errors import BadInput, EnvironmentProblem

if TYPE_CHECKING:
    import aiohttp

_PROBE = Prompt("Count from one to ten.", 4, None)
_PROBE_TIMEOUT_S = 60.0
# A 5xx at the probe is often a server still loading or briefly overloaded: retried, bounded in count and time.
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)
RETRY_BUDGET_S = 30.0


@dataclass(frozen=True)
class Capabilities:
    model: str
    stream_usage: bool
    continuous_usage: bool
    ignore_eos: bool
    done_marker: bool
    multi_token_chunks: Optional[bool]  # None: no continuous usage to tell
    metrics_url: Optional[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def headers(spec: EndpointSpec) -> dict[str, str]:
    if spec.api_key_env is None:
        return {}
    key = os.environ.get(spec.api_key_env)
    if not key:
        raise EnvironmentProblem(f"endpoint.api_key_env: ${spec.api_key_env} is not set")
    return {"Authorization": f"Bearer {key}"}


def request_url(spec: EndpointSpec) -> str:
    return f"{spec.base_url}/{'chat/completions' if spec.api == 'chat' else 'completions'}"


def metrics_url(spec: EndpointSpec) -> str:
    """Prometheus metrics live at the server root, beside (not under) /v1."""
    root = spec.base_url[:-3] if spec.base_url.endswith("/v1") else spec.base_url
    return f"{root}/metrics"


async def probe(client: "aiohttp.ClientSession", spec: EndpointSpec) -> Capabilities:
    """Raises EnvironmentProblem (exit 4) when the server cannot be reached or serves nothing usable. An HTTP 5xx
    is retried after RETRY_DELAYS_S, within RETRY_BUDGET_S in all."""
    hdrs = headers(spec)
    deadline = time.monotonic() + RETRY_BUDGET_S
    status, body = await _get(client, f"{spec.base_url}/models", hdrs)
    for delay in RETRY_DELAYS_S:
        if status is None or status < 500 or time.monotonic() + delay > deadline:
            break
        await asyncio.sleep(delay)
        status, body = await _get(client, f"{spec.base_url}/models", hdrs)
    if status is None:
        raise EnvironmentProblem(f"endpoint {spec.base_url} unreachable ({body})")
    model = spec.model
    if model == "auto":
        model = _first_model(status, body, spec.base_url)
    opts = RequestOptions(url=request_url(spec), model=model, api=spec.api, stream_usage=True,
                          continuous_usage=True, ignore_eos=spec.ignore_eos, headers=hdrs, timeout_s=_PROBE_TIMEOUT_S)
    # without what the server refuses, keeping as much as it takes: ignore_eos alone first (the field servers
    # without vLLM's extensions refuse most), so a server taking continuous usage but not ignore_eos keeps
    # per-token ITL
    fallbacks = [{}, {"ignore_eos": False}, {"continuous_usage": False},
                 {"continuous_usage": False, "ignore_eos": False},
                 {"continuous_usage": False, "ignore_eos": False, "stream_usage": False}]
    base, rec = opts, None
    for change in fallbacks:
        opts = replace(base, **change)
        rec = await send(client, opts, _PROBE)
        for delay in RETRY_DELAYS_S:
            if rec.ok or (rec.status or 0) < 500 or time.monotonic() + delay > deadline:
                break
            await asyncio.sleep(delay)
            rec = await send(client, opts, _PROBE)
        if rec.ok or rec.status not in (400, 422):
            break
    assert rec is not None
    if not rec.ok:
        raise EnvironmentProblem(f"endpoint {opts.url}: the probe request failed ({rec.error})")
    continuous = rec.output_source == "continuous_usage"
    return Capabilities(
        model=model,
        stream_usage=opts.stream_usage and rec.output_source in ("final_usage", "continuous_usage"),
        continuous_usage=continuous,
        ignore_eos=opts.ignore_eos,
        done_marker=rec.done_marker,
        multi_token_chunks=any(d > 1 for d in rec.chunk_tokens) if continuous and rec.chunk_tokens else None,
        metrics_url=await _metrics(client, metrics_url(spec), hdrs),
    )


async def _get(client: "aiohttp.ClientSession", url: str, hdrs: dict[str, str]) -> tuple[Optional[int], str]:
    """(status, body), or (None, why) when nothing answered."""
    import aiohttp

    try:
        async with asyncio.timeout(_PROBE_TIMEOUT_S):
            async with client.get(url, headers=hdrs) as resp:
                return resp.status, (await resp.read()).decode("utf-8", "replace")
    except TimeoutError:
        return None, f"no answer in {_PROBE_TIMEOUT_S:g} s"
    except (aiohttp.ClientError, OSError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _first_model(status: int, body: str, base_url: str) -> str:
    if status in (401, 403):
        raise EnvironmentProblem(f"endpoint {base_url}/models answered HTTP {status}: the server wants a key "
                                 "(endpoint.api_key_env names the environment variable holding it)")
    if status == 404 and not base_url.rstrip("/").endswith("/v1"):
        raise EnvironmentProblem(f"endpoint {base_url}/models answered HTTP 404: OpenAI-compatible servers serve "
                                 f"under /v1 ({base_url.rstrip('/')}/v1?)")
    if status >= 400:
        raise EnvironmentProblem(f"endpoint {base_url}/models answered HTTP {status}; "
                                 "set endpoint.model to the served model's name")
    try:
        return str(json.loads(body)["data"][0]["id"])
    except (ValueError, LookupError, TypeError):
        raise BadInput(f"endpoint {base_url}/models lists no model; set endpoint.model") from None


async def _metrics(client: "aiohttp.ClientSession", url: str, hdrs: dict[str, str]) -> Optional[str]:
    """The /metrics URL where it serves a metric moebench reads (vLLM's or SGLang's names); None otherwise, so a
    page of another exporter's metrics is not reported as the server's view."""
    from moebench.endpoint.telemetry import parse

    status, body = await _get(client, url, hdrs)
    if status != 200 or "# TYPE" not in body:
        return None
    try:
        return url if parse(body) else None
    except ValueError:  # not the Prometheus text format after all
        return None
