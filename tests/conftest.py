"""Shared fixtures. TRITON_INTERPRET must be set before anything imports triton (kernel tests run on CPU).

OMP_NUM_THREADS is left alone: every `--nproc N` run a test starts inherits this environment, and the launcher
only picks cores // N threads per rank where it is unset (a fixed 2 here once made 4 ranks run 8 threads on
2 cores: 3.5x slower prefill, 12x slower decode, and who waits for whom decided by the scheduler).
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def repo() -> pathlib.Path:
    return REPO
