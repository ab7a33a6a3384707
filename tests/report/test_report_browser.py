"""The HTML report in a real browser: headless Chromium loads it from disk, runs plotly.js, draws every plot,
logs no console error and makes no network request; a screenshot is saved for a human to look at."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from moebench.cli import main

EVIL = "evil:<script>window.__pwned=1</script><img src=x onerror=window.__pwned=2>"


def write_report(tmp_path: Path, paths: list[Path]) -> Path:
    out = tmp_path / "report"
    with pytest.raises(SystemExit) as e:
        main(["report", *map(str, paths), "--out", str(out)])
    assert e.value.code == 0
    return out / "report.html"


def shot_dir(tmp_path: Path) -> Path:
    d = Path(os.environ.get("MOEBENCH_TEST_ARTIFACTS") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_report_renders_every_plot_offline_without_errors(docs, doc_factory, chromium, tmp_path, capsys):
    evil = doc_factory("h100_sxm", "H100 <b>bold</b>", 2.5, 1.3, sha="3" * 40, dense=EVIL)
    evil["workload"]["name"] = "<script>window.__pwned=3</script>"
    p = tmp_path / "evil.json"
    p.write_text(json.dumps(evil))
    html = write_report(tmp_path, [docs["h100.json"], docs["b200.json"], p])
    page = chromium(html, shot_dir(tmp_path))
    print(f"screenshot: {page.screenshot}")

    assert page.console_errors == []
    # data: URLs are in-memory images plotly.js makes for bar patterns; anything else would be a fetch
    assert [u for u in page.requests if not u.startswith(("data:", "blob:"))] == []
    # pareto, $/M by hardware, intelligence vs cost, one time breakdown, one expert-load heatmap
    assert page.expected_plots == len(page.plots) == 5
    for plot in page.plots:
        assert plot["svgs"] >= 1 and plot["traces"] >= 1 and plot["drawn"] >= 1, plot
    assert page.screenshot.stat().st_size > 50_000 and page.screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the hostile names were shown as text, never run
    assert page.values["pwned"] is None
    assert page.values["scripts"] == html.read_text().count("<script")
    assert "evil:<script>window.__pwned=1</script>" in page.values["text"]


def test_report_without_profile_or_scores_says_so(doc_factory, chromium, tmp_path):
    d = doc_factory("cpu", "CPU host", 0.1, 0.01)
    for r in d["records"]:
        r["intelligence"] = None
        r["metrics"]["intelligence_per_usd"] = None
    p = tmp_path / "plain.json"
    p.write_text(json.dumps(d))
    page = chromium(write_report(tmp_path, [p]), shot_dir(tmp_path))
    assert page.console_errors == [] and page.expected_plots == len(page.plots) == 2
    assert "no profile data" in page.values["text"] and "no intelligence scores" in page.values["text"]
