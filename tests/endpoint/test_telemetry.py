import asyncio

from moebench.endpoint.client import open_session
from moebench.endpoint.telemetry import MIN_INTERVAL_S, next_wait_s, parse, sample, summarize, wanted_lines

from .conftest import run

VLLM = """# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0"} 3.0
vllm:num_requests_running{engine="1"} 5.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0"} 0.2
vllm:kv_cache_usage_perc{engine="1"} 0.4
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0"} %d
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0"} %d
"""
SGLANG = """# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="m"} 7.0
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="m"} 0.28
# TYPE sglang:cache_hit_rate gauge
sglang:cache_hit_rate{model_name="m"} 0.5
"""


def test_vllm_names_sum_counts_and_average_fractions():
    s = parse(VLLM % (10, 100))
    assert s["running_requests"] == 8 and abs(s["kv_cache_usage"] - 0.3) < 1e-9
    out = summarize([s, parse(VLLM % (40, 200))])
    assert out["prefix_cache_hit_rate_window"] == 0.3  # (40 − 10) / (200 − 100)
    assert out["running_requests"]["median"] == 8 and "waiting_requests" not in out


def test_sglang_names_map_to_the_same_keys():
    s = parse(SGLANG)
    assert s == {"waiting_requests": 7.0, "kv_cache_usage": 0.28, "prefix_cache_hit_rate": 0.5}
    assert summarize([]) is None


def test_the_scrape_gap_is_a_tenth_of_the_time_so_far_up_to_the_interval():
    assert next_wait_s(0.0, 1.0) == MIN_INTERVAL_S  # the first scrapes come fast: the level may be short
    assert next_wait_s(2.0, 1.0) == 0.2
    assert next_wait_s(60.0, 1.0) == 1.0
    assert next_wait_s(60.0, 0.3) == 0.3


def test_a_level_shorter_than_the_interval_is_scraped_while_it_runs(stub):
    server = stub(metrics=True)

    async def go():
        done = asyncio.Event()
        async with open_session(1) as s:
            task = asyncio.ensure_future(sample(s, f"http://127.0.0.1:{server.port}/metrics", {}, done, 1.0))
            await asyncio.sleep(0.4)  # a 0.4 s level: the 1 s interval alone would give 2 scrapes
            done.set()
            return await task

    assert len(run(go())) >= 4  # ~8 expected (every 50 ms, then the end); 4 leaves room for a loaded machine


def vllm_page(engines: int = 8) -> str:
    """A vLLM-shaped page: the gauges and counters we map among histograms with many buckets, per engine."""
    lines = []
    for family, kind in (("vllm:num_requests_running", "gauge"), ("vllm:kv_cache_usage_perc", "gauge"),
                         ("vllm:num_preemptions", "counter"), ("vllm:e2e_request_latency_seconds", "histogram"),
                         ("vllm:iteration_tokens_total", "histogram")):
        lines += [f"# HELP {family} x", f"# TYPE {family} {kind}"]
        for e in range(engines):
            lab = f'engine="{e}",model_name="m"'
            if kind == "gauge":
                lines.append(f"{family}{{{lab}}} {e / 10}")
            elif kind == "counter":
                lines += [f"{family}_total{{{lab}}} {e}.0", f"{family}_created{{{lab}}} 1.7e9"]
            else:
                lines += [f'{family}_bucket{{{lab},le="{b}"}} {i}.0' for i, b in enumerate((1, 2, 4, 8, 16, "+Inf"))]
                lines += [f"{family}_sum{{{lab}}} {100 + e}.0", f"{family}_count{{{lab}}} {10 + e}.0"]
    return "\n".join(lines) + "\n"


def test_parsing_only_the_wanted_lines_gives_what_the_whole_page_gives():
    from prometheus_client.parser import text_string_to_metric_families

    page = vllm_page()
    whole: dict[str, list[float]] = {}
    for fam in text_string_to_metric_families(page):
        for smp in fam.samples:
            whole.setdefault(smp.name, []).append(smp.value)
    got = parse(page)
    assert got["running_requests"] == sum(whole["vllm:num_requests_running"])
    assert got["preemptions"] == sum(whole["vllm:num_preemptions_total"])
    assert got["iteration_tokens_sum"] == sum(whole["vllm:iteration_tokens_total_sum"])
    assert got["iteration_tokens_count"] == sum(whole["vllm:iteration_tokens_total_count"])
    assert abs(got["kv_cache_usage"] - 0.35) < 1e-9
    assert len(wanted_lines(page).splitlines()) == 5 * 8  # of ~250 lines


def test_scrapes_are_parsed_off_the_event_loop(stub, monkeypatch):
    import threading

    from moebench.endpoint import telemetry

    server = stub(metrics=True)
    threads = []
    real = telemetry.parse
    monkeypatch.setattr(telemetry, "parse", lambda text: threads.append(threading.get_ident()) or real(text))

    async def go():
        done = asyncio.Event()
        done.set()  # one scrape, then the end
        async with open_session(1) as s:
            return await sample(s, f"http://127.0.0.1:{server.port}/metrics", {}, done, 1.0), threading.get_ident()

    scrapes, loop_thread = run(go())
    assert scrapes and threads and loop_thread not in threads
