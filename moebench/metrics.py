"""Every metric moebench reports, declared once: its name (unit in it), where a record holds it, its direction,
its basis, whether the gate checks it by default, its definition, and which views show it.

The CSV columns (moebench.report.rows), the terminal and HTML run tables, `compare`, the gate's direction and
default set, and the metric tables of docs/report.md (generated; tests/test_metrics.py checks them and says how
to regenerate) all read `METRICS`. Adding a metric is two edits: one `Metric(...)` here, and the producer that
computes it into `record.metrics` (engine/records.py for `moebench run`).

A low layer: imports only the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

Better = Literal["lower", "higher"]
View = Literal["terminal", "wide", "html", "compare"]  # terminal: `moebench run`'s table; wide: its --wide extras
Shape = Literal["stat", "scalar"]  # a statistic {median, p20, …, samples}, or one number (efficiency)
STAT_SUFFIXES = ("median", "p20", "p80", "p90", "p99", "n")

RUN = ("measured", "extrapolated", "projected")  # timed (or projected) throughput, latency, cost
TIMED = ("measured", "extrapolated")
ENERGY = ("measured", "estimated")
ALL_VIEWS: tuple[View, ...] = ("terminal", "html", "compare")
WIDE: tuple[View, ...] = ("wide", "html", "compare")  # in the HTML and compare, and in the terminal with --wide


@dataclass(frozen=True)
class Metric:
    name: str  # the CSV stem (`<name>_median`, …, or the column itself for a scalar); units in the name
    path: str  # dotted path in record.metrics; what `gate --metric` takes
    unit: str
    better: Optional[Better]  # None: an amount of work, neither good nor bad
    basis: tuple[str, ...]  # the bases a value of it can carry
    definition: str  # one line, for docs/report.md
    label: str = ""  # the column head in the terminal and HTML tables
    views: tuple[View, ...] = ("compare",)
    gated: bool = False  # checked by `moebench gate` without --metric
    shape: Shape = "stat"
    spread: bool = False  # tables print median (p20–p80), not the median alone
    tail: bool = False  # tables add a second line p90 · p99
    roof: bool = False  # a fraction of a roof measured in the same run: above 1.0 the roof, not the run, is suspect

    def shown_in(self, view: View) -> bool:
        return view in self.views


# In CSV order. `{unit}` in a label is the run's per-unit word (GPU, or process on CPU).
METRICS: tuple[Metric, ...] = (
    Metric("ttft_ms", "ttft_ms", "ms", "lower", RUN, "time to first token (the batched prefill), ms",
           "TTFT ms", ALL_VIEWS, gated=True, spread=True, tail=True),
    Metric("tpot_ms", "tpot_ms", "ms", "lower", RUN, "time per output token after the first, ms",
           "TPOT ms", ALL_VIEWS, gated=True, spread=True, tail=True),
    Metric("itl_ms", "itl_ms", "ms", "lower", TIMED, "inter-token latency over every decode step, ms",
           "ITL ms", tail=True),
    Metric("e2e_ms", "e2e_ms", "ms", "lower", TIMED,
           "a request's end-to-end latency, ms: in `moebench run`'s static batch TTFT + (output − 1) × TPOT per "
           "repeat; at an endpoint, request sent → end of its stream", "E2E ms", WIDE, spread=True, tail=True),
    Metric("prefill_tokens_per_s", "prefill_tokens_per_s", "tokens/s", "higher", RUN,
           "batch × prompt tokens / batched prefill time (TTFT in a static batch)"),
    Metric("decode_tokens_per_s", "decode_tokens_per_s", "tokens/s", "higher", RUN,
           "batch / decode step time (TPOT in a static batch)", "decode tok/s", WIDE),
    Metric("decode_tokens_per_s_per_gpu", "decode_tokens_per_s_per_gpu", "tokens/s/gpu", "higher", RUN,
           "`decode_tokens_per_s` / `world_size`: the decode-only rate per GPU (what disaggregated decode pools "
           "report)"),
    Metric("interactivity_tokens_per_s_per_user", "interactivity_tokens_per_s_per_user", "tokens/s/user", "higher",
           RUN, "1000 / TPOT: output tokens per second one user sees", "tok/s/user", ("html", "compare")),
    Metric("input_tokens_per_s", "input_tokens_per_s", "tokens/s", "higher", RUN,
           "input tokens of the batch over its wall time"),
    Metric("output_tokens_per_s", "output_tokens_per_s", "tokens/s", "higher", RUN,
           "output tokens of the batch over its wall time", "out tok/s"),
    Metric("total_tokens_per_s", "total_tokens_per_s", "tokens/s", "higher", RUN,
           "input + output tokens over the wall time"),
    Metric("output_tokens_per_s_per_gpu", "output_tokens_per_s_per_gpu", "tokens/s/gpu", "higher", RUN,
           "output tokens/s divided by `world_size`", "out tok/s/{unit}", ALL_VIEWS, gated=True, spread=True),
    Metric("total_tokens_per_s_per_gpu", "total_tokens_per_s_per_gpu", "tokens/s/gpu", "higher", RUN,
           "total tokens/s divided by `world_size`"),
    Metric("usd_per_mtok_input", "usd_per_mtok.input", "USD/Mtok", "lower", RUN,
           "USD per million input tokens, the whole run's time charged to the input tokens (the InferenceX "
           "convention published tables use; `$/M out` = this × prompt / output)", "$/M in", WIDE),
    Metric("usd_per_mtok_output", "usd_per_mtok.output", "USD/Mtok", "lower", RUN,
           "USD per million output tokens, the whole run's time charged to the output tokens (InferenceX)",
           "$/M out", WIDE),
    Metric("usd_per_mtok_blended", "usd_per_mtok.blended", "USD/Mtok", "lower", RUN,
           "(3 × input + output) / 4, USD per million tokens", "$/M blended", ALL_VIEWS, gated=True, spread=True),
    Metric("usd_per_mtok_phase_input", "usd_per_mtok_phase.input", "USD/Mtok", "lower", RUN,
           "USD per million input tokens with only the prefill's time priced into them: price × GPUs × TTFT / "
           "(B × prompt) (set this beside an API's input price)", "$/M in (phase)", WIDE),
    Metric("usd_per_mtok_phase_output", "usd_per_mtok_phase.output", "USD/Mtok", "lower", RUN,
           "USD per million output tokens with only the decode's time priced into them: price × GPUs × (output − 1) "
           "× TPOT / (B × output); input × input tokens + output × output tokens is the run's cost",
           "$/M out (phase)", WIDE),
    Metric("usd_per_mtok_phase_blended", "usd_per_mtok_phase.blended", "USD/Mtok", "lower", RUN,
           "(3 × phase input + phase output) / 4, USD per million tokens", "$/M blended (phase)", WIDE),
    Metric("intelligence_score_per_usd_per_mtok", "intelligence_per_usd", "score per USD/Mtok", "higher", RUN,
           "intelligence score / blended USD per million tokens (`intelligence_per_usd` in the result)",
           "score per $/M", ALL_VIEWS),
    Metric("tokens_per_s_per_mw", "tokens_per_mw", "tokens/s/MW", "higher", RUN,
           "total tokens/s per MW of all-in power (`tokens_per_mw` in the result)"),
    Metric("joules_per_token", "joules_per_token", "J/token", "lower", ENERGY,
           "energy over the timed region / tokens, J (empty when energy was not measured)"),
    Metric("tokens_per_joule", "tokens_per_joule", "tokens/J", "higher", ENERGY,
           "tokens / energy over the timed region: 1 / `joules_per_token` (empty when energy was not measured)",
           "tok/J", ("html", "compare")),
    # a serving endpoint's (moebench.endpoint): measured from the client, per load level
    Metric("inter_chunk_ms", "inter_chunk_ms", "ms", "lower", ("measured",),
           "gap between consecutive content chunks, ms: vLLM's ITL, AIPerf's inter-chunk latency (endpoint)",
           tail=True),
    Metric("queue_ms", "queue_ms", "ms", "lower", ("measured",),
           "time a request waited for the client's concurrency slot, excluded from TTFT, ms (endpoint)"),
    Metric("request_throughput_per_s", "request_throughput_per_s", "requests/s", "higher", ("measured",),
           "successful requests over the level's wall time (endpoint)"),
    Metric("goodput_requests_per_s", "goodput_requests_per_s", "requests/s", "higher", ("measured",),
           "requests meeting every SLO (TTFT, TPOT, E2E) over the wall time (endpoint)", "goodput req/s",
           ("html", "compare")),
    Metric("goodput_tokens_per_s", "goodput_tokens_per_s", "tokens/s", "higher", ("measured",),
           "output tokens of requests meeting every SLO over the wall time (endpoint)"),
    Metric("usd_per_mtok_good_input", "usd_per_mtok_good.input", "USD/Mtok", "lower", ("measured",),
           "USD per million input tokens of requests meeting every SLO (endpoint)"),
    Metric("usd_per_mtok_good_output", "usd_per_mtok_good.output", "USD/Mtok", "lower", ("measured",),
           "USD per million output tokens of requests meeting every SLO (endpoint)", "$/M good out"),
    Metric("usd_per_mtok_good_blended", "usd_per_mtok_good.blended", "USD/Mtok", "lower", ("measured",),
           "(3 × input + output) / 4 over requests meeting every SLO, USD per million tokens (endpoint)"),
    Metric("failure_ratio", "failure_ratio", "fraction", "lower", ("measured",),
           "(failed + cut by the time limit) / sent requests, one sample per repeat (endpoint); gated by the points "
           "it rose, not a ratio", "failed", gated=True),
    # efficiency: one value per record, in `metrics.efficiency`
    Metric("mbu_decode_fraction", "efficiency.mbu_decode", "fraction", "higher", TIMED,
           "decode bytes moved per step / TPOT / catalog peak HBM bandwidth × world_size", "MBU", ("wide", "compare"), shape="scalar"),
    Metric("mfu_prefill_fraction", "efficiency.mfu_prefill", "fraction", "higher", TIMED,
           "prefill FLOPs / TTFT / catalog peak FLOP/s for the dtype × world_size", "MFU", ("wide", "compare"), shape="scalar"),
    Metric("mfu_decode_fraction", "efficiency.mfu_decode", "fraction", "higher", TIMED,
           "decode FLOPs per step / TPOT / catalog peak FLOP/s × world_size", shape="scalar"),
    Metric("mbu_decode_measured_roof_fraction", "efficiency.mbu_decode_measured_roof", "fraction", "higher", TIMED,
           "as `mbu_decode_fraction`, against the bandwidth measured in the same run (on GPU a device-to-device "
           "copy, counting read + write: a decode step that mostly reads can exceed 1.0)", "MBU/roof", ("wide", "compare"),
           shape="scalar", roof=True),
    Metric("mfu_prefill_measured_roof_fraction", "efficiency.mfu_prefill_measured_roof", "fraction", "higher", TIMED,
           "as `mfu_prefill_fraction`, against the matmul rate measured in the same run (on CPU the higher of that "
           "and the register-FMA peak measured beside it: a ceiling no GEMM passes)", "MFU/roof", ("wide", "compare"),
           shape="scalar", roof=True),
    Metric("decode_bytes_per_step", "efficiency.decode_bytes_per_step", "bytes", None, TIMED,
           "bytes one decode step moves (weights of touched experts + KV cache + activations)", views=(),
           shape="scalar"),
    Metric("prefill_flops", "efficiency.prefill_flops", "FLOP", None, TIMED, "FLOPs of one batched prefill",
           views=(), shape="scalar"),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
BY_PATH: dict[str, Metric] = {m.path: m for m in METRICS}
assert len(BY_NAME) == len(BY_PATH) == len(METRICS), "a metric name or path declared twice"


def lookup(name_or_path: str) -> Optional[Metric]:
    """The metric a CSV stem (`usd_per_mtok_blended`) or a record path (`usd_per_mtok.blended`) names, or None."""
    return BY_PATH.get(name_or_path) or BY_NAME.get(name_or_path)


def stats() -> tuple[Metric, ...]:
    return tuple(m for m in METRICS if m.shape == "stat")


def scalars() -> tuple[Metric, ...]:
    return tuple(m for m in METRICS if m.shape == "scalar")


def shown_in(view: View) -> tuple[Metric, ...]:
    return tuple(m for m in METRICS if m.shown_in(view))


def gated() -> tuple[str, ...]:
    """The paths `moebench gate` checks without --metric."""
    return tuple(m.path for m in METRICS if m.gated)


def at(metrics: dict, path: str):
    """The value at a dotted path of a record's metrics; None when a step is absent or not an object."""
    node = metrics
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def doc_table(shape: Shape) -> str:
    """The markdown table of docs/report.md for the stat (`name_*`) or scalar metrics."""
    head = "| column | unit | better | basis | gated | meaning |\n|---|---|---|---|---|---|\n"
    lines = []
    for m in METRICS:
        if m.shape != shape:
            continue
        col = f"`{m.name}_*`" if shape == "stat" else f"`{m.name}`"
        lines.append(f"| {col} | {m.unit} | {m.better or '—'} | {' / '.join(m.basis)} | "
                     f"{'yes' if m.gated else ''} | {m.definition} |")
    return head + "\n".join(lines) + "\n"
