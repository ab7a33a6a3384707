"""The regression gate's statistics (docs/measure.md, asv's rule).

A metric regresses when it is worse than the baseline by more than `factor` AND the difference is
statistically significant:

- Mann-Whitney U (two-sided, p < `alpha`) on the repeated samples, when the sample sizes allow a p-value that
  small at all (the exact two-sided minimum is 2 / C(n+m, n); 6 vs 6 samples cannot reach 0.002, 7 vs 7 can);
- otherwise non-overlapping 99% intervals for the median: the distribution-free order-statistic interval when
  n ≥ 8, else a percentile bootstrap (seeded; below nominal coverage for such tiny n, and labelled so).

"Worse by more than the factor" is measured in time-equivalent terms, so a metric and its reciprocal (TPOT and
decode tokens/s) always get the same verdict: for lower-is-better metrics worse_ratio = current / baseline, for
higher-is-better ones worse_ratio = baseline / current; regression when worse_ratio > 1 + factor. A 25%
slowdown is worse_ratio 1.25 on every timing, throughput and cost metric.

Several result files on either side are pooled per record (asv runs several processes for the same reason:
process-to-process variation then shows up in the samples instead of as a false alarm). With several runs, the
factor must also hold *between the runs* (`runs_ratio`). A machine whose speed drifts from one process to the
next (a shared VM, a neighbour's job) moves whole runs, which Mann-Whitney on the pooled repeats reads as
significant; the run-to-run spread then widens the band a change must clear instead of raising a false alarm
(docs/measure.md: "a noisy machine widens the interval"):

- each run's speed is the p20 of its time-equivalent samples: load from elsewhere only adds time, so a burst
  within a run lifts its upper samples while the fast end still tracks the machine's speed in that run;
- `runs_ratio` is the one-sided 95% confidence bound for the ratio current / baseline of those run speeds that
  Mann-Whitney's null distribution gives (the Hodges-Lehmann interval, distribution-free): the k-th smallest of
  the n·m pairwise ratios, k from the exact U distribution. With 3 runs a side k = 1, i.e. the current's best
  run against the baseline's worst; with more runs the bound tightens instead of growing more extreme. With one
  run a side there is no run-to-run spread to widen anything: runs_ratio is the ratio of the medians.

A metric that is worse by more than the factor and significant, but whose runs_ratio does not clear the factor,
is `inconclusive`: not a failure, and the signal to measure more runs (the CI job does, up to a limit).

A record timed on a contended machine (moebench.machine: other processes took at least a quarter of its CPUs,
or held its GPU) cannot carry a verdict either way it was skewed: a contended current run is never `regressed`
(other processes only add time), and against a contended baseline nothing is `ok`, `improved` or `regressed`
(the reference itself is off). Those rows are `inconclusive`, naming the side and the reason.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Literal, Optional

from moebench import metrics as mt
from moebench.errors import BadInput
from moebench.machine import contended
from moebench.results import percentile, profiled

DEFAULT_FACTOR = 0.10
DEFAULT_ALPHA = 0.002
CI_LEVEL = 0.99
RUNS_LEVEL = 0.95  # one-sided confidence of the between-runs bound
RUN_QUANTILE = 20  # a run's speed: this percentile of its time-equivalent samples
# Gated by default (moebench.metrics: `gated`): the two measured latencies, the throughput a buyer pays for, and
# its price. ITL is not: its samples are the decode steps of a few repeats, not independent repeats.
DEFAULT_METRICS = mt.gated()

Better = mt.Better
Status = Literal["regressed", "improved", "inconclusive", "ok", "missing", "new", "skipped"]
RecordKey = tuple[str, int, int, int, str]  # model, batch_size, prompt_tokens, output_tokens, serving

# A share of requests (failed / sent) has no ratio to a healthy baseline's 0: it regresses when it rose by more than
# this many points, significantly. One request in a hundred failing more is a change a release must not hide.
SHARE_TOLERANCE = 0.01

def better(metric: str) -> Better:
    """Which way is good for a metric (its path in the record, dotted for nested ones: `usd_per_mtok.blended`), as
    moebench.metrics declares it; a metric it does not declare, or one with no direction, is bad input."""
    m = mt.BY_PATH.get(metric)
    if m is None or m.shape != "stat" or m.better is None:
        known = ", ".join(x.path for x in mt.stats() if x.better)
        raise BadInput(f"--metric {metric}: not a metric the gate can judge (declared in moebench.metrics: {known})")
    return m.better


def metric_stat(metrics: dict[str, Any], name: str) -> Optional[dict[str, Any]]:
    """The statistic at a dotted path (`tpot_ms`, `usd_per_mtok.blended`); None when absent or null."""
    node: Any = metrics
    for part in name.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            return None
        node = node[part]
    return node if isinstance(node, dict) and "samples" in node else None


def mann_whitney_reachable(n: int, m: int, alpha: float) -> bool:
    """Whether the exact two-sided Mann-Whitney test can give p < alpha at all with n and m samples."""
    return n > 0 and m > 0 and 2.0 / math.comb(n + m, n) < alpha


def median_ci(samples: list[float], level: float = CI_LEVEL, *, seed: int = 0) -> tuple[float, float, str]:
    """A `level` confidence interval for the median: (low, high, method).

    Order statistics x_(k) .. x_(n-k+1) with the largest k whose binomial coverage is ≥ level (distribution-free,
    needs n ≥ 8 at 99%); below that, a seeded percentile bootstrap of the median.
    """
    xs = sorted(samples)
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, "none"
    tail = (1 - level) / 2
    k, cdf = 0, 0.0  # cdf = P(Binomial(n, 1/2) <= k - 1)
    while True:
        nxt = cdf + math.comb(n, k) / 2.0**n
        if nxt > tail or k + 1 > n - k:
            break
        cdf, k = nxt, k + 1
    if k >= 1:
        return xs[k - 1], xs[n - k], "order-statistic"
    import numpy as np

    rng = np.random.default_rng(seed)
    meds = np.median(rng.choice(np.asarray(xs), size=(4000, n), replace=True), axis=1)
    return float(np.quantile(meds, tail)), float(np.quantile(meds, 1 - tail)), "bootstrap"


def shift_rank(n: int, m: int, level: float = RUNS_LEVEL) -> int:
    """k of the one-sided `level` distribution-free bound for a shift between n and m values: the largest k
    with P(U <= k - 1) <= 1 - level under Mann-Whitney's null (exact counts), at least 1."""
    # ways[u] = number of arrangements of n vs m values with U = u (the classic recurrence, built up in m)
    ways = [[1] + [0] * (i * m) for i in range(n + 1)]  # m = 0: U = 0 only
    for mm in range(1, m + 1):
        nxt = [[1] + [0] * (i * m) for i in range(n + 1)]
        for i in range(1, n + 1):
            for u in range(1, i * mm + 1):
                nxt[i][u] = (nxt[i - 1][u - mm] if u >= mm else 0) + ways[i][u]
        ways = nxt
    total, cum, k = math.comb(n + m, n), 0, 0
    for u, w in enumerate(ways[n]):
        cum += w
        if cum / total > 1 - level + 1e-12:  # 1/20 at 95% is exactly the level
            break
        k = u + 1
    return max(k, 1)


