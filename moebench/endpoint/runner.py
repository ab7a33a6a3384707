"""`moebench run` for `kind: endpoint`: probe the server, sweep the load levels (warm-up, repeats), and write one
result document, atomically, after every level, so that a stop or a failure leaves the levels done on disk.

Exit paths: the server unreachable -> EnvironmentProblem (4); a level failing more than `max_failure_ratio` of
its requests -> RunFailed (5, partial results named); SIGINT/SIGTERM -> interrupted (130, partial results named).
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from moebench.endpoint.client import RequestOptions, open_session, send
from moebench.endpoint.cost import DeploymentCost, hardware_of, resolve_cost
from moebench.endpoint.dataset import Prompt, PromptSource
from moebench.endpoint.energy import Meter, energy_record, open_meter, planned_source
from moebench.endpoint.experts import ExpertRecorder, not_available, open_recorder
from moebench.endpoint.load import Level, LevelRun, run_level
from moebench.endpoint.probe import Capabilities, headers, probe, request_url
from moebench.endpoint.stats import level_metrics, request_summary
from moebench.endpoint.telemetry import sample, summarize
from moebench.endpoint.tokens import Tokenizer
from moebench.catalog import reference_models
from moebench.endpoint.workload import EndpointWorkload, RandomDataset, SharedPrefixDataset
from moebench.errors import ExitCode, MoebenchError, RunFailed
from moebench.outdir import save_result
from moebench.results import make_record, new_doc, new_run_id, write_result
from moebench.tokenomics import cost_at_interactivity

Log = Callable[[str], None]


@dataclass
class Sweep:
    """What the run has so far: the probe's answer and one entry per finished level."""

    caps: Optional[Capabilities] = None
    levels: list[tuple[Level, list[LevelRun]]] = field(default_factory=list)
    server: list[Optional[dict[str, Any]]] = field(default_factory=list)  # /metrics summary per level
    energy_j: list[list[Optional[float]]] = field(default_factory=list)  # the meter's joules per repeat, per level
    experts: list[dict[str, Any]] = field(default_factory=list)  # expert load per level (or why not available)
    meter: Optional[Meter] = None
    started: float = field(default_factory=time.time)


def levels_of(wl: EndpointWorkload) -> list[Level]:
    if wl.load.concurrency is not None:
        return [Level("concurrency", c) for c in wl.load.concurrency]
    return [Level("rate", r) for r in wl.load.request_rate or []]


def prepare(wl: EndpointWorkload, source: str = "workload") -> tuple[DeploymentCost, Optional[Tokenizer],
                                                                       PromptSource]:
    """What a run needs before its first request, checked without the network (`validate` calls it too): the
    deployment's hardware and price, the tokenizer, the dataset file. Raises BadInput (exit 3) naming the field."""
    cost = resolve_cost(wl.deployment, source)
    tokenizer = Tokenizer(wl.tokenizer) if wl.tokenizer else None
    return cost, tokenizer, PromptSource(wl.dataset, tokenizer, source)


def run_endpoint_workload(wl: EndpointWorkload, *, out_dir: Path, workload_path: str = "workload",
                          log: Log = lambda _m: None) -> tuple[dict[str, Any], Path]:
    """Run the sweep; returns the complete document and where it was written."""
    cost, tokenizer, prompts = prepare(wl, workload_path)
    run_id = new_run_id(wl.name)
    dest = Path(out_dir) / f"{run_id}.json"
    sweep = Sweep()

    def save(complete: bool, error: Optional[str] = None) -> dict[str, Any]:
        doc = build_doc(wl, sweep, cost, complete=complete, error=error, run_id=run_id, workload_path=workload_path)
        # a write --out refuses (disk full, read-only) puts the document in a named fallback file: exit 5
        save_result(dest, doc, write=lambda path, d: write_result(d, path.parent, path.stem))
        return doc

    try:
        failure = asyncio.run(_sweep(wl, sweep, prompts, tokenizer, save, log, cost.allin_kw_per_gpu))
    except KeyboardInterrupt:
        failure = "interrupted"
    if failure == "interrupted":
        if sweep.levels:
            save(False, "interrupted")
            raise MoebenchError(f"interrupted: partial results (levels measured: {len(sweep.levels)}) in {dest}",
                                code=ExitCode.INTERRUPTED)
        raise MoebenchError("interrupted before the first level finished: nothing saved", code=ExitCode.INTERRUPTED)
    if failure is not None:
        if not sweep.levels:  # a results file without a record helps nobody (report and compare refuse it)
            raise RunFailed(f"{failure}; nothing measured, nothing saved")
        save(False, failure)
        raise RunFailed(f"{failure}; partial results in {dest}", partial_path=str(dest))
    return save(True), dest


