"""Widely quoted dense-vs-MoE and Hopper-vs-Blackwell claims, next to what `moebench project` says (issue #18).

    PYTHONPATH=$PWD:$PWD/kernels python benchmarks/claims.py [--json] [--no-bands]
    PYTHONPATH=$PWD:$PWD/kernels python benchmarks/claims.py --write-doc   # regenerate docs/claims.md's tables

Prints the markdown tables of docs/claims.md; --write-doc rewrites them in place, between the page's
`<!-- claims:NAME -->` ... `<!-- /claims:NAME -->` markers (the prose around them is written by hand).
Every projection is a `moebench project ... --json` command, run in-process (the commands are printed), so the
tables regenerate after the model changes. Each projection
carries the error band of its group (vendor, dense/MoE, weight precision) from the published validation set
(benchmarks/projection_validation.py, with the fitted presets `moebench project` uses): over the held-out points, and over the fit points, since a group's
held-out points can be far from a claim's conditions; the published points of the same model on the same
hardware are listed with their predicted/published.

A ratio of two projections (A/B) inherits both bands: if each side is off by at most its band, the true ratio
lies within ratio / (band_A·band_B) … ratio·band_A·band_B ("typical" with the bands' medians, "worst" with
their worst points). Costs are $/M tokens of all tokens (input + output, InferenceX's basis) at the catalog's
first price tier; every cost is quoted with the interactivity (tokens/s/user) it was projected at.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from moebench.errors import ExitCode, MoebenchError

DOC = Path(__file__).resolve().parent.parent / "docs" / "claims.md"

# the claims as quoted (sources, and what could not be found: docs/claims.md)
# Where the pages docs/claims.md cites were read; the docs name them by these keys (they link nowhere outside).
SOURCE_ADDRESSES = {
    "aa-methodology": "https://artificialanalysis.ai/methodology/intelligence-benchmarking",
    "aa-gpt-oss-article": "https://artificialanalysis.ai/articles/analysis-openai-gpt-oss-models",
    "gpt-oss-120b-high-summary": "https://shadabchow.com/blogs/ai-models/gpt-oss-120b-high",
    "aa-llama-405b-providers": "https://artificialanalysis.ai/models/llama-3-1-instruct-405b/providers",
    "nvidia-moe-nvl72-repost": "https://www.4rfv.com/SLM31VQBMSSJ/mixture-of-experts-powers-the-most-intelligent-"
                               "frontier-ai-models-runs-10x-faster-on-nvidia-blackwell-nvl72.htm",
    "nvidia-tco-repost-24ai": "https://24-ai.news/en/vijest/2026-04-16/nvidia-cijena-po-tokenu-blackwell",
    "nvidia-tco-repost-blockbeats": "https://en.theblockbeats.news/flash/343757",
}
CLAIMED_SCORES = {"llama3:405b": 28.0, "gpt-oss:120b": 61.0}
CLAIMED_INDEX_COST_USD = {"llama3:405b": 200.0, "gpt-oss:120b": 75.0}
CLAIMED_SPEEDUP, CLAIMED_PRICE_RATIO, CLAIMED_USD_FROM, CLAIMED_USD_TO = 15.0, 1.5, 1.0, 0.10
SCORE_VERSION = "v3"  # the index version both catalog scores are pinned to

TARGETS = (10.0, 20.0, 50.0, 100.0)  # tokens/s/user asked of every projection
CURVE = (10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 60.0, 75.0, 100.0)  # read off the frontier
AMD = ("mi300x", "mi325x", "mi355x")
# The figures the claims' sources quote, with the ratio each implies (docs/claims.md prints the arithmetic):
# (source, what is divided, numerator, denominator, unit)
SOURCE_RATIOS = (
    ("NVIDIA 'Rethinking AI TCO' (reposts)", "DeepSeek-R1 tokens/s per GPU, GB300 NVL72 / HGX H200", 6000.0, 90.0,
     "tokens/s"),
    ("NVIDIA 'Rethinking AI TCO' (reposts)", "$/M tokens, HGX H200 / GB300 NVL72", 4.20, 0.12, "$"),
    ("BlockBeats summary", "GB300 $/M tokens without MTP / with MTP (FP4)", 2.35, 0.12, "$"),
    ("InferenceX DeepSeek-R1 table, 8k/1k", "tokens/s per GPU, GB200 FP4 / H200 FP8", 14952.0, 2453.9, "tokens/s"),
    ("InferenceX DeepSeek-R1 table, 8k/1k", "$/M tokens, H200 FP8 / GB200 FP4", 0.16, 0.04, "$"),
    # blended 3:1 input:output; gpt-oss-120B at $0.15 / $0.60 per M input / output tokens: (3 × 0.15 + 0.60) / 4
    ("Artificial Analysis providers, blended", "$/M tokens, Llama-3.1-405B (Bedrock Standard) / gpt-oss-120B",
     2.40, 0.2625, "$"),
    ("Artificial Analysis providers, blended", "$/M tokens, Llama-3.1-405B (Azure) / gpt-oss-120B", 8.00, 0.2625, "$"),
)
# InferenceX's highest-throughput DeepSeek-R1 rows on the two systems (tests/projection/data/published.yaml)
PUBLISHED_DSR1 = ("ix-dsr1-h200_sxm-fp8-trt-8k1k", "ix-dsr1-gb200_nvl72-fp4-dynamo-trt-8k1k",
                  "ix-dsr1-h200_sxm-fp8-dynamo-trt-1k1k")


@dataclass(frozen=True)
class Spec:
    """One `moebench project` invocation: a model on one catalog id."""

    model: str
    hardware: str
    dtype: str
    prompt: int
    output: int
    max_gpus: int
    batch: int  # a concurrency to read as well: the fewest GPUs that hold it (the CLI's per-batch row)

    def argv(self) -> list[str]:
        return ["project", "--model", self.model, "--hardware", self.hardware, "--dtype", self.dtype,
                "--prompt", str(self.prompt), "--output", str(self.output), "--max-gpus", str(self.max_gpus),
                "--batch", str(self.batch), "--interactivity", ",".join(f"{x:g}" for x in TARGETS), "--json"]

    @property
    def command(self) -> str:
        return "moebench " + " ".join(a for a in self.argv() if a != "--json")

    @property
    def label(self) -> str:
        return f"{self.model} {self.dtype} on {self.hardware} ({self.prompt}/{self.output}, ≤{self.max_gpus} GPUs)"


@dataclass(frozen=True)
class Band:
    """Error of the headline throughput over published points: max(pred/pub, pub/pred)."""

    n: int
    median: float = math.nan
    worst: float = math.nan
    median_optimism: float = math.nan  # median of pred/pub (> 1: projected too fast)

    def text(self) -> str:
        if not self.n:
            return "no points"
        return f"{self.median:.2f}× / {self.worst:.2f}× (n {self.n}, pred/pub {self.median_optimism:.2f})"


class Validation:
    """benchmarks/projection_validation.py's scored headlines (fitted presets), grouped as the bands need them."""

    def __init__(self, points=None, enabled: bool = True):
        self.results: list = []
        self.skipped: list = []
        if enabled:
            from benchmarks.projection_validation import run

            self.results, self.skipped = run(points=points)

    def band(self, split: str, group: tuple[str, str, str]) -> Band:
        from benchmarks.projection_validation import groups

        rs = [s for s in self.results if s.m.split == split
              and tuple(groups(s)[k] for k in ("vendor", "arch", "precision")) == group]
        if not rs:
            return Band(0)
        return Band(len(rs), statistics.median(s.error for s in rs), max(s.error for s in rs),
                    statistics.median(s.optimism for s in rs))

    def same(self, spec: Spec) -> list[str]:
        """The published points of this model on this hardware: pred/pub, or why they cannot be projected."""
        out = [f"{s.m.id.split('/')[0]} {s.optimism:.2f}" for s in self.results
               if s.m.model == spec.model and s.m.device.id == spec.hardware]
        out += [f"{p.id} n/e" for p, _ in self.skipped if p.model == spec.model and p.hardware == spec.hardware]
        return out


