"""Layers point down: no import cycle between moebench's top-level packages and modules (engine, bench,
workload, …), counting imports at any depth, lazy ones included."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "moebench"

def _unit(module: str) -> str | None:
    """moebench.engine.runner -> engine; moebench.workload -> workload; anything else -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "moebench" else None


def import_graph(pkg: Path = PKG) -> dict[str, set[str]]:
    """Top-level unit -> the other top-level units its files import."""
    edges: dict[str, set[str]] = {}
    for path in pkg.rglob("*.py"):
        rel = path.relative_to(pkg.parent).with_suffix("")
        src = _unit(".".join(rel.parts))
        if src is None:  # moebench/__init__.py, __main__.py
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                dst = _unit(t)
                if dst and dst != src:
                    edges.setdefault(src, set()).add(dst)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one unit (each a cycle or several), sorted."""
    reach = {u: _reachable(edges, u) for u in edges}
    seen: set[str] = set()
    out = []
    for u in sorted(reach):
        comp = sorted(v for v in reach[u] if u in reach.get(v, ()))
        if u in comp and u not in seen:
            seen.update(comp)
            if len(comp) > 1:
                out.append(comp)
    return out


def _reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    todo, got = [start], set()
    while todo:
        for v in edges.get(todo.pop(), ()):
            if v not in got:
                got.add(v)
                todo.append(v)
    return got


def test_the_cycle_finder_sees_a_lazy_import_cycle(tmp_path):
    pkg = tmp_path / "moebench"
    (pkg / "low").mkdir(parents=True)
    (pkg / "high").mkdir()
    (pkg / "high" / "a.py").write_text("from moebench.low.b import f\n")
    (pkg / "low" / "b.py").write_text("def f():\n    from moebench.high import a\n")
    (pkg / "leaf.py").write_text("import moebench.low\n")
    assert cycles(import_graph(pkg)) == [["high", "low"]]


def test_no_import_cycle_between_top_level_packages():
    assert cycles(import_graph()) == [], "a lower layer imports a higher one; move the shared helper down a floor"