async def _sweep(wl: EndpointWorkload, sweep: Sweep, prompts: PromptSource, tokenizer: Optional[Tokenizer],
                 save: Callable[..., Any], log: Log, allin_kw_per_gpu: Optional[float]) -> Optional[str]:
    """Returns None when every level ran, "interrupted", or the reason the run failed."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}  # the handlers before ours (the CLI's), put back when the sweep ends
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            before = signal.getsignal(sig)
            loop.add_signal_handler(sig, stop.set)
            previous[sig] = before
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (tests) or not POSIX
            pass
    spec = wl.endpoint
    levels = levels_of(wl)
    cap = max(int(lv.value) for lv in levels) if levels[0].mode == "concurrency" else wl.load.max_concurrency
    try:
        # scrapes, meter reads and recorder calls get their own connections: in the load's pool they would wait
        # for a slot, and delay the load
        async with open_session(cap, min(10.0, spec.request_timeout_s)) as client, open_session(4) as side:
            # the probe waits up to a minute a step on a server that accepts and never answers: a stop ends it
            probing = asyncio.ensure_future(probe(client, spec))
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({probing, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not probing.done():
                probing.cancel()
                await asyncio.gather(probing, return_exceptions=True)
                return "interrupted"
            caps = probing.result()
            sweep.caps = caps
            sweep.meter = await open_meter(wl.deployment.energy, wl.deployment.meter_gpus(), side)
            recorder, no_experts = await open_recorder(side, spec, headers(spec), wl.deployment.expert_distribution_dir)
            energy = planned_source(sweep.meter, allin_kw_per_gpu)  # the word its records will carry
            log(f"endpoint {spec.base_url}: model {caps.model!r}; usage in stream {caps.stream_usage}, continuous "
                f"{caps.continuous_usage}, ignore_eos {caps.ignore_eos}, /metrics {'yes' if caps.metrics_url else 'no'}, "
                f"energy {energy}{' (catalog all-in power)' if energy == 'estimated' else ''}, "
                f"expert load {'yes' if recorder else 'no'}")
            if not caps.stream_usage and tokenizer is None:
                log("note: the server reports no usage: set tokenizer: (a local tokenizer folder) to count tokens; "
                    "without it token rates, $/M tokens and TPOT are not measured")
            opts = RequestOptions(url=request_url(spec), model=caps.model, api=spec.api,
                                  stream_usage=caps.stream_usage, continuous_usage=caps.continuous_usage,
                                  ignore_eos=caps.ignore_eos, headers=headers(spec), timeout_s=spec.request_timeout_s,
                                  expect_done=caps.done_marker)

            async def one(prompt: Prompt, queued_s: float):
                return await send(client, opts, prompt, tokenizer, queued_s)

            scrape_url = caps.metrics_url if wl.telemetry_interval_s else None
            for level in levels:
                warm = prompts.take(wl.timing.warmup_requests)
                if warm:
                    w = await run_level(one, warm, Level("concurrency", min(len(warm), max(1, int(level.value)))),
                                        max_duration_s=wl.load.max_duration_s, stop=stop)
                    if not stop.is_set() and not any(r.ok for r in w.records):  # the server stopped answering
                        errs = request_summary([w], wl.slo)["errors"]
                        return (f"{level.label}: none of its {len(warm)} warm-up requests was answered (commonest: "
                                f"{next(iter(errs), f'cut at max_duration_s {wl.load.max_duration_s:g}')})")
                why = await recorder.start() if recorder else None
                runs, scrapes, joules = await _repeats(wl, level, one, prompts, stop, side, scrape_url,
                                                       opts.headers, sweep.meter, log)
                experts = await _experts(recorder, why, no_experts)
                finished = [i for i, r in enumerate(runs) if not r.stopped]
                if finished:
                    sweep.levels.append((level, [runs[i] for i in finished]))
                    sweep.server.append(summarize(scrapes))
                    sweep.energy_j.append([joules[i] for i in finished])
                    sweep.experts.append(experts)
                    save(False, None)
                if stop.is_set():
                    return "interrupted"
                summary = request_summary(runs, wl.slo)
                if summary["ok"] == 0 or summary["failure_ratio"] > wl.max_failure_ratio:
                    commonest = next(iter(summary["errors"]), None) or (
                        f"cut at max_duration_s {wl.load.max_duration_s:g}" if summary["cut"] else "?")
                    return (f"{level.label}: {summary['failed']} of {summary['sent']} requests failed and "
                            f"{summary['cut']} were cut at the time limit (> max_failure_ratio {wl.max_failure_ratio:g}"
                            f"{'' if summary['ok'] else ', none answered'}; commonest: {commonest})")
    finally:
        for sig, before in previous.items():
            loop.remove_signal_handler(sig)  # which sets SIG_DFL (SIGTERM) or Python's default (SIGINT)
            if before is not None:  # None: a handler not installed from Python, which cannot be put back
                signal.signal(sig, before)
    return None


async def _repeats(wl: EndpointWorkload, level: Level, one, prompts: PromptSource, stop: asyncio.Event, side,
                   scrape_url: Optional[str], hdrs: dict[str, str], meter: Optional[Meter], log: Log):
    """The level's timed repeats, with the server's /metrics scraped while each runs and its energy counter read
    just before and just after each: (runs, scrapes, joules per repeat or None)."""
    runs: list[LevelRun] = []
    scrapes: list[dict[str, float]] = []
    joules: list[Optional[float]] = []
    for rep in range(wl.timing.repeats):
        if stop.is_set():
            break
        done = asyncio.Event()
        sampler = None
        before = await meter.read() if meter else None
        if scrape_url:
            sampler = asyncio.ensure_future(sample(side, scrape_url, hdrs, done, wl.telemetry_interval_s or 1.0))
        try:
            run = await run_level(one, prompts.take(wl.load.requests_per_level), level,
                                  max_duration_s=wl.load.max_duration_s, stop=stop,
                                  arrival=wl.load.arrival, burstiness=wl.load.burstiness,
                                  max_concurrency=wl.load.max_concurrency, seed=rep)
            joules.append(meter.joules(before, await meter.read()) if meter else None)
        finally:
            done.set()
            if sampler is not None:
                scrapes += await sampler
        runs.append(run)
        log(_progress(level, rep, wl.timing.repeats, run))
        if (run.records or run.cut) and not any(r.ok for r in run.records):  # answered none: the level fails anyway,
            break  # and a server that died would hold each further repeat for its whole max_duration_s
    return runs, scrapes, joules


async def _experts(recorder: Optional[ExpertRecorder], start_failed: Optional[str],
                   no_experts: Optional[str]) -> dict[str, Any]:
    if recorder is None:
        return not_available(no_experts or "no recorder")
    if start_failed:
        return not_available(f"start: {start_failed}")
    return await recorder.finish()


def _progress(level: Level, rep: int, repeats: int, run: LevelRun) -> str:
    ok = [r for r in run.records if r.ok]
    counted = all(r.output_tokens is not None for r in ok)
    out = f"{sum(r.output_tokens or 0 for r in ok) / max(run.wall_s, 1e-9):.0f}" if counted else "?"
    line = (f"  {level.label} repeat {rep + 1}/{repeats}: {len(ok)} ok, {len(run.records) - len(ok)} failed, "
            f"{run.cut} cut, {run.wall_s:.1f} s")
    if not ok:  # no answer: no TTFT to quote, and no rate to call 0
        return line
    ttft = statistics.median([(r.first_token - r.start) * 1e3 for r in ok])  # type: ignore[operator]
    return f"{line}, TTFT median {ttft:.1f} ms, {out} output tok/s"


def build_doc(wl: EndpointWorkload, sweep: Sweep, cost: DeploymentCost, *, complete: bool,
              error: Optional[str], run_id: str, workload_path: Optional[str]) -> dict[str, Any]:
    """The endpoint result document, through the results contract's constructors."""
    hw = hardware_of(wl.deployment, "workload")
    caps = sweep.caps
    hardware = {
        **(hw.model_dump(mode="json", include={"id", "name", "vendor", "arch", "peak_tflops", "hbm_tbps", "hbm_gb"})
           if hw else {"id": None, "name": None}),
        "device": "endpoint",
        "n_devices": wl.deployment.gpus,
        "price": {"usd_per_gpu_hour": cost.usd_per_gpu_hour, "tier": cost.tier, "source": cost.source},
        # what was measured: the server behind the URL, as the probe found it
        "endpoint": {"base_url": wl.endpoint.base_url, "api": wl.endpoint.api,
                     "capabilities": caps.as_dict() if caps else None},
    }
    records = [_record(wl, caps, level, runs, cost, server, joules, experts, sweep.meter)
               for (level, runs), server, joules, experts
               in zip(sweep.levels, sweep.server, sweep.energy_j, sweep.experts)]
    extra: dict[str, Any] = {"error": error} if error else {}
    if wl.interactivity_targets:
        extra["at_interactivity"] = [_at_interactivity(records, t) for t in wl.interactivity_targets]
    return new_doc(kind="endpoint", workload=wl.model_dump(mode="json"), hardware=hardware, records=records,
                   complete=complete, run_id=run_id, world_size=wl.deployment.gpus, workload_path=workload_path,
                   created_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sweep.started)),
                   wall_s=time.time() - sweep.started, **extra)


