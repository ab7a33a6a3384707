"""The EP harness's spawn: a rank that gloo aborts in its teardown, after every rank finished its work, leaves a
whole run; a rank that fails before that still fails it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch.multiprocessing as mp
from torch.multiprocessing.spawn import ProcessExitedException

from tests.profile import ep_harness


def _aborting_spawn(ranks_done: int):
    def spawn(fn, args, nprocs, start_method):
        out = Path(args[2]).parent
        (out / "results.json").write_text(json.dumps({"uniform": {"ranks": nprocs}}))
        for r in range(ranks_done):
            (out / f"rank{r}.done").touch()
        raise ProcessExitedException("process 1 terminated with signal SIGABRT", error_index=1, error_pid=0,
                                     exit_code=-6, signal_name="SIGABRT")
    return spawn


def test_a_teardown_abort_after_every_rank_finished_leaves_the_run_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(mp, "start_processes", _aborting_spawn(ranks_done=4))
    assert ep_harness.run({"model": "m"}, tmp_path / "a", world=4, port=1) == {"uniform": {"ranks": 4}}


def test_a_rank_that_fails_before_its_work_is_done_fails_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(mp, "start_processes", _aborting_spawn(ranks_done=3))
    with pytest.raises(ProcessExitedException):
        ep_harness.run({"model": "m"}, tmp_path / "b", world=4, port=1)