@dataclass(frozen=True)
class Operating:
    """The best point at ≥ `interactivity` tok/s/user (moebench's at_interactivity); None: not reachable."""

    interactivity: float
    layout: Optional[str] = None
    batch: Optional[int] = None
    tpot_ms: Optional[float] = None
    tok_s_per_gpu: Optional[float] = None  # output tokens
    usd_per_mtok: Optional[float] = None  # all tokens


@dataclass
class Projected:
    spec: Spec
    group: tuple[str, str, str]  # vendor, dense/MoE, precision: the validation group whose band applies
    usd_per_gpu_hour: float
    price_tier: str
    frontier: list[dict[str, Any]]
    record: Optional[dict[str, Any]]  # the per-batch row of spec.batch; None: it does not fit
    held_out: Band = Band(0)
    fit: Band = Band(0)
    published: list[str] = field(default_factory=list)

    def at(self, interactivity: float) -> Operating:
        """The best frontier point at least this interactive (the step function of at_interactivity)."""
        ok = [p for p in self.frontier if p["interactivity_tokens_per_s_per_user"] >= interactivity]
        if not ok:
            return Operating(interactivity)
        p = max(ok, key=lambda q: q["output_tokens_per_s_per_gpu"])
        return Operating(interactivity, p["layout"]["text"].replace(" (1 domain)", ""), p["batch_size"], p["tpot_ms"],
                         p["output_tokens_per_s_per_gpu"], p["usd_per_mtok"]["total"])

    def at_batch(self) -> Operating:
        """The CLI's row for `spec.batch` concurrent requests (interactivity: what that batch gets)."""
        from moebench import tokenomics as tk

        if self.record is None:
            return Operating(math.nan)
        m = {k: v["median"] for k, v in self.record["metrics"].items() if v and "median" in v}
        total = m["total_tokens_per_s_per_gpu"]
        return Operating(m["interactivity_tokens_per_s_per_user"], self.record["layout"]["text"].replace(" (1 domain)", ""),
                         self.record["batch_size"], m["tpot_ms"], m["output_tokens_per_s_per_gpu"],
                         tk.usd_per_mtok(self.usd_per_gpu_hour, 1, total))

    def interactivity_at_cost(self, usd_per_mtok: float) -> Optional[float]:
        """The highest interactivity whose best point still costs at most `usd_per_mtok` (all tokens)."""
        return max((p["interactivity_tokens_per_s_per_user"] for p in self.frontier
                    if p["usd_per_mtok"]["total"] <= usd_per_mtok), default=None)


