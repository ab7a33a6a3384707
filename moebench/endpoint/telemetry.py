"""The server's own view during each level: its Prometheus `/metrics` sampled every second or so (parsed with
prometheus-client's text parser), beside the client's numbers. vLLM and SGLang names are mapped to one set of
ours; what a server does not export is absent, never zero. Sums over label sets (engines, ranks), except
fractions, which are averaged."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Optional

from moebench.results import stat

if TYPE_CHECKING:
    import aiohttp

INTERVAL_S = 1.0
MIN_INTERVAL_S = 0.05  # a scrape costs the server little, but not nothing
_GET_TIMEOUT_S = 5.0

# ours: (server sample names, is a fraction)
GAUGES: dict[str, tuple[tuple[str, ...], bool]] = {
    "running_requests": (("vllm:num_requests_running", "sglang:num_running_reqs"), False),
    "waiting_requests": (("vllm:num_requests_waiting", "sglang:num_queue_reqs"), False),
    "kv_cache_usage": (("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage"), True),
    "prefix_cache_hit_rate": (("sglang:cache_hit_rate",), True),
    "generation_tokens_per_s": (("sglang:gen_throughput",), False),
}
# counters: their increase over the level
COUNTERS: dict[str, tuple[str, ...]] = {
    "preemptions": ("vllm:num_preemptions_total", "sglang:num_retracted_reqs_total"),
    "prefix_cache_hits": ("vllm:prefix_cache_hits_total",),
    "prefix_cache_queries": ("vllm:prefix_cache_queries_total",),
    "iteration_tokens_sum": ("vllm:iteration_tokens_total_sum",),
    "iteration_tokens_count": ("vllm:iteration_tokens_total_count",),
}


_WANTED = frozenset(n for names, _ in GAUGES.values() for n in names) | frozenset(
    n for names in COUNTERS.values() for n in names)


def wanted_lines(text: str) -> str:
    """The sample lines of the names parse() maps, alone: a vLLM page has ~1,000 lines (histogram buckets, one
    set per engine), a few dozen of which are used. Without their # TYPE lines each sample parses as untyped under
    its own name, the name parse() looks up."""
    keep = []
    for line in text.splitlines():
        if line and line[0] != "#":
            end = len(line)
            for stop in ("{", " "):
                i = line.find(stop)
                if 0 <= i < end:
                    end = i
            if line[:end] in _WANTED:
                keep.append(line)
    return "\n".join(keep) + "\n"


def parse(text: str) -> dict[str, float]:
    """Our names -> values, from one scrape."""
    from prometheus_client.parser import text_string_to_metric_families

    by_name: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(wanted_lines(text)):
        for s in family.samples:
            by_name.setdefault(s.name, []).append(float(s.value))
    out: dict[str, float] = {}
    for ours, (names, fraction) in GAUGES.items():
        vals = next((by_name[n] for n in names if n in by_name), None)
        if vals:
            out[ours] = sum(vals) / len(vals) if fraction else sum(vals)
    for ours, names in COUNTERS.items():
        vals = next((by_name[n] for n in names if n in by_name), None)
        if vals:
            out[ours] = sum(vals)
    return out


def next_wait_s(elapsed_s: float, interval_s: float) -> float:
    """The pause before the next scrape: a tenth of the time scraped so far, at most `interval_s`. The level's
    length is not known in advance, so the gap grows with it: whenever it ends, it was scraped at least every
    min(interval_s, its length / 10) (and no more often than every MIN_INTERVAL_S)."""
    return max(MIN_INTERVAL_S, min(interval_s, elapsed_s / 10))


async def sample(session: "aiohttp.ClientSession", url: str, headers: dict[str, str], done: asyncio.Event,
                 interval_s: float = INTERVAL_S) -> list[dict[str, float]]:
    """Scrape until `done` is set: at the start, every `next_wait_s`, and once more at the end (so counters have
    a difference); a failed scrape is skipped."""
    import aiohttp

    scrapes: list[dict[str, float]] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(_GET_TIMEOUT_S):
                async with session.get(url, headers=headers) as resp:
                    if resp.status == 200:
                        text = await resp.text()
                        # off the event loop: parsing a page takes milliseconds the load's timestamps would wait for
                        scrapes.append(await asyncio.to_thread(parse, text))
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
            pass
        if done.is_set():
            return scrapes
        try:
            gap = next_wait_s(t0 - start, interval_s)
            await asyncio.wait_for(done.wait(), max(0.0, gap - (time.perf_counter() - t0)))
        except TimeoutError:
            pass


def summarize(scrapes: list[dict[str, float]]) -> Optional[dict[str, Any]]:
    """Gauges as statistics over the scrapes; counters as increases, with the rates they imply."""
    if not scrapes:
        return None
    out: dict[str, Any] = {"scrapes": len(scrapes)}
    for name in GAUGES:
        xs = [s[name] for s in scrapes if name in s]
        if xs:
            out[name] = stat(xs, "measured", "fraction" if GAUGES[name][1] else "")
    first, last = scrapes[0], scrapes[-1]
    delta = {n: last[n] - first[n] for n in COUNTERS if n in first and n in last}
    if "preemptions" in delta:
        out["preemptions"] = delta["preemptions"]
    if delta.get("prefix_cache_queries"):
        out["prefix_cache_hit_rate_window"] = delta["prefix_cache_hits"] / delta["prefix_cache_queries"]
    if delta.get("iteration_tokens_count"):
        out["tokens_per_iteration"] = delta["iteration_tokens_sum"] / delta["iteration_tokens_count"]
    return out
