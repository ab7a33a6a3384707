"""Result documents → flat rows: one per model × batch size × hardware (× result file), units in every name.

The metric columns come from moebench.metrics; docs/report.md lists `COLUMNS` (a test checks the two agree).
Every metric statistic becomes six columns `<metric>_median`, `_p20`, `_p80`, `_p90`, `_p99`, `_n`. A metric a later
schema adds and this list does not know yet is appended by the same rule, so nothing measured is silently dropped.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Iterable, Optional

from moebench import metrics
from moebench.results import write_text_atomic

STAT_SUFFIXES = metrics.STAT_SUFFIXES

IDENTITY: tuple[str, ...] = (
    "source_file", "run_id", "created_utc", "git_sha", "moebench_version", "workload", "complete",
    "hardware_id", "hardware_name", "device", "dtype", "kernels", "world_size",
    "usd_per_gpu_hour", "price_tier",
    "model", "kind", "basis", "error_band", "serving", "layers_run", "layers_total", "batch_size", "prompt_tokens", "output_tokens",
    "params_total", "params_active", "active_ratio",
    "intelligence_score", "intelligence_index", "intelligence_version",
    "energy_source", "energy_basis", "contended",
)

COLUMNS: tuple[str, ...] = (
    IDENTITY
    + tuple(f"{m.name}_{s}" for m in metrics.stats() for s in STAT_SUFFIXES)
    + tuple(m.name for m in metrics.scalars())
)

# Text columns a reader must not let pandas guess: an all-digit git sha would become an integer.
CSV_DTYPES: dict[str, str] = {"git_sha": "str", "run_id": "str", "source_file": "str", "model": "str"}

_KNOWN_METRIC_KEYS = {m.path.split(".")[0] for m in metrics.METRICS}


def record_row(doc: dict[str, Any], rec: dict[str, Any], source: str = "") -> dict[str, Any]:
    """One flat row for one record of one result document (missing values are None)."""
    hw = doc.get("hardware") or {}
    price = hw.get("price") or {}
    params = rec.get("params") or {}
    intel = rec.get("intelligence") or {}
    m = rec.get("metrics") or {}
    row: dict[str, Any] = {
        "source_file": source,
        "run_id": doc.get("run_id"),
        "created_utc": doc.get("created_utc"),
        "git_sha": doc.get("git_commit"),
        "moebench_version": doc.get("moebench_version"),
        "workload": (doc.get("workload") or {}).get("name"),
        "complete": doc.get("complete"),
        "hardware_id": hw.get("id"),
        "hardware_name": hw.get("name"),
        "device": hw.get("device"),
        "dtype": short_dtype(hw.get("dtype")),
        "kernels": hw.get("kernels"),
        # a projection picks its GPU count per batch size (the record's layout), not once per file
        "world_size": doc.get("world_size") or (rec.get("cost") or {}).get("n_gpus"),
        "usd_per_gpu_hour": price.get("usd_per_gpu_hour"),
        "price_tier": price.get("tier"),
        "model": rec.get("model"),
        "kind": rec.get("kind"),
        "basis": rec.get("basis"),
        "error_band": ((doc.get("projection") or {}).get("error_band") or {}).get("text"),
        "serving": rec.get("serving"),
        "layers_run": rec.get("layers_run"),
        "layers_total": rec.get("layers_total"),
        "batch_size": rec.get("batch_size"),
        "prompt_tokens": rec.get("prompt_tokens"),
        "output_tokens": rec.get("output_tokens"),
        "params_total": params.get("total"),
        "params_active": params.get("active"),
        "active_ratio": params.get("active_ratio"),
        "intelligence_score": intel.get("score"),
        "intelligence_index": intel.get("index"),
        "intelligence_version": intel.get("version"),
        # how J/token was obtained: a counter (nvml, rapl, dcgm), the catalog's power (estimated), or not at all
        "energy_source": rec.get("energy_source"),
        "energy_basis": (m.get("joules_per_token") or {}).get("basis"),
        "contended": (rec.get("contention") or {}).get("contended"),
    }
    for metric in metrics.stats():
        st = metrics.at(m, metric.path)
        for s in STAT_SUFFIXES:
            row[f"{metric.name}_{s}"] = st.get(s) if isinstance(st, dict) else None
    for metric in metrics.scalars():
        row[metric.name] = metrics.at(m, metric.path)
    for key in sorted(set(m) - _KNOWN_METRIC_KEYS):  # metrics newer than this list: same naming rule
        st = m[key]
        if isinstance(st, dict) and "median" in st:
            for s in STAT_SUFFIXES:
                row[f"{key}_{s}"] = st.get(s)
    return row


def rows(docs: Iterable[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Rows for (source name, result document) pairs, in file then record order."""
    return [record_row(doc, rec, src) for src, doc in docs for rec in doc.get("records", [])]