def runs_bounds(base_runs: list[float], cur_runs: list[float], level: float = RUNS_LEVEL) -> tuple[float, float]:
    """(lower, upper) one-sided `level` bounds for the ratio current / baseline of per-run values."""
    ratios = sorted(c / b for c in cur_runs for b in base_runs)
    k = shift_rank(len(base_runs), len(cur_runs), level)
    return ratios[k - 1], ratios[-k]


@dataclass(frozen=True)
class Significance:
    significant: bool
    test: str  # "mann-whitney" | "ci-order-statistic" | "ci-bootstrap"
    p_value: Optional[float]
    ci_baseline: Optional[tuple[float, float]]
    ci_current: Optional[tuple[float, float]]


def significance(base: list[float], cur: list[float], alpha: float = DEFAULT_ALPHA) -> Significance:
    """Is the difference between two sample sets significant (asv's `is_different`)?"""
    if mann_whitney_reachable(len(base), len(cur), alpha):
        from scipy.stats import mannwhitneyu

        p = float(mannwhitneyu(cur, base, alternative="two-sided").pvalue)
        return Significance(p < alpha, "mann-whitney", p, None, None)
    lo_b, hi_b, how_b = median_ci(base)
    lo_c, hi_c, how_c = median_ci(cur)
    how = "order-statistic" if how_b == how_c == "order-statistic" else "bootstrap"
    apart = lo_c > hi_b or hi_c < lo_b
    return Significance(apart, f"ci-{how}", None, (lo_b, hi_b), (lo_c, hi_c))


