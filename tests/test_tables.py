"""The run table shows user-controlled names literally (rich markup in a model name is text, not style)."""

import io

from rich.console import Console

from moebench.report.tables import run_table, spread
from moebench.results import stat


def _doc(model: str) -> dict:
    s = stat([1.0, 2.0, 3.0])
    metrics = {k: s for k in ("ttft_ms", "tpot_ms", "decode_tokens_per_s", "output_tokens_per_s_per_gpu")}
    metrics.update(usd_per_mtok=None, intelligence_per_usd=None)
    rec = {"model": model, "kind": "moe", "basis": "measured", "layers_run": 2, "layers_total": 2, "batch_size": 1,
           "params": {"active": 10, "total": 20}, "intelligence": None, "metrics": metrics}
    hw = {"name": "CPU [bold]host[/bold]", "n_devices": 1, "device": "cpu", "dtype": "float32", "kernels": "torch",
          "price": {"usd_per_gpu_hour": None}}
    return {"workload": {"name": "w"}, "hardware": hw, "records": [rec]}


def test_markup_in_names_is_printed_literally():
    buf = io.StringIO()
    Console(file=buf, width=300, color_system=None).print(run_table(_doc("evil:[red]x[/red]")))
    text = buf.getvalue()
    assert "evil:[red]x[/red]" in text
    assert "CPU [bold]host[/bold]" in text


def test_a_single_value_prints_without_a_spread_and_a_tail_on_request():
    assert spread(stat([22.6], "projected")) == "22.6"  # not "22.6 (22.6–22.6)"
    assert spread(stat([5.0, 5.0, 5.0])) == "5"
    many = stat([float(x) for x in range(1, 101)])
    assert spread(many) == "50.5 [dim](20.8–80.2)[/dim]"
    assert spread(many, tail=True) == "50.5 [dim](20.8–80.2)[/dim]\n[dim]p90 90.1 · p99 99[/dim]"
    old = {k: v for k, v in many.items() if k not in ("p90", "p99")}  # a file from before p90/p99
    assert spread(old, tail=True) == "50.5 [dim](20.8–80.2)[/dim]"
