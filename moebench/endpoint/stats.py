"""A load level's statistics from its requests (definitions: MEASURE.md "Serving endpoints").

Per-request metrics (TTFT, TPOT, ITL, E2E, queue time, tokens/s per user) pool every request of every repeat;
rate metrics (throughput, goodput, $/M tokens) have one sample per repeat: the run-to-run spread compare and the
gate read. Failed requests are counted and kept out of the latencies; they earn no tokens.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Optional

from moebench import tokenomics as tk
from moebench.energy import estimated_joules
from moebench.endpoint.client import RequestRecord
from moebench.endpoint.cost import DeploymentCost
from moebench.endpoint.load import LevelRun
from moebench.endpoint.workload import Slo
from moebench.results import stat


def ttft_ms(r: RequestRecord) -> float:
    return (r.first_token - r.start) * 1e3  # type: ignore[operator]


def e2e_ms(r: RequestRecord) -> float:
    return (r.end - r.start) * 1e3  # type: ignore[operator]


def tpot_ms(r: RequestRecord) -> Optional[float]:
    """(E2E − TTFT) / (output tokens − 1); None when the count is unknown or there is no second token."""
    if r.output_tokens is None or r.output_tokens < 2:
        return None
    return (e2e_ms(r) - ttft_ms(r)) / (r.output_tokens - 1)


def inter_chunk_ms(r: RequestRecord) -> list[float]:
    t = r.chunk_times
    return [(b - a) * 1e3 for a, b in zip(t, t[1:])]


def itl_per_token_ms(r: RequestRecord) -> list[float]:
    """Each chunk's gap divided over the tokens it carried, once per token; only where Δtokens is known."""
    if r.chunk_tokens is None:
        return []
    out: list[float] = []
    for gap, n in zip(inter_chunk_ms(r), r.chunk_tokens[1:]):
        if n > 0:
            out.extend([gap / n] * n)
    return out


def goodness_known(ok: list[RequestRecord], slo: Slo) -> bool:
    """Under a TPOT SLO, a request whose TPOT nobody could measure is neither good nor bad: goodput is unknown."""
    return slo.tpot_ms is None or all(tpot_ms(r) is not None for r in ok)


def is_good(r: RequestRecord, slo: Slo) -> bool:
    if not r.ok:
        return False
    if slo.ttft_ms is not None and ttft_ms(r) > slo.ttft_ms:
        return False
    if slo.tpot_ms is not None:
        t = tpot_ms(r)
        if (t is None and r.output_tokens is None) or (t is not None and t > slo.tpot_ms):
            return False
    return slo.e2e_ms is None or e2e_ms(r) <= slo.e2e_ms


# Per-token ITL of a long sweep is ~10⁵ samples a level (~35 bytes each in JSON), rewritten after every level.
MAX_STORED_SAMPLES = 1000


def _stat_or_none(xs: list[float], unit: str) -> Optional[dict[str, Any]]:
    """The statistic of every sample; past MAX_STORED_SAMPLES the stored `samples` are that many at evenly spaced
    ranks of the sorted samples (the same distribution, for the gate and the plots), and `samples_stored` says so."""
    if not xs:
        return None
    st = stat(xs, "measured", unit)
    if len(xs) > MAX_STORED_SAMPLES:
        ordered = sorted(st["samples"])
        step = (len(ordered) - 1) / (MAX_STORED_SAMPLES - 1)
        st["samples"] = [ordered[round(i * step)] for i in range(MAX_STORED_SAMPLES)]
        st["samples_stored"] = (f"{MAX_STORED_SAMPLES} of {len(xs)}, at evenly spaced ranks; the statistics use "
                                "all of them")
    return st


