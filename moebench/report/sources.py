"""What `report` and `compare` read: result files (`moebench run`) and projections (`moebench project --json`).

A projection document (kind `projection`: one model, several hardware entries, records with basis `projected`)
becomes one result-shaped document per hardware entry, so projected rows sit next to measured ones in every
table and plot — always labelled `projected`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from moebench.errors import BadInput
from moebench.results import SCHEMA_VERSION, load_result


def source_labels(paths: list[Path]) -> list[str]:
    """File names, made unique with their parent folder, then a position, when two share a name."""
    names = [p.name for p in paths]
    labels = [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]
    return [f"{lb}#{i + 1}" if labels.count(lb) > 1 else lb for i, lb in enumerate(labels)]


def _score(model: str) -> Optional[dict[str, Any]]:
    """The catalog's default intelligence score (as `moebench run` resolves it by default), or None."""
    from moebench.catalog import reference_models

    ref = reference_models().get(model)
    s = ref.score("v3") if ref else None
    return None if s is None else {"score": s.score, "index": s.index, "version": s.version, "source": s.source}


def from_projection(doc: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """One result-shaped document per hardware entry of a `moebench project --json` document."""
    model = doc.get("model")
    params = doc.get("params") or {}
    total, active = params.get("total"), params.get("active")
    kind = "moe" if total and active and active < total else "dense"
    sc = doc.get("scenario") or {}
    intel = _score(str(model))
    out = []
    for hw in doc.get("hardware") or []:
        records = []
        for r in hw.get("records") or []:
            records.append({
                **r, "kind": kind, "basis": "projected",
                "params": {"total": total, "active": active,
                           "active_ratio": active / total if total and active else None},
                "intelligence": intel,
            })
        out.append({
            "schema_version": SCHEMA_VERSION, "complete": True, "kind": "model",
            "run_id": f"projection-{model}-{hw.get('id')}", "created_utc": None,
            "workload": {"name": f"projection of {model}", "scenario": sc},
            "hardware": {"id": hw.get("id"), "name": hw.get("name"), "device": "projected",
                         "dtype": sc.get("weight_dtype"), "kernels": "analytic", "price": hw.get("price")},
            "environment": {"moebench_version": doc.get("moebench_version"), "git_sha": None},
            "world_size": None,
            "records": records,
            "projection": {"source": source, "calibration": (doc.get("calibration") or {}).get("source")},
        })
    return out


def load_sources(paths: list[Path]) -> list[tuple[str, dict[str, Any]]]:
    """(label, result document) for every file; a projection file gives one per hardware it projects onto."""
    out: list[tuple[str, dict[str, Any]]] = []
    for label, p in zip(source_labels(paths), paths):
        try:
            out.append((label, load_result(p)))
            continue
        except BadInput:
            proj = _projection(p)
            if proj is None:
                raise
        docs = from_projection(proj, str(p))
        if not docs:
            raise BadInput(f"{p}: projection has no hardware entries")
        out += [(f"{label} [{d['hardware']['id']}]" if len(docs) > 1 else label, d) for d in docs]
    for label, d in out:
        if d.get("kind", "model") != "model":
            raise BadInput(f"{label}: reports read model results and projections; this is a {d.get('kind')!r} result")
    return out


def _projection(p: Path) -> Optional[dict[str, Any]]:
    try:
        doc = json.loads(Path(p).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) and doc.get("kind") == "projection" else None
