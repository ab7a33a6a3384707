"""The HTML report as a file: self-contained, escaped, basis visible (no browser needed)."""

from __future__ import annotations

import re

from moebench.report.format import fmt
from moebench.report.html import render
from moebench.report.rows import rows
from moebench.results import stat

EVIL = "evil:<script>alert('x')</script>"


def _render(docs):
    sources = [(f"f{i}.json", d) for i, d in enumerate(docs)]
    return render(sources, rows(sources))


def test_model_name_with_script_tag_is_escaped_everywhere(doc_factory):
    d = doc_factory("h100_sxm", "H100 <i>x</i>", 2.5, 1.0, dense=EVIL, profile=True)
    d["workload"]["name"] = "</script><script>alert(2)</script>"
    d["profile"]["models"][0]["model"] = EVIL
    html = _render([d])
    assert "<script>alert" not in html and "</script><script>alert(2)" not in html
    assert "<i>x</i>" not in html
    assert "evil:&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html  # tables: html.escape
    assert "evil:&lt;script&gt;alert(&#x27;x&#x27;)&lt;\\u002fscript&gt;" in html  # figure JSON: escaped twice
    # every <script> in the page is one of ours: plotly.js, one per plot, the plot counter
    n_plots = len(re.findall(r'data-plot="', html))
    assert html.count("<script") == 1 + n_plots + 1


def test_self_contained_no_external_urls(doc_factory):
    html = _render([doc_factory("h100_sxm", "H100", 2.5, 1.0)])
    # (the plotly.js bundle mentions cdn.plot.ly as a default for geo maps, which the report never draws)
    assert "<script src" not in html and 'src="http' not in html and "<link" not in html
    assert "plotly.js v" in html[:200_000] or "Plotly" in html[:200_000]  # the library is inlined


def test_basis_is_visible_in_table_rows(doc_factory):
    html = _render([doc_factory("b200", "B200", 4.0, 2.0, projected=True)])
    assert 'class="basis-measured"' in html and 'class="basis-extrapolated"' in html
    assert 'class="basis-projected"' in html and '<span class="badge projected">projected</span>' in html
    assert "extrapolated 4/32L" in html


def test_latency_cells_show_p90_p99_and_single_values_no_spread(doc_factory):
    d = doc_factory("h100_sxm", "H100", 2.5, 1.0)
    proj = d["records"][0]
    proj["basis"] = "projected"
    proj["metrics"]["ttft_ms"] = stat([123.0], "projected", "ms")
    html = _render([d])
    tpot = d["records"][1]["metrics"]["tpot_ms"]
    assert f"p90 {fmt(tpot['p90'])} · p99 {fmt(tpot['p99'])}" in html
    assert ">123</td>" in html  # one projected value: no "(123–123)", no tail
    assert "(123–123)" not in html and "p99 123" not in html