def level_metrics(runs: list[LevelRun], slo: Slo, cost: DeploymentCost,
                  energy_j: Optional[list[Optional[float]]] = None) -> dict[str, Any]:
    """The `metrics` of one level's record. `energy_j`: an energy counter's joules per repeat (moebench.endpoint.
    energy); without a reading of every repeat J/token is the catalog estimate, or None."""
    ok = [r for run in runs for r in run.records if r.ok]
    tpots = [t for t in (tpot_ms(r) for r in ok) if t is not None]

    def flat(fn: Callable[[RequestRecord], list[float]]) -> list[float]:
        return [x for r in ok for x in fn(r)]

    m: dict[str, Any] = {
        "ttft_ms": _stat_or_none([ttft_ms(r) for r in ok], "ms"),
        "tpot_ms": _stat_or_none(tpots, "ms"),
        "itl_ms": _stat_or_none(flat(itl_per_token_ms), "ms"),
        "inter_chunk_ms": _stat_or_none(flat(inter_chunk_ms), "ms"),
        "e2e_ms": _stat_or_none([e2e_ms(r) for r in ok], "ms"),
        "queue_ms": _stat_or_none([r.queued_s * 1e3 for r in ok], "ms"),
        "interactivity_tokens_per_s_per_user": _stat_or_none([1000.0 / t for t in tpots if t > 0], "tokens/s/user"),
    }
    m.update(_rate_metrics(runs, slo, cost))
    m.update(_energy(runs, cost, energy_j))
    return m


def _energy(runs: list[LevelRun], cost: DeploymentCost, energy_j: Optional[list[Optional[float]]]) -> dict[str, Any]:
    """J/token per repeat: measured from a counter when `energy_j` has every repeat's joules; else estimated from
    the catalog's all-in kW × GPUs × the repeat's wall time (labelled `estimated`, never measured); else None."""
    if any(r.ok and (r.prompt_tokens is None or r.output_tokens is None) for run in runs for r in run.records):
        return {"joules_per_token": None, "tokens_per_joule": None}  # tokens nobody counted
    toks = [sum((r.prompt_tokens or 0) + (r.output_tokens or 0) for r in run.records if r.ok) for run in runs]
    basis = "measured"
    if not (energy_j and len(energy_j) == len(runs) and all(e is not None for e in energy_j)):
        energy_j = [estimated_joules(cost.allin_kw_per_gpu, cost.n_gpus, run.wall_s) for run in runs]
        basis = "estimated"
    jpt = [tk.joules_per_token(e, n) for e, n in zip(energy_j, toks)]
    if any(j is None for j in jpt):
        return {"joules_per_token": None, "tokens_per_joule": None}
    return {"joules_per_token": stat(jpt, basis, "J/token"),  # type: ignore[arg-type]
            "tokens_per_joule": stat([1.0 / j for j in jpt if j], basis, "tokens/J")}  # type: ignore[operator]


def _rate_metrics(runs: list[LevelRun], slo: Slo, cost: DeploymentCost) -> dict[str, Any]:
    per: dict[str, list[float]] = {k: [] for k in (
        "requests", "input", "output", "total", "good_requests", "good_input", "good_output")}
    ok_all = [r for run in runs for r in run.records if r.ok]
    # a rate over requests whose tokens nobody counted is unknown, not zero
    known_in = all(r.prompt_tokens is not None for r in ok_all)
    known_out = all(r.output_tokens is not None for r in ok_all)
    known_good = goodness_known(ok_all, slo)
    for run in runs:
        wall = max(run.wall_s, 1e-9)
        ok = [r for r in run.records if r.ok]
        good = [r for r in ok if is_good(r, slo)]
        per["requests"].append(len(ok) / wall)
        per["good_requests"].append(len(good) / wall)
        for key, rs in (("", ok), ("good_", good)):
            i = sum(r.prompt_tokens or 0 for r in rs) / wall
            o = sum(r.output_tokens or 0 for r in rs) / wall
            per[f"{key}input"].append(i)
            per[f"{key}output"].append(o)
            if not key:
                per["total"].append(i + o)
    n = cost.n_gpus

    if not known_in:
        for k in ("input", "good_input", "total"):
            per[k] = []
    if not known_out:
        for k in ("output", "good_output", "total"):
            per[k] = []
    if not known_good:
        for k in ("good_requests", "good_input", "good_output"):
            per[k] = []

    def s(xs: list[float], unit: str) -> Optional[dict[str, Any]]:
        return stat(xs, "measured", unit) if xs else None

    m: dict[str, Any] = {
        "request_throughput_per_s": s(per["requests"], "requests/s"),
        "failure_ratio": s([(sum(1 for r in run.records if not r.ok) + run.cut) / (len(run.records) + run.cut)
                            for run in runs if run.records or run.cut], "fraction"),
        "input_tokens_per_s": s(per["input"], "tokens/s"),
        "output_tokens_per_s": s(per["output"], "tokens/s"),
        "total_tokens_per_s": s(per["total"], "tokens/s"),
        "output_tokens_per_s_per_gpu": s([tk.per_gpu(x, n) for x in per["output"]], "tokens/s/gpu"),
        "total_tokens_per_s_per_gpu": s([tk.per_gpu(x, n) for x in per["total"]], "tokens/s/gpu"),
        "goodput_requests_per_s": s(per["good_requests"], "requests/s"),
        "goodput_tokens_per_s": s(per["good_output"], "tokens/s"),
        "usd_per_mtok": None,
        "usd_per_mtok_good": None,
        "intelligence_per_usd": None,
        "tokens_per_mw": None,
    }
    p = cost.usd_per_gpu_hour
    if p is not None:
        def usd(xs: list[float]) -> Optional[list[float]]:
            ys = [tk.usd_per_mtok(p, n, x) for x in xs]
            return None if any(y is None for y in ys) else ys  # type: ignore[return-value]

        cin, cout = usd(per["input"]), usd(per["output"])
        if cin and cout:
            blend = [tk.blended_usd_per_mtok(a, b) for a, b in zip(cin, cout)]
            m["usd_per_mtok"] = {"input": s(cin, "USD/Mtok"), "output": s(cout, "USD/Mtok"),
                                 "blended": s(blend, "USD/Mtok")}
            per_usd = tk.intelligence_per_usd_samples((cost.intelligence or {}).get("score"), blend)
            if per_usd:
                m["intelligence_per_usd"] = s(per_usd, "score per USD/Mtok")
        gin, gout = usd(per["good_input"]), usd(per["good_output"])
        if gin and gout:
            m["usd_per_mtok_good"] = {"input": s(gin, "USD/Mtok"), "output": s(gout, "USD/Mtok"),
                                      "blended": s([tk.blended_usd_per_mtok(a, b) for a, b in zip(gin, gout)],
                                                   "USD/Mtok")}
    if cost.allin_kw_per_gpu and per["total"]:
        m["tokens_per_mw"] = s([tk.tokens_per_mw(x, cost.allin_kw_per_gpu, n) or 0.0 for x in per["total"]],
                               "tokens/s/MW")
    return m