@dataclass(frozen=True)
class Row:
    """One verdict: a metric of one record (model × batch size × scenario)."""

    model: str
    batch_size: int
    prompt_tokens: int
    output_tokens: int
    metric: str
    better: Better
    status: Status
    serving: str = "static"
    unit: str = ""
    baseline_median: Optional[float] = None
    baseline_p20: Optional[float] = None
    baseline_p80: Optional[float] = None
    baseline_n: int = 0
    current_median: Optional[float] = None
    current_p20: Optional[float] = None
    current_p80: Optional[float] = None
    current_n: int = 0
    worse_ratio: Optional[float] = None  # > 1 means worse, in time-equivalent terms
    runs_ratio: Optional[float] = None  # the same between the runs: the 95% bound of the run-speed ratio
    baseline_runs: int = 0
    current_runs: int = 0
    test: Optional[str] = None
    p_value: Optional[float] = None
    significant: Optional[bool] = None
    ci_baseline: Optional[tuple[float, float]] = None
    ci_current: Optional[tuple[float, float]] = None
    reason: str = ""
    contended: Optional[str] = None  # why the verdict could not stand: a side timed on a contended machine
    # the side that ran contended and the verdict it held back, for the table's short line (not in the JSON, whose
    # `reason` and `contended` say it in full)
    held_back: Optional[tuple[Literal["baseline", "current run"], Status]] = None

    def verdict_line(self) -> str:
        """The row's verdict as one short line: "missing: not in the current run (the baseline has this record)";
        a verdict a busy machine held back says only that (the reason is said once, under the table)."""
        if self.held_back:
            side, status = self.held_back
            return f"{self.status}: busy {side}, else {status}"
        return f"{self.status}: {self.reason}" if self.reason else self.status


