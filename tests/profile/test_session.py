"""What a profiled run shows the user: Kineto's USDT notices never reach stderr (other stderr output does), and
the phase split (attention, router, experts, …) is in the terminal summary, not only in the JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from moebench.profile.summary import phase_split, render_summary

# the `profile` section of `moebench run --profile` on mixtral:debug, batch 1, one CPU process
SECTION = Path(__file__).parent / "data" / "mixtral_debug_b1_profile.json"


def _start_stop_profiler() -> None:
    import torch

    prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
    prof.start()
    torch.ones(4) + 1
    prof.stop()


def test_kineto_notices_are_held_back_and_other_stderr_output_is_not(capfd):
    from moebench.profile.session import quiet_kineto

    _start_stop_profiler()
    bare = capfd.readouterr().err
    with quiet_kineto():
        _start_stop_profiler()
        os.write(2, b"a real warning\n")
    held = capfd.readouterr().err
    assert "USDT:" not in held
    assert held == "a real warning\n"
    if "USDT:" not in bare:  # a torch build that does not print them: the rest of the test still held
        pytest.skip("this torch's profiler prints no USDT notices to compare against")


def test_the_summary_shows_the_phase_split():
    from rich.console import Console

    sec = json.loads(SECTION.read_text())
    split = phase_split(sec)
    assert list(split) == ["prefill", "decode"]
    for stage, v in split.items():
        assert list(v["phases"]) == ["attn", "router", "experts", "lm_head"]  # the order of a layer's path
        # the phases are timed inside the step, so they add up to no more than it (and most of it on CPU)
        assert 0.8 * v["step_ms"] < sum(v["phases"].values()) <= v["step_ms"] * 1.001, stage
    con = Console(record=True, width=100, color_system=None)
    con.print(render_summary(sec, title="mixtral:debug batch 1"))
    text = con.export_text()
    assert "phase split" in text
    row = next(line for line in text.splitlines() if line.startswith("│ decode") and "%" in line and "(" in line)
    experts = split["decode"]["phases"]["experts"]
    assert f"{experts:.2f} ({100 * experts / split['decode']['step_ms']:.0f}%)" in row