def _at_interactivity(records: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """$/M blended at one interactivity target, off the levels' Pareto front (interpolated between two levels)."""
    at = cost_at_interactivity(records, target)
    return {"target_tokens_per_s_per_user": target, "usd_per_mtok_blended": at[0] if at else None,
            "levels": list(at[1:]) if at else None, "basis": "measured",
            "how": "linear between the two Pareto-front levels around the target (interactivity up, $/M down), "
                   "on the levels' medians"}


def _record(wl: EndpointWorkload, caps: Optional[Capabilities], level: Level, runs: list[LevelRun],
            cost: DeploymentCost, server: Optional[dict[str, Any]], joules: list[Optional[float]],
            experts: dict[str, Any], meter: Optional[Meter]) -> dict[str, Any]:
    """One load level. `prompt_tokens` / `output_tokens` are the dataset's declared sizes (stable across runs, so
    compare and the gate match levels); what the server counted is in `requests`."""
    ok = [r for run in runs for r in run.records if r.ok]
    closed = level.mode == "concurrency"
    ref = reference_models().get(wl.deployment.model) if wl.deployment.model else None
    served = caps.model if caps else wl.endpoint.model
    energy = energy_record(meter, joules, cost.allin_kw_per_gpu, cost.n_gpus,
                           tokens_counted=all(r.prompt_tokens is not None and r.output_tokens is not None for r in ok))
    return make_record(
        # the deployment's catalog name (family:flavor), so compare lines the endpoint up with an engine run of the
        # same model; the name the server answers to is kept beside it
        model=wl.deployment.model or served,
        served_model=served,
        kind=ref.kind if ref else None,
        params=_params(wl.deployment.model),
        basis="measured",
        # a server batches continuously; an open-loop level's rate is part of its identity (its batch size is not)
        serving="continuous" if closed else f"continuous, {level.label}",
        batch_size=int(level.value) if closed else (wl.load.max_concurrency or 0),
        prompt_tokens=declared_tokens(wl)[0],
        output_tokens=declared_tokens(wl)[1],
        metrics=level_metrics(runs, wl.slo, cost, joules),
        load={"mode": level.mode, "value": level.value, "label": level.label,
              "requests_per_level": wl.load.requests_per_level, "repeats": len(runs),
              # an interrupt stops a level between repeats: the ones done are kept, and the level says it is short
              "repeats_planned": wl.timing.repeats, "level_complete": len(runs) == wl.timing.repeats},
        intelligence=cost.intelligence,
        cost=cost.as_dict(),
        requests=_requests(runs, wl, ok),
        server=server,  # the server's /metrics over the level; None where it has none
        expert_load=experts,
        **energy,
    )


def _requests(runs: list[LevelRun], wl: EndpointWorkload, ok: list) -> dict[str, Any]:
    """request_summary, what the server counted, and a note where it generated fewer tokens than were asked: the
    level is named by the declared output length (compare and gate match on it), so a short answer must say so."""
    req = {**request_summary(runs, wl.slo), "prompt_tokens_counted": _median_int([r.prompt_tokens for r in ok]),
           "output_tokens_counted": _median_int([r.output_tokens for r in ok])}
    asked, got = declared_tokens(wl)[1], req["output_tokens_counted"]
    if asked and isinstance(wl.dataset, RandomDataset):  # lengths drawn uniformly from [r·n, n]: their median
        asked = round(asked * (1 + wl.dataset.range_ratio) / 2)
    if asked and got is not None and got < 0.9 * asked and "note" not in req:
        req["note"] = (f"the server generated a median {got} of the {asked} output tokens asked (it stopped at its own "
                       "end of sequence: ignore_eos refused or ignored); latencies and rates are of those answers")
    return req


def declared_tokens(wl: EndpointWorkload) -> tuple[Optional[int], Optional[int]]:
    ds = wl.dataset
    if isinstance(ds, RandomDataset):
        return ds.prompt_tokens, ds.output_tokens
    if isinstance(ds, SharedPrefixDataset):
        return ds.prefix_tokens + ds.prompt_tokens, ds.output_tokens
    return None, None  # a file's lengths vary by entry


def _median_int(xs: list[Optional[int]]) -> Optional[int]:
    known = [x for x in xs if x is not None]
    return int(statistics.median(known)) if known else None


def _params(model: Optional[str]) -> Optional[dict[str, Any]]:
    """The deployment model's parameter counts, as an engine run of it records them (report's active/total)."""
    from moebench import tokenomics as tk
    from moebench.errors import BadInput
    from moebench.projection import resolve_config

    if not model:
        return None
    try:
        full = resolve_config(model).full()
    except BadInput:  # a name the registry does not know: nothing to count
        return None
    total, active = full.total_params(), full.active_params()
    return {"total": total, "active": active, "active_ratio": tk.active_ratio(active, total)}