def judge(
    base: list[float], cur: list[float], *, better: Better, factor: float = DEFAULT_FACTOR, alpha: float = DEFAULT_ALPHA,
    base_runs: Optional[list[list[float]]] = None, cur_runs: Optional[list[list[float]]] = None,
) -> dict[str, Any]:
    """Verdict fields for one metric from its baseline and current samples (see the module docstring).

    `base_runs` / `cur_runs`: the same samples split by the run (result file) they came from; without them each
    side counts as one run."""
    bm, cm = percentile(base, 50), percentile(cur, 50)
    base_runs, cur_runs = base_runs or [base], cur_runs or [cur]
    out: dict[str, Any] = {
        "baseline_median": bm, "baseline_p20": percentile(base, 20), "baseline_p80": percentile(base, 80),
        "baseline_n": len(base), "current_median": cm, "current_p20": percentile(cur, 20),
        "current_p80": percentile(cur, 80), "current_n": len(cur),
        "baseline_runs": len(base_runs), "current_runs": len(cur_runs),
    }
    # every sample, not just the median: one 0 would also break 1/v below (`not x > 0` holds for NaN too)
    if any(not x > 0 for x in base):
        return {**out, "status": "skipped", "reason": "the baseline has non-positive or NaN samples: no ratio"}
    if any(not x > 0 for x in cur):  # a broken measurement must not pass as "no regression"
        return {**out, "status": "missing", "reason": "the current run has non-positive or NaN samples"}
    # in time-equivalent terms: for a higher-is-better metric the reciprocal of the values is the "time"
    t = (lambda v: v) if better == "lower" else (lambda v: 1.0 / v)
    ratio = t(cm) / t(bm)
    if len(base_runs) > 1 or len(cur_runs) > 1:
        speed = [[percentile([t(x) for x in r], RUN_QUANTILE) for r in runs if r] for runs in (base_runs, cur_runs)]
        lower, upper = runs_bounds(*speed)
    else:  # one run a side: no run-to-run spread measured, the factor and the test decide
        lower = upper = ratio
    sig = significance(base, cur, alpha)
    out.update(worse_ratio=ratio, runs_ratio=lower if ratio >= 1 else upper, test=sig.test,
               p_value=sig.p_value, significant=sig.significant, ci_baseline=sig.ci_baseline,
               ci_current=sig.ci_current)
    if ratio > 1 + factor and sig.significant:
        if lower > 1 + factor:
            return {**out, "status": "regressed", "reason": f"worse by {ratio - 1:.1%} (runs apart by ≥ {lower - 1:.1%}) > {factor:.0%}, significant"}
        return {**out, "status": "inconclusive", "reason": f"worse by {ratio - 1:.1%}, significant, but the runs are "
                f"only ≥ {lower - 1:+.1%} apart (run-to-run spread): measure more runs"}
    if ratio < 1 / (1 + factor) and upper < 1 / (1 + factor) and sig.significant:
        return {**out, "status": "improved", "reason": f"better by {1 - ratio:.1%}, significant"}
    if ratio > 1 + factor:
        why = f"worse by {ratio - 1:.1%} but not significant"
    elif ratio < 1 / (1 + factor) and sig.significant:
        why = f"better by {1 - ratio:.1%}, significant, but within the run-to-run spread"
    elif sig.significant:
        why = f"significant but within the {factor:.0%} factor ({ratio - 1:+.1%})"
    else:
        why = f"{ratio - 1:+.1%}, not significant"
    return {**out, "status": "ok", "reason": why}


def judge_share(base: list[float], cur: list[float], *, better: Better, factor: float = DEFAULT_FACTOR,
                alpha: float = DEFAULT_ALPHA, base_runs: Optional[list[list[float]]] = None,
                cur_runs: Optional[list[list[float]]] = None) -> dict[str, Any]:
    """A lower-is-better share in [0, 1] (failed requests / sent): judged by how many points it rose, since a
    healthy baseline's 0 has no ratio. Regressed when it rose by more than SHARE_TOLERANCE and significantly."""
    bm, cm = percentile(base, 50), percentile(cur, 50)
    out: dict[str, Any] = {
        "baseline_median": bm, "baseline_p20": percentile(base, 20), "baseline_p80": percentile(base, 80),
        "baseline_n": len(base), "current_median": cm, "current_p20": percentile(cur, 20),
        "current_p80": percentile(cur, 80), "current_n": len(cur),
        "baseline_runs": len(base_runs or [base]), "current_runs": len(cur_runs or [cur]),
    }
    if any(not 0 <= x <= 1 for x in (*base, *cur)):  # NaN fails both comparisons
        return {**out, "status": "missing", "reason": "a share outside [0, 1] or NaN"}
    rise = cm - bm
    sig = significance(base, cur, alpha) if set(base) != set(cur) else None  # identical samples: nothing to test
    significant = bool(sig and sig.significant)
    if sig is not None:
        out.update(test=sig.test, p_value=sig.p_value, significant=sig.significant)
    if rise > SHARE_TOLERANCE and significant:
        return {**out, "status": "regressed", "reason": f"rose by {rise:.1%} points > {SHARE_TOLERANCE:.0%}, significant"}
    if rise < -SHARE_TOLERANCE and significant:
        return {**out, "status": "improved", "reason": f"fell by {-rise:.1%} points, significant"}
    return {**out, "status": "ok", "reason": f"{rise:+.1%} points"}