class ClaimError(MoebenchError):
    """A projection the comparison needs is missing (e.g. no point reaches the interactivity it is read at)."""

    code = ExitCode.RUN_FAILED


def _div(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b else None


def _need(x: Optional[float], what: str) -> float:
    if x is None or not math.isfinite(x):
        raise ClaimError(f"{what}: no projected point (the projection model cannot serve it)")
    return x


@dataclass
class Check:
    """One claim: the quoted numbers, moebench's, and the band of the projected ratio."""

    slug: str  # names its blocks in docs/claims.md
    claim: str
    quoted: dict[str, float]
    projected: dict[str, float]
    band_typical: tuple[float, float]
    band_worst: tuple[float, float]
    verdict: str
    tables: list[str] = field(default_factory=list)  # markdown, as docs/claims.md shows them
    commands: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)  # the numeric sentences of "where moebench agrees"


def project(spec: Spec, v: Validation) -> Projected:
    """`moebench project ... --json` in-process; anything but exit 0 is an error carrying its message."""
    from typer.testing import CliRunner

    from moebench.cli import app
    from moebench.projection import resolve_config

    r = CliRunner().invoke(app, spec.argv())
    if r.exit_code != 0:
        last = (r.output.strip().splitlines() or [""])[-1]
        raise ClaimError(f"{spec.command}: exit {r.exit_code}: {last[-300:]}")
    (hw,) = json.loads(r.stdout)["hardware"]
    group = ("AMD" if spec.hardware in AMD else "NVIDIA", "MoE" if resolve_config(spec.model).is_moe else "dense",
             spec.dtype)
    return Projected(spec, group, hw["price"]["usd_per_gpu_hour"], hw["price"]["tier"], hw["frontier"],
                     (hw["records"] or [None])[0], v.band("holdout", group), v.band("fit", group), v.same(spec))


def _optimism_range(v: Validation, model: str, hardware: str, precision: Optional[str] = None) -> str:
    """"0.90–1.30× on 13 published points" over the scored points of a model on a hardware (projected/published
    for a throughput; > 1 too fast)."""
    from benchmarks.projection_validation import groups

    xs = sorted(s.optimism for s in v.results if s.m.model == model and s.m.device.id == hardware
                and (precision is None or groups(s)["precision"] == precision))
    if not xs:
        return "no published point"
    if len(xs) == 1:
        return f"{xs[0]:.2f}× on 1 published point"
    return f"{xs[0]:.2f}–{xs[-1]:.2f}× on {len(xs)} published points"


def _ratio_band(ratio: float, a: Band, b: Band) -> tuple[tuple[float, float], tuple[float, float]]:
    typ, worst = a.median * b.median, a.worst * b.worst
    return (ratio / typ, ratio * typ), (ratio / worst, ratio * worst)


def _num(x: Optional[float], digits: int = 3) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:,.0f}" if abs(x) >= 10 ** digits else f"{x:.{digits}g}"


def _where(x: float, lo_hi: tuple[float, float]) -> str:
    if not all(math.isfinite(v) for v in lo_hi):
        return "not compared with"
    return "inside" if lo_hi[0] <= x <= lo_hi[1] else "outside"


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def operating_table(projs: list[Projected]) -> str:
    """What moebench chose for each projection at each default target, and at the spec's concurrency."""
    rows = []
    for p in projs:
        for o, at in [*((p.at(x), f"{x:g}") for x in TARGETS), (p.at_batch(), f"concurrency {p.spec.batch}")]:
            rows.append([p.spec.label, at, o.layout or "not reachable", _num(o.batch), _num(o.tpot_ms),
                         _num(1000 / o.tpot_ms if o.tpot_ms else None), _num(o.tok_s_per_gpu), _num(o.usd_per_mtok)])
    return _table(["projection", "tok/s/user ≥", "layout", "batch", "TPOT ms", "tok/s/user", "out tok/s/GPU",
                   "$/M tokens"], rows)