NO_TOKEN_COUNTS = ("the server reports no usage and no tokenizer is set: token rates, $/M tokens, TPOT and "
                   "J/token are not measured (set tokenizer: to a local tokenizer folder)")


def request_summary(runs: list[LevelRun], slo: Slo) -> dict[str, Any]:
    """Counts a reader checks first: sent, ok, failed (with the commonest errors), cut by the time limit, good, and
    which source counted the tokens. `failure_ratio` = (failed + cut) / sent."""
    recs = [r for run in runs for r in run.records]
    failed = [r for r in recs if not r.ok]
    cut = sum(run.cut for run in runs)
    errors = Counter(error_kind(r.error or "") for r in failed)
    examples: dict[str, str] = {}
    for r in failed:
        examples.setdefault(error_kind(r.error or ""), r.error or "")
    return {
        "sent": len(recs) + cut,
        "ok": len(recs) - len(failed),
        "failed": len(failed),
        "cut": cut,
        "unsent": sum(run.unsent for run in runs),
        # null where goodput is (a TPOT SLO over requests whose TPOT nobody could measure): unknown, not 0
        "good": sum(1 for r in recs if is_good(r, slo)) if goodness_known([r for r in recs if r.ok], slo) else None,
        # a request the time limit cut got no answer either: a server that answers nothing fails every one
        "failure_ratio": (len(failed) + cut) / (len(recs) + cut) if recs or cut else 0.0,
        "errors": dict(errors.most_common(5)),
        "error_examples": {k: examples[k] for k, _ in errors.most_common(5)},
        "output_token_source": dict(Counter(r.output_source for r in recs if r.ok)),
        "prompt_token_source": dict(Counter(r.prompt_source for r in recs if r.ok)),
        "wall_s": [run.wall_s for run in runs],
        **({"note": NO_TOKEN_COUNTS} if any(r.ok and (r.output_tokens is None or r.prompt_tokens is None)
                                           for r in recs) else {}),
    }


def error_kind(msg: str) -> str:
    """Errors grouped by kind ("HTTP 500", "timeout after 600 s", "stream broken: RemoteProtocolError"), not by
    every distinct message."""
    parts = msg.split(": ")
    if parts[0].startswith("HTTP "):
        return parts[0]
    return ": ".join(parts[:2]) if parts[0] in ("stream broken", "connection") and len(parts) > 1 else parts[0]
