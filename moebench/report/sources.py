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
from moebench.results import RECORD_KINDS, is_number, is_whole, load_result, make_record, new_doc, stat
from moebench.results.schema import records_problem


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


def _layers(model: str) -> Optional[int]:
    """Layers of the full model (a projection models every layer), or None for a model this install lacks."""
    from moebench.projection import resolve_config

    try:
        return resolve_config(model).full().num_hidden_layers
    except BadInput:
        return None


def _allin_kw(hardware_id: Any) -> Optional[float]:
    from moebench.catalog import get_hardware

    try:
        return get_hardware(str(hardware_id)).allin_kw_per_gpu
    except BadInput:
        return None


def _price(price: dict[str, Any]) -> dict[str, Any]:
    # `project --price` records no tier; a price the user gave is `explicit`, as in a workload's price
    explicit = price.get("usd_per_gpu_hour") is not None and price.get("tier") is None
    return {**price, "tier": "explicit"} if explicit else price


def _derived(rec: dict[str, Any], intel: Optional[dict[str, Any]], allin_kw: Optional[float]) -> dict[str, Any]:
    """What a measured record has and a projected one lacks, by the measured records' own formulas, from the
    projection's prefill(B) and decode step times (its TTFT and TPOT under continuous serving are not those)."""
    from moebench.engine.records import Pricing, rate_metrics

    phases = rec.get("phases") or {}
    pre, step = ((phases.get(k) or {}).get("time_ms") for k in ("prefill", "decode"))
    cost = rec.get("cost") or {}
    n = cost.get("n_gpus")
    counts = (rec.get("batch_size"), rec.get("prompt_tokens"), rec.get("output_tokens"))
    if not all(is_number(v) and v > 0 for v in (pre, step, n)) or not all(is_whole(v) and v > 0 for v in counts):
        return {}  # an older (or hand-edited) projection without phase times or token counts: only what it states
    pricing = Pricing(cost.get("usd_per_gpu_hour"), cost.get("tier"), cost.get("source"), n, allin_kw)
    return rate_metrics(stat([pre], "projected", "ms"), stat([step], "projected", "ms"), batch=rec["batch_size"],
                        prompt=rec["prompt_tokens"], output=rec["output_tokens"], pricing=pricing,
                        intelligence=intel, basis="projected")


_IDENTITY = ("model", "kind", "basis", "serving", "batch_size", "prompt_tokens", "output_tokens", "metrics")


def from_projection(doc: dict[str, Any], source: str, file: Optional[str] = None) -> list[dict[str, Any]]:
    """One result-shaped document per hardware entry of a `moebench project --json` document (checked first:
    BadInput names what is wrong). `file` is the file's label in the report (default `source`)."""
    problem = _projection_problem(doc)
    if problem:
        raise BadInput(f"{source}: corrupt projection ({problem})")
    model = doc.get("model")
    params = doc.get("params") or {}
    total, active = params.get("total"), params.get("active")
    kind = "moe" if total and active and active < total else "dense"
    sc = doc.get("scenario") or {}
    assumptions = doc.get("assumptions") or {}
    serving = assumptions.get("serving", "continuous")  # the projection's default before it was written down
    intel = _score(str(model))
    layers = _layers(str(model))
    out = []
    for hw in doc.get("hardware") or []:
        allin_kw = _allin_kw(hw.get("id"))
        records = []
        for r in hw.get("records") or []:
            r = {**r, "cost": _price(r.get("cost") or {})}
            stated = {k: v for k, v in r["metrics"].items() if v is not None}
            # a projection computes no J/token: say so in its rows, as a run without an energy counter does
            sections = {"energy_source": "not measured", **{k: v for k, v in r.items() if k not in _IDENTITY}}
            records.append(make_record(
                model=r["model"], kind=kind, basis="projected", serving=serving, batch_size=r["batch_size"],
                prompt_tokens=r.get("prompt_tokens"), output_tokens=r.get("output_tokens"),
                **{**sections, "layers_run": layers, "layers_total": layers,
                   "params": {"total": total, "active": active,
                              "active_ratio": active / total if total and active else None},
                   "intelligence": intel},
                metrics={**_derived(r, intel, allin_kw), **stated},
            ))
        out.append(new_doc(
            kind="projection", complete=True, run_id=f"projection-{model}-{hw.get('id')}", created_utc=None,
            moebench_version=doc.get("moebench_version"), git_commit=None, environment={},
            workload={"name": f"projection of {model}", "scenario": sc},
            hardware={"id": hw.get("id"), "name": hw.get("name"), "device": "projected",
                      "dtype": sc.get("weight_dtype"), "kernels": "analytic", "price": _price(hw.get("price") or {})},
            world_size=None, records=records,
            projection={"source": source, "file": file or source,
                        "calibration": (doc.get("calibration") or {}).get("source"),
                        "serving": serving, "comm_overlap": assumptions.get("comm_overlap"),
                        # the held-out error of the fitted presets for this hardware (None when calibrated)
                        "error_band": hw.get("error_band"),
                        "notes": hw.get("notes") or []},
        ))
    return out


