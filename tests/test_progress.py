"""Progress bars: shown on an interactive stderr only, never under --json, in CI logs or on other ranks; when
shown, each phase counts its units with elapsed and remaining time."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from moebench.progress import QUIET, Progress, progress_for


def _tty() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=120, color_system=None)


def test_shown_only_on_rank0_of_an_interactive_terminal_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    tty = _tty()
    assert progress_for(tty, json_=False, rank0=True).console is tty
    assert progress_for(tty, json_=True, rank0=True) is QUIET
    assert progress_for(tty, json_=False, rank0=False) is QUIET
    assert progress_for(Console(file=io.StringIO()), json_=False, rank0=True) is QUIET  # piped: a log file
    monkeypatch.setenv("CI", "true")
    assert progress_for(tty, json_=False, rank0=True) is QUIET


def test_a_phase_counts_its_units_with_elapsed_and_remaining_time():
    con = _tty()
    done = [x for x in Progress(con).track([1, 2, 3], "kernel points (tokens)")]
    assert done == [1, 2, 3]
    text = con.file.getvalue()
    assert "kernel points (tokens)" in text and "3/3" in text
    assert "elapsed" in text and "remaining" in text


def test_quiet_progress_prints_nothing_and_still_yields_every_item():
    assert list(QUIET.track(["a", "b"], "x")) == ["a", "b"]
    with QUIET.phase("models × batch sizes", 4) as advance:
        advance()


@pytest.mark.parametrize("schedule, phase, done", [("sequential", "models × batch sizes", "2/2"), ("interleaved", "rounds", "3/3")])
def test_the_engine_counts_its_phase(schedule, phase, done, tmp_path):
    from moebench.engine.runner import run_workload
    from moebench.workload import parse_workload

    wl = parse_workload({"name": "p", "models": ["llama3:debug"], "device": "cpu", "roofs": False,
                         "scenario": {"prompt_tokens": 8, "output_tokens": 2, "batch_sizes": [1, 2]},
                         "timing": {"warmup": 1, "repeats": 3, "schedule": schedule}})
    con = _tty()
    run_workload(wl, out_dir=tmp_path, progress=Progress(con))
    text = con.file.getvalue()
    assert phase in text and done in text