def band_table(projs: list[Projected]) -> str:
    rows = [[p.spec.label, " ".join(p.group), p.held_out.text(), p.fit.text(), f"${p.usd_per_gpu_hour:g} ({p.price_tier})",
             "; ".join(p.published) or "none"] for p in projs]
    return _table(["projection", "group", "held-out band: median / worst", "fit band: median / worst", "price/GPU-h",
                   "published points, same model and hardware, any precision (pred/pub; n/e: not expressible)"], rows)


def published_table(ids: tuple[str, ...], projs: list[Projected]) -> str:
    """Published points as the validation set records them, with $/M tokens at the catalog's first price tier, and
    the projection of the same model, hardware, precision and lengths at ≥ the point's tok/s/user (moebench's
    own best layout, not the published one: the validation set's method fixes the layout)."""
    from moebench import tokenomics as tk
    from moebench.catalog import get_hardware
    from tests.projection.published_set import load_published

    pts = {p.id: p for p in load_published().points}
    rows = []
    for i in ids:
        p = pts[i]
        total, tpot = p.metric("total_tok_s_per_gpu"), p.metric("tpot_ms")
        price = get_hardware(p.hardware).prices[0]
        same = next((q for q in projs if (q.spec.hardware, q.spec.dtype, q.spec.prompt, q.spec.output)
                     == (p.hardware, p.precision.weights, *p.nominal_lengths)), None)
        o = same.at(1000 / tpot) if same else Operating(1000 / tpot)
        pred = o.tok_s_per_gpu * (p.input_tokens + p.output_tokens) / p.output_tokens if o.tok_s_per_gpu else None
        rows.append([i, p.hardware, p.precision.weights, p.engine.name, f"{p.input_tokens}/{p.output_tokens}",
                     _num(p.load.value), _num(tpot), _num(1000 / tpot), _num(total),
                     _num(tk.usd_per_mtok(price.usd_per_gpu_hour, 1, total)), _num(pred),
                     _num(pred / total if pred else None), p.source])
    return _table(["published point", "hardware", "weights", "engine", "in/out", "concurrency", "TPOT ms", "tok/s/user",
                   "total tok/s/GPU", "$/M tokens (catalog price)", "moebench total tok/s/GPU at ≥ that tok/s/user",
                   "pred/pub", "source"], rows)


