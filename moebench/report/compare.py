"""Side-by-side comparison of result files: per model × batch size × scenario × serving mode, every metric, with
ratios to the first file.

Works across hardware generations (each file's hardware is a column label) and across commits (the git sha from
`environment`). A ratio is value / value-of-the-reference (the first file holding that record); whether a
ratio is good depends on the metric's direction (declared in moebench.metrics, which also says what is shown). The serving mode is part of the group:
under `static` serving (every `moebench run`) TTFT is the whole batch's prefill, under `continuous` (a
projection's default) one prompt's, so the two never share a ratio.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from moebench import metrics as mt
from moebench.errors import BadInput
from moebench.machine import contended
from moebench.report.caveats import above_roof
from moebench.report.rows import STAT_SUFFIXES, rows, run_labels, stat_of
from moebench.report.sources import source_labels
from moebench.results import profiled


SERVING_HINT = ("for a like-for-like comparison with measured runs (static batches), project with "
                "`moebench project --serving static`")


def require_records(paths: list[Path], sources: list[tuple[str, dict[str, Any]]]) -> None:
    """Refuse a file with no records (a run that recorded nothing, a projection onto nothing): a report or a
    comparison of it would be empty, and exit 0 as if it had worked. BadInput names the file."""
    where = dict(zip(source_labels(paths), paths))
    for label, d in sources:
        if not d.get("records"):
            path = (d.get("projection") or {}).get("source") or where.get(label, label)
            raise BadInput(f"{path}: no records")


def compare(sources: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """{"runs": [...], "groups": [{model, batch_size, prompt_tokens, output_tokens, serving, basis, reference,
    note, metrics: [...]}], "notes": [...]}; a group's `note` says which runs hold the same point under another
    serving mode (or None); `notes` what else differs between the runs and skews the ratios (price tier, routing,
    profiling) or limits them (partial runs), and efficiencies above a roof measured in the same run."""
    if len(sources) < 2:
        raise BadInput("compare needs at least two result files")
    labels = run_labels(sources)
    runs = []
    for src, d in sources:
        hw = d.get("hardware") or {}
        runs.append({
            "label": labels[src], "file": src, "hardware_id": hw.get("id"), "hardware_name": hw.get("name"),
            "device": hw.get("device"), "dtype": hw.get("dtype"), "kernels": hw.get("kernels"),
            "world_size": d.get("world_size"), "git_sha": d.get("git_commit"), "created_utc": d.get("created_utc"),
            "usd_per_gpu_hour": (hw.get("price") or {}).get("usd_per_gpu_hour"),
            "price_tier": (hw.get("price") or {}).get("tier"),
            "routing": (d.get("workload") or {}).get("routing"), "complete": d.get("complete"),
            "profiled": profiled(d), "contention": _contention(d),
        })
    by_key: dict[tuple, dict[str, dict[str, Any]]] = {}
    for r in rows(sources):
        key = (r["model"], r["batch_size"], r["prompt_tokens"], r["output_tokens"], r["serving"])
        by_key.setdefault(key, {})[labels[r["source_file"]]] = r
    order = [labels[src] for src, _ in sources]
    groups = []
    # the same point under two serving modes: the group whose reference comes first, first
    first = {k: min(order.index(lb) for lb in v) for k, v in by_key.items()}
    for key in sorted(by_key, key=lambda k: (str(k[0]), k[1], k[2] or 0, k[3] or 0, first[k])):
        present = by_key[key]
        ref = next(lb for lb in order if lb in present)
        metrics = []
        for metric in mt.shown_in("compare"):
            name, is_stat = metric.name, metric.shape == "stat"
            vals: dict[str, Optional[dict[str, Any]]] = {}
            for lb in order:
                r = present.get(lb)
                if r is None:
                    vals[lb] = None
                elif is_stat:
                    vals[lb] = stat_of(r, name)
                else:
                    vals[lb] = None if r.get(name) is None else {**dict.fromkeys(STAT_SUFFIXES), "median": r[name]}
            if all(v is None for v in vals.values()):
                continue
            base = vals[ref]["median"] if vals[ref] else None
            ratios = {lb: (v["median"] / base if v is not None and base else None) for lb, v in vals.items()}
            metrics.append({"metric": name, "better": metric.better, "values": vals, "ratios": ratios})
        groups.append({
            "model": key[0], "batch_size": key[1], "prompt_tokens": key[2], "output_tokens": key[3],
            "serving": key[4], "basis": {lb: present[lb]["basis"] if lb in present else None for lb in order},
            "reference": ref, "note": _elsewhere(key, by_key, order), "metrics": metrics,
        })
    roofs = [f"{labels[src]}: {line}" for src, d in sources for line in above_roof(d)]
    return {"runs": runs, "groups": groups, "notes": _mixed(runs) + roofs}


def _contention(doc: dict[str, Any]) -> dict[str, Any]:
    """{"recorded": whether the run recorded how busy the machine was, "contended": why it was (or None)}."""
    recorded = any(isinstance(r, dict) and isinstance(r.get("contention"), dict) for r in doc.get("records") or [])
    return {"recorded": recorded, "contended": contended(doc) if recorded else None}


def _mixed(runs: list[dict[str, Any]]) -> list[str]:
    """What differs between the runs besides the hardware and code being compared, and skews the ratios."""
    notes = []
    tiers = {r["label"]: r["price_tier"] for r in runs if r["usd_per_gpu_hour"] is not None}
    if len(set(tiers.values())) > 1:
        notes.append("prices come from different tiers (" + ", ".join(f"{lb}: {t or 'unknown'}" for lb, t in tiers.items())
                     + "): $/M ratios mix the hardware with the market; set one tier or price to compare hardware")
    if len({r["profiled"] for r in runs}) > 1:
        notes.append("profiled with --profile: " + ", ".join(r["label"] for r in runs if r["profiled"])
                     + "; their times include the profiler's overhead (each record's profile.overhead measured it)")
    for r in runs:
        if r["contention"]["contended"]:
            notes.append(f"{r['label']} ran on a contended machine ({r['contention']['contended']}): other processes "
                         "added to its times, so its ratios overstate any slowdown")
    incomplete = [r["label"] for r in runs if r["complete"] is False]
    if incomplete:
        notes.append("partial results (the run failed or was interrupted): " + ", ".join(incomplete))
    routings = {r["label"]: r["routing"] for r in runs if r["routing"] is not None}
    if len(set(routings.values())) > 1:
        notes.append("routing differs (" + ", ".join(f"{lb}: {x}" for lb, x in routings.items())
                     + "): expert load, and with it the time, differs by design")
    return notes


def _elsewhere(key: tuple, by_key: dict[tuple, dict[str, Any]], order: list[str]) -> Optional[str]:
    """Which runs missing from this group hold the same point under another serving mode, and the hint."""
    other = {lb: k[4] for k in by_key if k[:4] == key[:4] and k != key for lb in by_key[k] if lb not in by_key[key]}
    if not other:
        return None
    held = "; ".join(f"{mode} serving in {lb}" for lb, mode in sorted(other.items(), key=lambda kv: order.index(kv[0])))
    return (f"also under {held}: not compared, since TTFT and TPOT mean different things across serving modes; "
            f"{SERVING_HINT}")