def _projection_problem(doc: dict[str, Any]) -> Optional[str]:
    """What is wrong with the parts of a projection document the report reads, or None."""
    for key in ("params", "scenario", "assumptions", "calibration"):
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            return f"{key} is {doc[key]!r}, not an object"
    if not isinstance(doc.get("model"), str):
        return "model is not a string"
    hardware = doc.get("hardware")
    if not isinstance(hardware, list):
        return f"hardware is {hardware!r}, not a list"
    for i, hw in enumerate(hardware):
        if not isinstance(hw, dict):
            return f"hardware[{i}] is {hw!r}, not an object"
        for key in ("price", "error_band"):
            if hw.get(key) is not None and not isinstance(hw[key], dict):
                return f"hardware[{i}].{key} is {hw[key]!r}, not an object"
        problem = records_problem(hw.get("records", []))
        if problem:
            return f"hardware[{i}].{problem}"
        for j, rec in enumerate(hw.get("records", [])):
            at = f"hardware[{i}].records[{j}]"
            for key in ("cost", "phases"):
                if rec.get(key) is not None and not isinstance(rec[key], dict):
                    return f"{at}.{key} is {rec[key]!r}, not an object"
            for key in ("prefill", "decode"):
                phase = (rec.get("phases") or {}).get(key)
                if phase is not None and not isinstance(phase, dict):
                    return f"{at}.phases.{key} is {phase!r}, not an object"
            for key in ("usd_per_gpu_hour", "n_gpus"):
                v = (rec.get("cost") or {}).get(key)
                if v is not None and not is_number(v):
                    return f"{at}.cost.{key} is {v!r}, not a number"
    return None


def files_text(sources: list[tuple[str, dict[str, Any]]]) -> str:
    """"4 file(s)", or "4 file(s) (5 runs: …)" when a projection file gave one source per hardware it projects onto;
    the HTML page and the command's log line say the same."""
    n = len({(d.get("projection") or {}).get("file") or label for label, d in sources})
    return f"{n} file(s)" + (f" ({len(sources)} runs: a projection gives one per hardware)" if len(sources) != n else "")


def result_files(paths: list[Path]) -> list[Path]:
    """A folder stands for the result files in it (a baseline recorded as several pooled runs, a runs folder)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(p.glob("*.json"))
            if not found:
                raise BadInput(f"{p}: no result files (*.json) in this folder")
            out.extend(found)
        else:
            out.append(p)
    return out


def load_sources(paths: list[Path]) -> list[tuple[str, dict[str, Any]]]:
    """(label, result document) for every file; a projection file gives one per hardware it projects onto."""
    out: list[tuple[str, dict[str, Any]]] = []
    for label, p in zip(source_labels(paths), paths):
        try:
            out.append((label, load_result(p)))
            continue
        except BadInput:
            proj = read_projection(p)
            if proj is None:
                raise
        docs = from_projection(proj, str(p), label)
        if not docs:
            raise BadInput(f"{p}: projection has no hardware entries")
        out += [(f"{label} [{d['hardware']['id']}]" if len(docs) > 1 else label, d) for d in docs]
    for label, d in out:
        if d["kind"] not in RECORD_KINDS:
            raise BadInput(f"{label}: reports read model results and projections; this is a {d['kind']!r} result")
    return out


def read_projection(p: Path) -> Optional[dict[str, Any]]:
    """The `moebench project --json` document in `p`, or None when `p` holds none."""
    try:
        doc = json.loads(Path(p).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) and doc.get("kind") == "projection" else None