def check_dense_vs_moe(v: Validation) -> Check:
    """Llama-3.1-405B (dense) vs gpt-oss-120b (MoE): index scores, and the cost of running the whole index."""
    from moebench.catalog import reference_models

    ref = reference_models()
    scores = {m: ref[m].score(SCORE_VERSION) for m in CLAIMED_SCORES}
    hws = ("h200_sxm", "b200")
    projs = {(m, hw): project(Spec(m, hw, dt, 1024, 1024, 8, 64), v)
             for m, dt in (("llama3:405b", "fp8"), ("gpt-oss:120b", "fp4")) for hw in hws}
    claimed = CLAIMED_INDEX_COST_USD["llama3:405b"] / CLAIMED_INDEX_COST_USD["gpt-oss:120b"]
    rows = []
    for hw in hws:
        dense, moe = projs[("llama3:405b", hw)], projs[("gpt-oss:120b", hw)]
        pairs = [(f"≥{x:g} tok/s/user", dense.at(x), moe.at(x)) for x in TARGETS]
        pairs.append((f"concurrency {dense.spec.batch}", dense.at_batch(), moe.at_batch()))
        for what, d, m in pairs:
            r = _div(d.usd_per_mtok, m.usd_per_mtok)
            rows.append([hw, what, _num(d.tok_s_per_gpu), _num(d.usd_per_mtok), _num(m.tok_s_per_gpu),
                         _num(m.usd_per_mtok), _num(r), _num(r / claimed if r else None)])
    per_x = _table(["hardware (≤8 GPUs, 1k/1k)", "at", "Llama-405B fp8 out tok/s/GPU", "$/M tokens",
                    "gpt-oss-120b fp4 out tok/s/GPU", "$/M tokens", "dense/MoE $ per token",
                    f"gpt-oss tokens per Llama token for the claimed {claimed:.2f}× run cost"], rows)
    head = 20.0  # the fastest default target a dense 405B still serves at a large batch on one 8-GPU H200 node
    dense, moe = (projs[(m, "h200_sxm")] for m in CLAIMED_SCORES)
    d, m = dense.at(head), moe.at(head)
    ratio = _need(_div(d.usd_per_mtok, m.usd_per_mtok), f"dense/MoE $ per token on H200 at ≥{head:g} tok/s/user")
    typ, worst = _ratio_band(ratio, dense.held_out, moe.held_out)
    same_version = scores["llama3:405b"] is not None and scores["gpt-oss:120b"] is not None
    # the catalog's source (up to its methodology link) names no one: say so rather than call the scores confirmed
    sources = sorted({scores[k].source.split(";")[0] for k in CLAIMED_SCORES if scores[k] is not None})
    unverified = f" (unverified: {'; '.join(sources)})"
    score_text = f"as quoted, both on index {SCORE_VERSION}{unverified}" if same_version else "not on one index version"
    verdict = (f"scores: {score_text}; "
               f"per token the MoE is {ratio:.0f}× cheaper on H200 at ≥{head:g} tok/s/user (typical {_num(typ[0], 2)}–"
               f"{_num(typ[1], 2)}×), against the claimed {claimed:.2f}× per index run: consistent only if gpt-oss-120b "
               f"spent ~{ratio / claimed:.0f}× the tokens (not checkable here)")
    d10, m10 = dense.at(10.0), moe.at(10.0)
    bd, bm = (projs[(k, "b200")].at(head) for k in CLAIMED_SCORES)
    dc, mc = dense.at_batch(), moe.at_batch()
    reach = {k: max((x for x in TARGETS if projs[(k, "h200_sxm")].at(x).tok_s_per_gpu), default=None)
             for k in CLAIMED_SCORES}
    findings = [
        f"Per token, at ≥ {head:g} tokens/s/user on one H200 node: Llama-405B ${_num(d.usd_per_mtok)} and gpt-oss-120b "
        f"${_num(m.usd_per_mtok)} per million tokens, **{_num(ratio)}×** (typical band {_num(typ[0])}–{_num(typ[1])}×, "
        f"worst {_num(worst[0])}–{_num(worst[1])}×); {_num(_div(d10.usd_per_mtok, m10.usd_per_mtok))}× at ≥ 10 "
        f"tokens/s/user, {_num(_div(bd.usd_per_mtok, bm.usd_per_mtok))}× on B200 at ≥ {head:g}.",
        f"The claimed {claimed:.2f}× per index run then needs gpt-oss to spend about **{_num(ratio / claimed)}×** as "
        f"many tokens as Llama.",
        f"gpt-oss's side at ≥ {head:g}: {m.layout} at batch {_num(m.batch)}, {_num(m.tok_s_per_gpu)} output tokens/s "
        f"per GPU; the published gpt-oss points on H200: {_optimism_range(v, 'gpt-oss:120b', 'h200_sxm')} "
        f"(projected/published throughput).",
        f"At **concurrency {dense.spec.batch}** on both sides the ratio is "
        f"**{_num(_div(dc.usd_per_mtok, mc.usd_per_mtok))}×** (Llama {dc.layout} at {_num(dc.interactivity)} "
        f"tokens/s/user, gpt-oss {mc.layout} at {_num(mc.interactivity)}: the same load, not the same speed).",
        f"Llama-405B on H200: {_optimism_range(v, 'llama3:405b', 'h200_sxm')}.",
        f"The fastest default target each reaches on H200: Llama-405B ≥ {_num(reach['llama3:405b'])}, gpt-oss-120b ≥ "
        f"{_num(reach['gpt-oss:120b'])} tokens/s/user.",
    ]
    return Check(
        "dense-vs-moe", "Llama-3.1-405B vs gpt-oss-120b: AA index 28 vs 61; ~$200 vs ~$75 to run the whole index",
        {"score_dense": CLAIMED_SCORES["llama3:405b"], "score_moe": CLAIMED_SCORES["gpt-oss:120b"],
         "index_cost_ratio": claimed},
        {"score_dense": scores["llama3:405b"].score, "score_moe": scores["gpt-oss:120b"].score,
         "interactivity": head, "usd_per_mtok_dense": d.usd_per_mtok, "usd_per_mtok_moe": m.usd_per_mtok,
         "token_cost_ratio": ratio, "implied_token_ratio": ratio / claimed},
        typ, worst, verdict, [per_x, operating_table(list(projs.values())), band_table(list(projs.values()))],
        [p.spec.command for p in projs.values()], findings)


