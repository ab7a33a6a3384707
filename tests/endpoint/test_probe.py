import re

import pytest

from moebench.endpoint.client import open_session
from moebench.endpoint.probe import _first_model, metrics_url, probe
from moebench.endpoint.workload import EndpointSpec
from moebench.errors import EnvironmentProblem

from .conftest import run


def caps_of(base_url: str, **spec):
    async def go():
        async with open_session(None) as c:
            return await probe(c, EndpointSpec(base_url=base_url, **spec))

    return run(go())


def test_a_vllm_like_server_gets_every_option(stub):
    server = stub(usage="continuous", tokens_per_chunk=2, metrics=True)
    caps = caps_of(server.base_url)
    assert caps.model == "stub-model"  # model: auto
    assert caps.stream_usage and caps.continuous_usage and caps.ignore_eos and caps.done_marker
    assert caps.multi_token_chunks is True
    assert caps.metrics_url == f"http://127.0.0.1:{server.port}/metrics"


def test_another_exporters_metrics_are_not_the_servers_view(stub):
    """A /metrics page with none of vLLM's or SGLang's names was reported as "/metrics yes", and every level's
    server stats were then only a scrape count."""
    assert caps_of(stub(foreign_metrics=True).base_url).metrics_url is None


def test_a_server_rejecting_unknown_fields_is_asked_without_them(stub):
    """transformers serve: 422 for ignore_eos and continuous_usage_stats; usage only in a final chunk."""
    server = stub(reject_unknown=True, usage="final")
    caps = caps_of(server.base_url, model="given")
    assert caps.model == "given"
    assert caps.stream_usage and not caps.continuous_usage and not caps.ignore_eos
    assert caps.metrics_url is None and caps.multi_token_chunks is None
    last = server.log.bodies[-1]
    assert "ignore_eos" not in last and last["stream_options"] == {"include_usage": True}


def test_a_server_refusing_only_ignore_eos_keeps_continuous_usage(stub):
    """Dropping continuous usage before ignore_eos would lose per-token ITL on such a server."""
    server = stub(reject_fields=("ignore_eos",), usage="continuous")
    caps = caps_of(server.base_url)
    assert caps.continuous_usage and not caps.ignore_eos
    assert server.log.bodies[-1]["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}


def test_unreachable_server_is_an_environment_problem():
    with pytest.raises(EnvironmentProblem, match="unreachable"):
        caps_of("http://127.0.0.1:9/v1")


def test_metrics_live_at_the_root():
    assert metrics_url(EndpointSpec(base_url="http://h:8000/v1")) == "http://h:8000/metrics"


def test_transient_5xx_at_the_probe_is_retried_within_bounds(stub, monkeypatch):
    from moebench.endpoint import probe as probe_mod

    monkeypatch.setattr(probe_mod, "RETRY_DELAYS_S", (0.01, 0.01, 0.01))
    server = stub(http_500_first=2)
    assert caps_of(server.base_url).model == "stub-model"
    assert len(server.log.bodies) == 3  # two 503s, then the answer
    dead = stub(http_500_first=100)
    with pytest.raises(EnvironmentProblem, match="HTTP 503"):
        caps_of(dead.base_url)
    assert len(dead.log.bodies) == 4  # the first try and three retries: bounded


@pytest.mark.parametrize("status, base, said", [
    (401, "http://h:1/v1", "the server wants a key (endpoint.api_key_env"),
    (403, "http://h:1/v1", "the server wants a key"),
    (404, "http://h:1", "OpenAI-compatible servers serve under /v1 (http://h:1/v1?)"),
    (404, "http://h:1/v1", "set endpoint.model"),
])
def test_a_refused_model_list_says_what_to_fix(status, base, said):
    """A missing key or a base URL without /v1 was told to set endpoint.model, which fixes neither."""
    with pytest.raises(EnvironmentProblem, match=re.escape(said)):
        _first_model(status, "", base)
