"""`moebench run` on a kernel workload stopped partway: as a model workload, the points measured are saved in
--out and named in one `error:` line, exit 130."""

from __future__ import annotations

import json
import os
import signal

import pytest
import yaml

from moebench.cli import main

KERNEL = {"kind": "kernel", "name": "tiny", "shape": {"experts": 4, "top_k": 2, "hidden": 16, "ffn": 8},
          "tokens": [1, 2, 4, 8], "providers": ["torch-ref", "torch-grouped"], "device": "cpu",
          "timing": {"warmup": 0, "repeats": 2}}


def test_sigterm_saves_the_points_measured_and_names_them_in_one_error_line(tmp_path, capsys, monkeypatch):
    import moebench.bench.runner as bench
    import moebench.cli.run as run_cli

    real_roofs, real_log = bench.measure_roofs, run_cli.log
    # small roof probes (a full-size one takes seconds): the run is what a user's is, only shorter
    monkeypatch.setattr(bench, "measure_roofs", lambda dev, dtype, scale: real_roofs(dev, dtype, 0.01))
    monkeypatch.setattr(bench, "POINT_ROOF_SCALE", 0.00125)

    def log(line: str) -> None:  # the scheduler's SIGTERM while T=4 is measured: the CLI's own handler takes it
        real_log(line)
        if "T=4 " in line:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(run_cli, "log", log)
    wl = tmp_path / "k.yaml"
    wl.write_text(yaml.safe_dump(KERNEL))
    out = tmp_path / "k1"
    with pytest.raises(SystemExit) as e:
        main(["run", str(wl), "--out", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 130, err
    assert "Traceback" not in err
    last = [ln for ln in err.splitlines() if ln.strip()][-1]
    [saved] = list(out.iterdir())  # only the result, inside --out
    assert last == f"error: interrupted by SIGTERM; partial results in {out / saved.name}", err
    doc = json.loads(saved.read_text())
    assert doc["complete"] is False and doc["error"] == "interrupted (SIGTERM)"  # as a model workload marks it
    assert [(p["tokens"], p["provider"]) for p in doc["points"]] == [
        (1, "torch-ref"), (1, "torch-grouped"), (2, "torch-ref"), (2, "torch-grouped")]  # the rows done, whole


def test_run_flags_apply_to_a_kernel_workload_or_are_refused(tmp_path, capsys, monkeypatch):
    """--repeats, --nproc, --profile and --wide were silently ignored on a kernel workload (n stayed the YAML's)."""
    import moebench.bench.runner as bench

    real_roofs = bench.measure_roofs
    monkeypatch.setattr(bench, "measure_roofs", lambda dev, dtype, scale: real_roofs(dev, dtype, 0.01))
    monkeypatch.setattr(bench, "POINT_ROOF_SCALE", 0.00125)
    wl = tmp_path / "k.yaml"
    wl.write_text(yaml.safe_dump({**KERNEL, "tokens": [1], "cpu": {"timing": {"warmup": 0, "repeats": 2}}}))
    for flags in (["--nproc", "2"], ["--profile"], ["--wide"]):
        with pytest.raises(SystemExit) as e:
            main(["run", str(wl), "--out", str(tmp_path / "o"), *flags])
        assert e.value.code == 2 and "not for a kernel workload" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["run", str(wl), "--out", str(tmp_path / "o"), "--repeats", "3", "--json"])
    assert e.value.code == 0
    doc = json.loads(capsys.readouterr().out)
    assert {p["time_us"]["n"] for p in doc["points"]} == {3}  # through the CPU override's timing too
