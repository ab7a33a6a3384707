"""`moebench ls {models,hardware,workloads,kernels,metrics}`: what moebench knows, and where each comes from."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from moebench.cli._output import emit_json, fmt_params, out


_INDEX = {"artificial-analysis-intelligence-index": "AA index"}  # short names for the table


class What(str, enum.Enum):
    models = "models"
    hardware = "hardware"
    workloads = "workloads"
    kernels = "kernels"
    metrics = "metrics"


def _models() -> list[dict[str, Any]]:
    from moebench.catalog import reference_models
    from moebench.models import registry

    reg, refs, rows = registry(), reference_models(), []
    entries = reg.entries()
    for fam in reg.names():
        spec = reg.load(fam)
        for flavor, cfg in spec.flavors.items():
            name = f"{fam}:{flavor}"
            ref = refs.get(name)
            rows.append({
                "name": name,
                "kind": spec.kind,
                "total_params": cfg.total_params(),
                "active_params": cfg.active_params(),
                "layers": cfg.num_hidden_layers,
                "hf_repo": ref.hf_repo if ref else None,
                "published_total_params": ref.published_params.get("published_total") if ref else None,
                "published_active_params": ref.published_params.get("published_active") if ref else None,
                "intelligence": [s.model_dump() for s in ref.intelligence] if ref else [],
                "source": f"{entries[fam].dist} ({entries[fam].target})",
                "config_source": ref.sources[0] if ref else "debug flavor defined in the family module",
            })
    return rows


def _hardware() -> list[dict[str, Any]]:
    from moebench.catalog import hardware_catalog

    rows = []
    for hid, hw in hardware_catalog().items():
        d = hw.model_dump(mode="json")
        d["source"] = hw.sources[0]
        rows.append(d)
    return rows


def _workloads() -> list[dict[str, Any]]:
    from moebench.errors import BadInput
    from moebench.workload import load_workload

    from moebench.cli.run import REPO_WORKLOADS

    # the folder `run` takes its default from: the working directory's workloads/, else the repository's
    root = Path("workloads") if Path("workloads").is_dir() else REPO_WORKLOADS
    rows = []
    for p in sorted(root.rglob("*.yaml")):
        try:
            wl = load_workload(p, resolve=False)
            rows.append({"name": wl.name, "kind": wl.kind, "path": str(p), "valid": True, "error": None})
        except BadInput as exc:
            rows.append({"name": p.stem, "kind": None, "path": str(p), "valid": False, "error": str(exc)})
    return rows


def _kernels() -> list[dict[str, Any]]:
    from moebench.registry import Registry

    reg = Registry("moebench.kernels")
    return [{"name": n, "target": e.target, "source": e.dist} for n, e in reg.entries().items()]


def _metrics() -> list[dict[str, Any]]:
    from dataclasses import asdict

    from moebench.metrics import METRICS

    return [asdict(m) for m in METRICS]


def register(app: typer.Typer) -> None:
    @app.command("ls")
    def ls(
        what: What = typer.Argument(..., help="models | hardware | workloads | kernels | metrics"),
        json_: bool = typer.Option(False, "--json", help="Print one JSON document."),
    ) -> None:
        """List models, hardware, workloads, kernel backends or metrics, with where each comes from."""
        rows = {"models": _models, "hardware": _hardware, "workloads": _workloads, "kernels": _kernels,
                "metrics": _metrics}[what.value]()
        if json_:
            emit_json(rows)
            return
        t = Table(title=f"moebench {what.value}")
        if what is What.models:
            t.caption = "intelligence: score (index version, as scored); sources: moebench ls models --json"
            t.caption_justify = "left"
            for c in ("name", "kind", "total", "active", "layers", "published total/active", "intelligence", "source"):
                t.add_column(c)
            for r in rows:
                pub = f"{fmt_params(r['published_total_params'])}/{fmt_params(r['published_active_params'])}" if r["published_total_params"] else "—"
                intel = "\n".join(f"{s['score']:g} ({_INDEX.get(s['index'], s['index'])} {s['version']}, {s['scored_as']})"
                                   for s in r["intelligence"]) or "—"
                t.add_row(r["name"], r["kind"], fmt_params(r["total_params"]), fmt_params(r["active_params"]),
                          str(r["layers"]), pub, intel, r["source"])
        elif what is What.hardware:
            t.caption = ("$/GPU-h per price tier with its date, the first tier the default; every price's source "
                         "and the spec sources: moebench ls hardware --json")
            t.caption_justify = "left"
            for c in ("id", "name", "bf16 TFLOP/s", "HBM TB/s", "HBM GB", "scale-up", "$/GPU-h: tier (date)", "spec source"):
                t.add_column(c)
            for r in rows:
                prices = "\n".join(f"{p['usd_per_gpu_hour']}: {p['tier']} ({p['date']})" for p in r["prices"])
                su = r["scale_up"]
                t.add_row(r["id"], r["name"], str(r["peak_tflops"].get("bf16") or "—"), str(r["hbm_tbps"] or "—"),
                          str(r["hbm_gb"] or "—"), f"{su['gbps_uni']} GB/s ×{su['domain_size']}" if su else "—",
                          prices or "user-set", r["source"])
        elif what is What.workloads:
            for c in ("name", "kind", "path", "valid"):
                t.add_column(c)
            for r in rows:
                t.add_row(r["name"], str(r["kind"]), r["path"], "yes" if r["valid"] else f"no: {r['error']}")
        elif what is What.metrics:
            t.caption = "declared once in moebench/metrics.py; definitions: docs/measure.md"
            t.caption_justify = "left"
            for c in ("name", "unit", "better", "gated", "definition"):
                t.add_column(c)
            for r in rows:
                t.add_row(r["name"], r["unit"], r["better"] or "—", "yes" if r["gated"] else "", r["definition"])
        else:
            for c in ("name", "target", "source"):
                t.add_column(c)
            for r in rows:
                t.add_row(r["name"], r["target"], r["source"])
        out.print(t)