def carried(docs: Iterable[dict[str, Any]], key: RecordKey, name: str) -> bool:
    """Whether any record `key` of `docs` has the metric at all, even null (a null is a gap worth a row)."""
    for doc in docs:
        for rec in doc.get("records") or []:
            node: Any = rec.get("metrics") or {}
            for part in name.split("."):  # a null on the way (`usd_per_mtok: null`) holds its leaves as null
                if node is None:
                    break
                node = node.get(part, _ABSENT) if isinstance(node, dict) else _ABSENT
            if node is not _ABSENT and record_key(rec) == key:
                return True
    return False


_ABSENT = object()


def record_key(rec: dict[str, Any]) -> RecordKey:
    """One record of a workload: two open-loop rate levels of one model and concurrency differ in `serving`."""
    return (str(rec["model"]), int(rec["batch_size"]), int(rec.get("prompt_tokens") or 0),
            int(rec.get("output_tokens") or 0), str(rec.get("serving") or "static"))


Pooled = dict[RecordKey, dict[str, tuple[list[list[float]], str]]]


def pool(docs: Iterable[dict[str, Any]], metrics: Iterable[str]) -> tuple[Pooled, dict[tuple[RecordKey, str], int]]:
    """Samples per record per metric over several result files of the same workload, one list per file (run);
    and, per (record, metric), how many runs had the record but not the metric (absent, null, no samples)."""
    pooled: Pooled = {}
    lacking: dict[tuple[RecordKey, str], int] = {}
    for doc in docs:
        for rec in doc["records"]:
            key = record_key(rec)
            slot = pooled.setdefault(key, {})
            for name in metrics:
                st = metric_stat(rec.get("metrics") or {}, name)
                if st is None or not st["samples"]:
                    lacking[(key, name)] = lacking.get((key, name), 0) + 1
                    continue
                runs, unit = slot.get(name, ([], st.get("unit", "")))
                slot[name] = (runs + [[float(x) for x in st["samples"]]], unit)
    return pooled, lacking