def check_gb200_vs_h200(v: Validation) -> Check:
    """DeepSeek-R1: GB200 NVL72 vs an 8-GPU H200 system: ~15× throughput for ~1.5× price, $1 → $0.10 per M tokens."""
    tables, commands, all_projs, heads = [], [], [], {}
    for isl in (1024, 8192):
        hop = project(Spec("deepseek-v3:r1", "h200_sxm", "fp8", isl, 1024, 8, 256), v)
        fp4, fp8 = (project(Spec("deepseek-v3:r1", "gb200_nvl72", dt, isl, 1024, 72, 256), v) for dt in ("fp4", "fp8"))
        all_projs += [hop, fp4, fp8]
        x_usd = hop.interactivity_at_cost(CLAIMED_USD_FROM)
        x_usd = None if x_usd is None else math.floor(x_usd * 10) / 10  # shown to 0.1, never above the point
        rows, fp4_ratios = [], {}
        for x in sorted({*CURVE, *([x_usd] if x_usd else [])}):
            h, b4, b8 = hop.at(x), fp4.at(x), fp8.at(x)
            r4, r8 = _div(b4.tok_s_per_gpu, h.tok_s_per_gpu), _div(b8.tok_s_per_gpu, h.tok_s_per_gpu)
            if r4 is not None and x in CURVE:
                fp4_ratios[x] = r4
            mark = " (H200 at $1/M)" if x == x_usd else ""
            rows.append([f"{x:g}{mark}", _num(h.tok_s_per_gpu), _num(h.usd_per_mtok), _num(b4.tok_s_per_gpu),
                         _num(b4.usd_per_mtok), _num(r4), _num(b8.tok_s_per_gpu), _num(r8)])
        tables.append(f"DeepSeek-R1, {isl}/1024 tokens: H200 fp8 on ≤8 GPUs against GB200 NVL72 on ≤72\n\n" + _table(
            ["tok/s/user ≥", "H200 fp8 out tok/s/GPU", "$/M tokens", "GB200 fp4 out tok/s/GPU", "$/M tokens",
             "fp4 / H200", "GB200 fp8 out tok/s/GPU", "fp8 / H200"], rows))
        crossing = next((x for x in CURVE if (h := hop.at(x).tok_s_per_gpu) and (b := fp4.at(x).tok_s_per_gpu)
                         and b / h >= CLAIMED_SPEEDUP), None)
        heads[isl] = (hop, fp4, x_usd, crossing, fp4_ratios)
    tables += [operating_table(all_projs), band_table(all_projs), published_table(PUBLISHED_DSR1, all_projs)]
    commands = [p.spec.command for p in all_projs]
    hop, bw, x, _, curve = heads[1024]
    x = x if x is not None else TARGETS[1]  # H200 never reaches $1/M tokens: compare at a default target instead
    h, b = hop.at(x), bw.at(x)
    speedup = _need(_div(b.tok_s_per_gpu, h.tok_s_per_gpu), f"GB200 fp4 / H200 throughput at ≥{x:.3g} tok/s/user")
    if not curve:
        raise ClaimError("GB200 fp4 / H200 throughput (1k/1k): no interactivity of the curve has both projections")
    lo, hi = min(curve, key=curve.get), max(curve, key=curve.get)
    typ, worst = _ratio_band(speedup, bw.held_out, hop.held_out)
    price_ratio = bw.usd_per_gpu_hour / hop.usd_per_gpu_hour
    verdict = (f"at {x:.3g} tok/s/user (1k/1k), where moebench's H200 costs ${h.usd_per_mtok:.2f}/M tokens, GB200 fp4 "
               f"gives {speedup:.0f}× the throughput per GPU at ${b.usd_per_mtok:.3f}/M tokens for {price_ratio:.2f}× "
               f"the price; the claimed {CLAIMED_SPEEDUP:g}× is {_where(CLAIMED_SPEEDUP, typ)} the typical band "
               f"({_num(typ[0], 2)}–{_num(typ[1], 2)}×) and {_where(CLAIMED_SPEEDUP, worst)} the worst ({_num(worst[0], 2)}–"
               f"{_num(worst[1], 2)}×); over {min(curve):g}–{max(curve):g} tok/s/user the ratio runs from "
               f"{_num(curve[lo])}× (at ≥{lo:g}) to {_num(curve[hi])}× (at ≥{hi:g})")
    findings = [f"Price per GPU-hour: GB200 NVL72 / H200 = **{price_ratio:.2f}×** (catalog, {hop.price_tier} tier)."]
    for isl, (hp, f4, x_usd, crossing, ratios) in heads.items():
        lo_x, hi_x = min(ratios, key=ratios.get), max(ratios, key=ratios.get)
        cross = (f"it reaches the claimed {CLAIMED_SPEEDUP:g}× from ≥ {crossing:g} tokens/s/user" if crossing else
                 f"it never reaches the claimed {CLAIMED_SPEEDUP:g}× on the grid")
        findings.append(f"{isl}/1024: GB200 fp4 / H200 output tokens/s per GPU runs from {_num(ratios[lo_x])}× (at ≥ "
                        f"{lo_x:g} tokens/s/user) to {_num(ratios[hi_x])}× (at ≥ {hi_x:g}); {cross}.")
        if x_usd is not None:
            h1, b1 = hp.at(x_usd), f4.at(x_usd)
            findings.append(f"{isl}/1024: moebench's H200 node costs at most ${CLAIMED_USD_FROM:g} per million tokens up to "
                            f"{x_usd:g} tokens/s/user (${_num(h1.usd_per_mtok)} there, {h1.layout} at batch "
                            f"{_num(h1.batch)}); GB200 fp4 there: ${_num(b1.usd_per_mtok)}, "
                            f"{_num(_div(h1.usd_per_mtok, b1.usd_per_mtok))}× cheaper, "
                            f"{_num(_div(b1.tok_s_per_gpu, h1.tok_s_per_gpu))}× the throughput per GPU.")
    findings.append(f"The projected ratio at the 1k/1k $1 anchor, {_num(speedup)}×, has a typical band "
                    f"{_num(typ[0])}–{_num(typ[1])}× and a worst band {_num(worst[0])}–{_num(worst[1])}×.")
    findings += _published_dsr1(v, heads)
    findings.append("Held-out bands of the groups the projections fall in: NVIDIA MoE fp8 "
                    f"{v.band('holdout', ('NVIDIA', 'MoE', 'fp8')).text()}; NVIDIA MoE fp4 "
                    f"{v.band('holdout', ('NVIDIA', 'MoE', 'fp4')).text()}. The LMSYS DeepSeek-V3 decode pool on "
                    f"GB200 (fit split): {_optimism_range(v, 'deepseek-v3:671b', 'gb200_nvl72')}.")
    return Check(
        "gb200-vs-h200", "DeepSeek-R1, GB200 NVL72 vs H200 8-GPU: ~15× throughput for ~1.5× cost per GPU, ~$1 → ~$0.10 per M tokens",
        {"speedup": CLAIMED_SPEEDUP, "price_ratio": CLAIMED_PRICE_RATIO, "usd_per_mtok_from": CLAIMED_USD_FROM,
         "usd_per_mtok_to": CLAIMED_USD_TO},
        {"interactivity": x, "speedup": speedup, "price_ratio": price_ratio, "usd_per_mtok_from": h.usd_per_mtok,
         "usd_per_mtok_to": b.usd_per_mtok, "tok_s_per_gpu_from": h.tok_s_per_gpu, "tok_s_per_gpu_to": b.tok_s_per_gpu,
         # the lowest tok/s/user of CURVE from which GB200 fp4 is at least the claimed 15× (NaN: never)
         "interactivity_15x_1k1k": heads[1024][3] or math.nan, "interactivity_15x_8k1k": heads[8192][3] or math.nan},
        typ, worst, verdict, tables, commands, findings)


