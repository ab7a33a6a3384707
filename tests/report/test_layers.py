"""Layers point down: report/ formats its own numbers (no import of cli/), and the result schema and the metric
table, which every producer and consumer imports, import nothing above them."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "moebench"


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("moebench")}


def test_report_does_not_import_the_cli():
    bad = {f.name: sorted(m for m in _imports(f) if m.startswith("moebench.cli")) for f in (PKG / "report").glob("*.py")}
    assert {k: v for k, v in bad.items() if v} == {}


def test_results_and_metrics_import_only_the_bottom_layer():
    allowed = {"moebench", "moebench.errors"}
    for f in [PKG / "metrics.py", *(PKG / "results").glob("*.py")]:
        above = {m for m in _imports(f) if m not in allowed and not m.startswith("moebench.results")}
        assert not above, f"{f.name} imports {sorted(above)}"