@dataclass
class GateResult:
    rows: list[Row]
    factor: float
    alpha: float
    metrics: tuple[str, ...]
    notes: list[str] = field(default_factory=list)

    @property
    def regressed(self) -> bool:
        return any(r.status in ("regressed", "missing") for r in self.rows)

    @property
    def verdict(self) -> str:
        """regression | inconclusive (no failure, but more runs could decide) | ok"""
        if self.regressed:
            return "regression"
        return "inconclusive" if any(r.status == "inconclusive" for r in self.rows) else "ok"

    def to_json(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for r in self.rows:
            counts[r.status] = counts.get(r.status, 0) + 1
        return {
            "verdict": self.verdict,
            "factor": self.factor,
            "alpha": self.alpha,
            "metrics": list(self.metrics),
            "counts": counts,
            "notes": self.notes,
            "rows": [{k: v for k, v in asdict(r).items() if k != "held_back"} for r in self.rows],
        }


_FINGERPRINT = (
    ("hardware", "device"), ("hardware", "dtype"), ("hardware", "kernels"), ("hardware", "n_devices"),
    ("environment", "machine"), ("environment", "cpu_count"), ("environment", "torch_threads"),
    ("environment", "hostname"),
)


def _get(doc: dict[str, Any], a: str, b: str) -> Any:
    return (doc.get(a) or {}).get(b)


def contention(docs: Iterable[dict[str, Any]]) -> dict[RecordKey, str]:
    """Per record, why it was timed on a contended machine in one of `docs` (the first such run), if it was."""
    why: dict[RecordKey, str] = {}
    for doc in docs:
        for rec in doc["records"]:
            reason = contended(rec)
            if reason and record_key(rec) not in why:
                why[record_key(rec)] = f"{doc.get('run_id')}: {reason}"
    return why


def unsettled(status: Status, base_why: Optional[str], cur_why: Optional[str]
              ) -> Optional[tuple[Literal["baseline", "current run"], str]]:
    """(the side, why) a verdict cannot stand on a contended side, or None: a contended baseline unsettles every
    judgement, a contended current run only a regression (other processes add time; a run that passes despite
    them passes)."""
    if base_why and status in ("regressed", "improved", "ok"):
        return "baseline", f"the baseline ran contended ({base_why})"
    if cur_why and status == "regressed":
        return "current run", f"the current run ran contended ({cur_why})"
    return None


def check_comparable(base_docs: list[dict[str, Any]], cur_docs: list[dict[str, Any]]) -> list[str]:
    """Refuse comparisons across hardware (that is `moebench compare`'s job); note weaker mismatches."""
    for d in (*base_docs, *cur_docs):
        if d.get("kind") not in ("engine", "endpoint"):
            raise BadInput(f"gate compares measured model runs; got a {d.get('kind')!r} result ({d.get('run_id')})")
    ids = {_get(d, "hardware", "id") for d in base_docs} | {_get(d, "hardware", "id") for d in cur_docs}
    if len(ids) > 1:
        raise BadInput(
            f"baseline and current ran on different hardware ({', '.join(sorted(map(str, ids)))}); "
            "the gate compares commits on one machine — use `moebench compare` across hardware"
        )
    notes = []
    for a, b in _FINGERPRINT:
        bv = {str(_get(d, a, b)) for d in base_docs}
        cv = {str(_get(d, a, b)) for d in cur_docs}
        if bv != cv:
            notes.append(f"{a}.{b} differs: baseline {'/'.join(sorted(bv))}, current {'/'.join(sorted(cv))}")
    bt = {str(((d["environment"].get("libraries") or {}).get("torch"))) for d in base_docs}
    ct = {str(((d["environment"].get("libraries") or {}).get("torch"))) for d in cur_docs}
    if bt != ct:
        notes.append(f"torch differs: baseline {'/'.join(sorted(bt))}, current {'/'.join(sorted(ct))}")
    for d in cur_docs:
        if not d.get("complete", False):
            notes.append(f"current run {d.get('run_id')} is incomplete ({d.get('error', 'no error recorded')})")
    bp, cp = {profiled(d) for d in base_docs}, {profiled(d) for d in cur_docs}
    if bp != cp:
        side = lambda v: "profiled" if v == {True} else "not profiled" if v == {False} else "partly profiled"
        notes.append(f"baseline {side(bp)}, current {side(cp)}: a profiled run's times include the profiler's "
                     "overhead (each record's profile.overhead); gate runs made the same way")
    return notes


def baseline_noise(base_docs: list[dict[str, Any]], metrics: Iterable[str]) -> list[tuple[float, str]]:
    """How far the baseline's own runs disagree: (max / min − 1 of the run medians, "model bB metric"), worst
    first. Above the factor, the machine's run-to-run noise is larger than the change the gate is asked to see."""
    meds: dict[tuple, list[float]] = {}
    for doc in base_docs:
        for rec in doc["records"]:
            for name in metrics:
                st = metric_stat(rec.get("metrics") or {}, name)
                if st is not None and st["median"] and st["median"] > 0:
                    meds.setdefault((rec["model"], rec["batch_size"], name), []).append(st["median"])
    out = [(max(v) / min(v) - 1, f"{m} b{b} {n}") for (m, b, n), v in meds.items() if len(v) > 1]
    return sorted(out, reverse=True)


def gate(
    base_docs: list[dict[str, Any]],
    cur_docs: list[dict[str, Any]],
    *,
    metrics: Optional[Iterable[str]] = None,
    factor: float = DEFAULT_FACTOR,
    alpha: float = DEFAULT_ALPHA,
) -> GateResult:
    """Verdict rows for every record × metric; a record of the baseline missing from the current run fails, and
    so does a metric the baseline has and the current run lacks. `metrics`: the defaults when None; a metric
    named here that no record has is bad input (a misspelt name would otherwise gate nothing)."""
    if not 0 <= factor < 10:
        raise BadInput(f"--factor {factor} must be in [0, 10)")
    if not 0 < alpha < 1:
        raise BadInput(f"--alpha {alpha} must be in (0, 1)")
    named = metrics is not None
    metrics = tuple(metrics) if named else DEFAULT_METRICS
    direction = {name: better(name) for name in metrics}
    (base, _), (cur, cur_lacking) = pool(base_docs, metrics), pool(cur_docs, metrics)
    known = {name for pooled in (base, cur) for slot in pooled.values() for name in slot}
    unknown = [name for name in metrics if name not in known] if named else []
    if unknown:
        raise BadInput(f"--metric {', '.join(unknown)}: no record on either side has it (with samples); "
                       f"gated by default: {', '.join(DEFAULT_METRICS)}")
    for d in base_docs:
        if not d.get("complete", False):
            raise BadInput(f"baseline {d.get('run_id')} is incomplete ({d.get('error', 'complete: false')}); re-record it")
    notes = check_comparable(base_docs, cur_docs)
    noisy = [(x, what) for x, what in baseline_noise(base_docs, metrics) if x > factor]
    if noisy:
        notes.append(
            f"the baseline's own {len(base_docs)} runs disagree by more than the {factor:.0%} factor on {len(noisy)} "
            f"metric(s) (worst: {', '.join(f'{w} {x:.0%}' for x, w in noisy[:3])}): this machine's run-to-run "
            "noise is larger than the change the gate is asked to resolve"
        )
    busy = contention(base_docs), contention(cur_docs)
    for side, why, held in zip(("baseline", "current"), busy, ("no verdict on them stands", "a regression on them "
                                                                "is inconclusive")):
        if why:
            notes.append(f"{side}: {len(why)} record(s) timed on a contended machine (first: {next(iter(why.values()))});"
                         f" {held} — measure again on a quiet machine")
    rows: list[Row] = []
    for key in sorted(set(base) | set(cur)):
        model, b, p, o, serving = key
        for name in metrics:
            bs, cs = base.get(key, {}).get(name), cur.get(key, {}).get(name)
            if bs is None and cs is None and not (carried(base_docs, key, name) or carried(cur_docs, key, name)):
                continue  # a default metric this kind of record does not carry at all (an engine run's failure_ratio)
            common = dict(model=model, batch_size=b, prompt_tokens=p, output_tokens=o, serving=serving, metric=name,
                          better=direction[name])
            if key not in cur:
                rows.append(Row(**common, status="missing",
                                reason="not in the current run (the baseline has this record)"))
            elif key not in base:
                rows.append(Row(**common, status="new",
                                reason="not in the baseline (only the current run has this record)"))
            elif bs is not None and (cs is None or cur_lacking.get((key, name))):
                # one current run without it is enough: the others must not paper over a broken measurement
                n = cur_lacking.get((key, name), 0)
                rows.append(Row(**common, status="missing",
                                reason=f"absent or null in {n} of the current run(s) (the baseline has it)"))
            elif bs is None:
                rows.append(Row(**common, status="skipped", reason="absent or null in the baseline: nothing to hold it to"))
            else:
                judged = judge_share if bs[1] == "fraction" and common["better"] == "lower" else judge
                v = judged([x for r in bs[0] for x in r], [x for r in cs[0] for x in r], better=common["better"],
                           factor=factor, alpha=alpha, base_runs=bs[0], cur_runs=cs[0])
                held = unsettled(v["status"], busy[0].get(key), busy[1].get(key))
                if held:
                    side, why = held
                    v.update(status="inconclusive", reason=f"{v['status']} ({v['reason']}), but {why}", contended=why,
                             held_back=(side, v["status"]))
                rows.append(Row(**common, unit=bs[1], **v))
    return GateResult(rows, factor, alpha, metrics, notes)