def _published_dsr1(v: Validation, heads: dict) -> list[str]:
    """InferenceX's DeepSeek-R1 rows (PUBLISHED_DSR1) against moebench at their tokens/s/user."""
    from tests.projection.published_set import load_published

    pts = {p.id: p for p in load_published().points}
    out = []
    h8 = pts[PUBLISHED_DSR1[0]]
    hop8 = heads[h8.nominal_lengths[0]][0]
    o = hop8.at(1000 / h8.metric("tpot_ms"))
    mine = _div(o.tok_s_per_gpu * (h8.input_tokens + h8.output_tokens) / h8.output_tokens if o.tok_s_per_gpu else None,
                h8.metric("total_tok_s_per_gpu"))
    recorded = next((s.optimism for s in v.results if s.m.id.startswith(h8.id + "/")), None)
    lo = h8.layout
    recorded_text = (f"the run used speculative decoding ({h8.engine.speculative}) with attention DP{lo.dp} and "
                     f"EP{lo.ep}, which moebench's projection here (no speculation) does not include, so the "
                     "validation set does not project it" if h8.engine.speculative else
                     f"the layout the validation set records for it projects {_num(recorded)}×")
    out.append(f"InferenceX's H200 {'/'.join(map(str, h8.nominal_lengths))} row (mean lengths {h8.input_tokens}/"
               f"{h8.output_tokens}): moebench's own best layout ({o.layout}) is **{_num(mine)}×** the published "
               f"throughput at the same tokens/s/user; {recorded_text}.")
    h1 = pts[PUBLISHED_DSR1[2]]
    x1 = 1000 / h1.metric("tpot_ms")
    o1 = heads[h1.nominal_lengths[0]][0].at(x1)
    pub = h1.metric("total_tok_s_per_gpu")
    proj = o1.tok_s_per_gpu * (h1.input_tokens + h1.output_tokens) / h1.output_tokens if o1.tok_s_per_gpu else None
    out.append(f"InferenceX's H200 {h1.input_tokens}/{h1.output_tokens} row ran {h1.n_gpus} GPUs with disaggregated "
               f"prefill/decode: {_num(pub)} tokens/s per GPU at {_num(x1)} tokens/s/user; moebench's single node "
               f"reaches {_num(proj)} there ({_num(_div(proj, pub))}×).")
    return out


