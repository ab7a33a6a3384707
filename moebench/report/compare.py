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
from moebench.report.caveats import above_roof, interpreted
from moebench.report.rows import STAT_SUFFIXES, rows, run_labels, stat_of
from moebench.report.sources import source_labels
from moebench.results import profiled


INTELLIGENCE_METRIC = "intelligence_score_per_usd_per_mtok"  # scores of different index versions never share one
SERVING_HINT = ("for a like-for-like comparison with measured runs (static batches), project with "
                "`moebench project --serving static`")


def require_records(paths: list[Path], sources: list[tuple[str, dict[str, Any]]]
                    ) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """(the sources to show, notes on those left out). A file with no records at all (a run that recorded nothing,
    a projection onto nothing that fits) is refused: a report or a comparison of it would be empty, and exit 0 as
    if it had worked. BadInput names the file. A projection's hardware where the model fits at no batch is left out
    beside the hardware where it does, with the projection's own reason."""
    where = dict(zip(source_labels(paths), paths))
    shown = {(d.get("projection") or {}).get("source") for _, d in sources if d.get("records")}
    kept, notes = [], []
    for label, d in sources:
        proj = d.get("projection") or {}
        if d.get("records"):
            kept.append((label, d))
        elif proj and proj.get("source") in shown:
            why = "; ".join(proj.get("notes") or []) or "no projected rows"
            notes.append(f"{label}: {why}; not shown")
        else:
            raise BadInput(f"{proj.get('source') or where.get(label, label)}: no records")
    return kept, notes


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
            # a projection's held-out error, which its ratios carry
            "error_band": ((d.get("projection") or {}).get("error_band") or {}).get("text"),
        })
    by_key: dict[tuple, dict[str, dict[str, Any]]] = {}
    all_rows = rows(sources)
    for r in all_rows:
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
            if metric.name == INTELLIGENCE_METRIC:  # scores of different index versions are never compared
                ratios = {lb: x if _version(present.get(lb)) == _version(present[ref]) else None
                          for lb, x in ratios.items()}
            metrics.append({"metric": name, "better": metric.better, "values": vals, "ratios": ratios})
        groups.append({
            "model": key[0], "batch_size": key[1], "prompt_tokens": key[2], "output_tokens": key[3],
            "serving": key[4], "basis": {lb: present[lb]["basis"] if lb in present else None for lb in order},
            # what per-GPU ratios divide by (a projection's layout sets it per batch size), and energy not measured
            "world_size": {lb: present[lb]["world_size"] if lb in present else None for lb in order},
            "energy_source": {lb: present[lb]["energy_source"] if lb in present else None for lb in order},
            "reference": ref, "note": _elsewhere(key, by_key, order), "metrics": metrics,
        })
    roofs = [f"{labels[src]}: {line}" for src, d in sources for line in interpreted(d) + above_roof(d)]
    bands = [f"{r['label']} is projected; how far to trust it: {r['error_band']}" for r in runs if r["error_band"]]
    return {"runs": runs, "groups": groups, "notes": _mixed(runs) + _versions(all_rows, labels) + bands + roofs}


def _versions(all_rows: list[dict[str, Any]], labels: dict[str, str]) -> list[str]:
    """A note when the runs' intelligence scores come from different index versions (their ratio is left out)."""
    versions: dict[str, set[str]] = {}
    for r in all_rows:
        if r.get("intelligence_version") is not None:
            versions.setdefault(labels[r["source_file"]], set()).add(f"{r['intelligence_index']} {r['intelligence_version']}")
    if len(set().union(*versions.values()) if versions else ()) < 2:
        return []
    return ["intelligence scores come from different index versions ("
            + ", ".join(f"{lb}: {', '.join(sorted(v))}" for lb, v in versions.items())
            + "): no score-per-$ ratio between them"]


def _version(row: Optional[dict[str, Any]]) -> Optional[tuple]:
    return None if row is None else (row.get("intelligence_index"), row.get("intelligence_version"))


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
    for i, r in enumerate(runs):
        if r["contention"]["contended"]:
            # the first run is the reference of its groups: its slow times are the denominator of the ratios
            effect = ("as the reference, it makes the others' ratios understate any slowdown and overstate any speedup"
                      if i == 0 else "so its ratios overstate any slowdown")
            notes.append(f"{r['label']} ran on a contended machine ({r['contention']['contended']}): other processes "
                         f"added to its times, {effect}")
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
