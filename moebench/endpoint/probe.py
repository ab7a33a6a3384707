"""Ask the server once what it supports instead of assuming: the served model (GET /models), usage in the stream
(`stream_options.include_usage`), continuous usage (`continuous_usage_stats`, vLLM), `ignore_eos` (vLLM, SGLang;
transformers serve answers 422 to unknown fields), and a Prometheus `/metrics`."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Optional

from moebench.endpoint.client import RequestOptions, send
from moebench.endpoint.dataset import Prompt
from moebench.endpoint.workload import EndpointSpec
from moebench.errors import BadInput, EnvironmentProblem

if TYPE_CHECKING:
    import httpx

_PROBE = Prompt("Count from one to ten.", 4, None)
_PROBE_TIMEOUT_S = 60.0


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


async def probe(client: "httpx.AsyncClient", spec: EndpointSpec) -> Capabilities:
    """Raises EnvironmentProblem (exit 4) when the server cannot be reached or serves nothing usable."""
    import httpx

    hdrs = headers(spec)
    try:
        resp = await client.get(f"{spec.base_url}/models", headers=hdrs, timeout=_PROBE_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise EnvironmentProblem(f"endpoint {spec.base_url} unreachable ({type(exc).__name__}: {exc})") from None
    model = spec.model
    if model == "auto":
        model = _first_model(resp, spec.base_url)
    opts = RequestOptions(url=request_url(spec), model=model, api=spec.api, stream_usage=True,
                          continuous_usage=True, ignore_eos=spec.ignore_eos, headers=hdrs, timeout_s=_PROBE_TIMEOUT_S)
    # drop one optional field at a time, most exotic first, until the server accepts the request
    fallbacks = [{}, {"continuous_usage": False}, {"ignore_eos": False}, {"stream_usage": False}]
    rec = None
    for change in fallbacks:
        opts = replace(opts, **change)
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


def _first_model(resp: "httpx.Response", base_url: str) -> str:
    if resp.status_code >= 400:
        raise EnvironmentProblem(f"endpoint {base_url}/models answered HTTP {resp.status_code}; "
                                 "set endpoint.model to the served model's name")
    try:
        data = resp.json().get("data") or []
        return str(data[0]["id"])
    except (ValueError, AttributeError, LookupError, TypeError):
        raise BadInput(f"endpoint {base_url}/models lists no model; set endpoint.model") from None


async def _metrics(client: "httpx.AsyncClient", url: str, hdrs: dict[str, str]) -> Optional[str]:
    import httpx

    try:
        resp = await client.get(url, headers=hdrs, timeout=10.0)
    except httpx.HTTPError:
        return None
    return url if resp.status_code == 200 and "# TYPE" in resp.text else None