def check_claims(points=None, with_bands: bool = True) -> list[Check]:
    """One Check per claim. `points`: the published points the bands come from (default: the whole set, ~10 s
    of projections); with_bands=False leaves every band empty (NaN)."""
    v = Validation(points, enabled=with_bands)
    return [check_dense_vs_moe(v), check_gb200_vs_h200(v)]


def summary_table(checks: list[Check]) -> str:
    rows = [[c.claim, ", ".join(f"{k} {_num(x)}" for k, x in c.quoted.items()),
             ", ".join(f"{k} {_num(x)}" for k, x in c.projected.items()),
             f"{_num(c.band_typical[0])}–{_num(c.band_typical[1])}× / {_num(c.band_worst[0])}–{_num(c.band_worst[1])}×",
             c.verdict] for c in checks]
    return _table(["claim", "quoted", "moebench", "band of the projected ratio: typical / worst", "verdict"], rows)


def _finite(x: Any) -> Any:
    """NaN (an empty band) as null: the document stays strict JSON."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(y) for k, y in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(y) for y in x]
    return x


def sources_table() -> str:
    """The ratios the claims' sources imply, computed from the figures they quote."""
    rows = []
    for source, what, a, b, unit in SOURCE_RATIOS:
        fmt = (lambda v: f"${v:g}") if unit == "$" else (lambda v: f"{v:,g}")
        rows.append([source, what, f"{fmt(a)} / {fmt(b)}", f"{a / b:.3g}×"])
    return _table(["source", "figures", "quoted", "ratio"], rows)


def doc_blocks(checks: list[Check]) -> dict[str, str]:
    """Every generated part of docs/claims.md by its marker name."""
    blocks = {"summary": summary_table(checks), "sources": sources_table()}
    for c in checks:
        for i, t in enumerate(c.tables):
            blocks[f"{c.slug}:table{i}"] = t
        blocks[f"{c.slug}:commands"] = "```bash\n" + "\n".join(c.commands) + "\n```"
        blocks[f"{c.slug}:findings"] = "\n".join(f"- {f}" for f in c.findings)
    return blocks


_BLOCK = re.compile(r"(<!-- claims:(?P<name>[\w:-]+) -->\n)(?P<body>.*?)(\n<!-- /claims:(?P=name) -->)", re.S)


def write_doc(text: str, blocks: dict[str, str]) -> str:
    """`text` with each marked block replaced; every block must have exactly one marker pair."""
    found = [m["name"] for m in _BLOCK.finditer(text)]
    missing = sorted(set(blocks) - set(found))
    extra = sorted({n for n in found if n not in blocks or found.count(n) > 1})
    if missing or extra:
        raise ClaimError(f"{DOC.name}: markers missing for {missing or 'none'}; unknown or repeated {extra or 'none'}")
    return _BLOCK.sub(lambda m: m[1] + blocks[m["name"]] + m[4], text)


def doc_block(text: str, name: str) -> str:
    """The generated block `name` as the page holds it."""
    m = next((m for m in _BLOCK.finditer(text) if m["name"] == name), None)
    if m is None:
        raise ClaimError(f"{DOC.name}: no <!-- claims:{name} --> block")
    return m["body"]


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the tables")
    ap.add_argument("--no-bands", action="store_true", help="skip the validation set (no error bands; faster)")
    ap.add_argument("--write-doc", action="store_true", help=f"rewrite the generated blocks of docs/{DOC.name}")
    args = ap.parse_args(argv)
    try:
        checks = check_claims(with_bands=not args.no_bands)
        if args.write_doc:
            from moebench.results import write_text_atomic

            text = DOC.read_text()
            new = write_doc(text, doc_blocks(checks))
            if new != text:
                write_text_atomic(DOC, new)
            print(f"{DOC}: {'rewritten' if new != text else 'already current'}", file=sys.stderr)
            return 0
    except MoebenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.code)
    if args.json:
        print(json.dumps(_finite([asdict(c) for c in checks]), indent=1))
        return 0
    print(summary_table(checks))
    print("\n" + sources_table())
    for c in checks:
        print(f"\n## {c.claim}\n")
        print("\n\n".join(c.tables))
        print("\n```bash\n" + "\n".join(c.commands) + "\n```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
