"""Side-by-side comparison of result files: per model × batch size, every metric, with ratios to the first file.

Works across hardware generations (each file's hardware is a column label) and across commits (the git sha from
`environment`). A ratio is value / value-of-the-reference (the first file holding that record); whether a
ratio is good depends on the metric's direction (`moebench.gate.better`).
"""

from __future__ import annotations

from typing import Any, Optional

from moebench.errors import BadInput
from moebench.gate import better
from moebench.report.rows import EFFICIENCY, METRICS, rows, run_labels

# (CSV column stem, path in `metrics` for the direction) of what a comparison shows; names carry the units.
SHOWN: tuple[tuple[str, str], ...] = tuple((name, path) for name, path in METRICS) + tuple(
    (name, key) for name, key in EFFICIENCY if name.endswith("_fraction")
)


def compare(sources: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """{"runs": [...], "groups": [{model, batch_size, prompt_tokens, output_tokens, metrics: [...]}]}."""
    if len(sources) < 2:
        raise BadInput("compare needs at least two result files")
    labels = run_labels(sources)
    runs = []
    for src, d in sources:
        hw, env = d.get("hardware") or {}, d.get("environment") or {}
        runs.append({
            "label": labels[src], "file": src, "hardware_id": hw.get("id"), "hardware_name": hw.get("name"),
            "device": hw.get("device"), "dtype": hw.get("dtype"), "kernels": hw.get("kernels"),
            "world_size": d.get("world_size"), "git_sha": env.get("git_sha"), "created_utc": d.get("created_utc"),
            "usd_per_gpu_hour": (hw.get("price") or {}).get("usd_per_gpu_hour"), "complete": d.get("complete"),
        })
    by_key: dict[tuple, dict[str, dict[str, Any]]] = {}
    for r in rows(sources):
        key = (r["model"], r["batch_size"], r["prompt_tokens"], r["output_tokens"])
        by_key.setdefault(key, {})[labels[r["source_file"]]] = r
    order = [labels[src] for src, _ in sources]
    groups = []
    for key in sorted(by_key, key=lambda k: (str(k[0]), k[1], k[2] or 0, k[3] or 0)):
        present = by_key[key]
        ref = next(lb for lb in order if lb in present)
        metrics = []
        for name, path in SHOWN:
            is_stat = not name.endswith("_fraction")
            vals: dict[str, Optional[dict[str, Any]]] = {}
            for lb in order:
                r = present.get(lb)
                if r is None:
                    vals[lb] = None
                elif is_stat:
                    med = r.get(f"{name}_median")
                    vals[lb] = None if med is None else {
                        "median": med, "p20": r.get(f"{name}_p20"), "p80": r.get(f"{name}_p80"), "n": r.get(f"{name}_n")}
                else:
                    vals[lb] = None if r.get(name) is None else {"median": r[name], "p20": None, "p80": None, "n": None}
            if all(v is None for v in vals.values()):
                continue
            base = vals[ref]["median"] if vals[ref] else None
            ratios = {lb: (v["median"] / base if v is not None and base else None) for lb, v in vals.items()}
            metrics.append({"metric": name, "better": better(path), "values": vals, "ratios": ratios})
        groups.append({
            "model": key[0], "batch_size": key[1], "prompt_tokens": key[2], "output_tokens": key[3],
            "basis": {lb: present[lb]["basis"] if lb in present else None for lb in order},
            "reference": ref, "metrics": metrics,
        })
    return {"runs": runs, "groups": groups}