def columns(rs: list[dict[str, Any]]) -> list[str]:
    """The documented columns, then any extra metric columns in first-seen order."""
    cols = list(COLUMNS)
    seen = set(cols)
    for r in rs:
        for k in r:
            if k not in seen:
                seen.add(k)
                cols.append(k)
    return cols


def write_csv(rs: list[dict[str, Any]], path: str | Path) -> Path:
    """Write rows as CSV (empty cells for missing values); returns the path."""
    cols = columns(rs)
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="raise", restval="")
    w.writeheader()
    for r in rs:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    return write_text_atomic(path, buf.getvalue())


def run_labels(sources: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """A short, unique name per result file for legends and column heads: the hardware; plus the commit (or, for
    projections, which have none, the file) when two share the hardware; plus the run's start time, then a
    position, when those match too."""
    def hw(doc):
        return str((doc.get("hardware") or {}).get("name") or (doc.get("hardware") or {}).get("id"))

    def which(src, doc):
        sha = doc.get("git_commit")
        return f"@{sha[:7]}" if sha else f"({src.split(' [')[0]})"

    def when(doc):
        t = str(doc.get("created_utc") or "")
        return t[11:19] if len(t) >= 19 else t

    first = {src: hw(doc) for src, doc in sources}
    second = {src: f"{hw(doc)} {which(src, doc)}" if list(first.values()).count(first[src]) > 1 else first[src]
              for src, doc in sources}
    third = {src: f"{second[src]} {when(doc)}".rstrip() if list(second.values()).count(second[src]) > 1 else second[src]
             for src, doc in sources}
    return {src: f"{third[src]} #{i + 1}" if list(third.values()).count(third[src]) > 1 else third[src]
            for i, (src, _) in enumerate(sources)}


def value(row: dict[str, Any], name: str, stat: str = "median") -> Optional[float]:
    v = row.get(f"{name}_{stat}")
    return None if v is None else float(v)


def stat_of(row: dict[str, Any], name: str) -> Optional[dict[str, Any]]:
    """The row's columns of one metric as a statistic {median, p20, p80, p90, p99, n}, or None when it has none."""
    return None if row.get(f"{name}_median") is None else {s: row.get(f"{name}_{s}") for s in STAT_SUFFIXES}


def _several(st: Optional[dict[str, Any]], *keys: str) -> bool:
    # one value (a projection, a single repeat) has no spread and no tail worth printing: "22.6 (22.6–22.6)"
    return bool(st) and (st.get("n") or 0) > 1 and all(st.get(k) is not None for k in keys)


def spread_of(st: Optional[dict[str, Any]]) -> Optional[tuple[float, float]]:
    """(p20, p80) of a statistic, or None when it is a single value or p20 == p80."""
    return (st["p20"], st["p80"]) if _several(st, "p20", "p80") and st["p20"] != st["p80"] else None


def tail_of(st: Optional[dict[str, Any]]) -> Optional[tuple[float, float]]:
    """(p90, p99) of a statistic, or None when it is a single value or a file older than p90/p99."""
    return (st["p90"], st["p99"]) if _several(st, "p90", "p99") else None


def short_dtype(name: Any) -> Any:
    """`bfloat16` (what a run records) and `bf16` (what a projection records) as one spelling: bf16, fp32, …"""
    from moebench.errors import BadInput
    from moebench.projection.device import norm_dtype

    if not isinstance(name, str):
        return name
    try:
        return norm_dtype(name)
    except BadInput:
        return name


def per_unit(device: Any) -> str:
    """What "per GPU" counts for a run on `device` (MEASURE.md: on CPU, say which): a GPU, or on CPU a process
    (rank) — a projection is always per GPU."""
    return "process" if str(device or "").startswith("cpu") else "GPU"
