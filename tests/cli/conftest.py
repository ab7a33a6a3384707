import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def moebench(*args: str, cwd: Path = REPO, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user would."""
    e = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    e.pop("MOEBENCH_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "moebench", *args], cwd=cwd, env=e, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def cli():
    return moebench


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    for n in needles:
        assert n in lines[0], lines[0]


def start_moebench(*args: str, env: dict | None = None) -> subprocess.Popen:
    """The real CLI in a background process, for a test that signals it or changes its disk mid-run."""
    e = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    e.pop("MOEBENCH_DEBUG", None)
    # a shell without job control starts background jobs with SIGINT ignored, and a child inherits that (Python
    # then installs no Ctrl-C handler): give the CLI the default disposition a terminal would
    return subprocess.Popen([sys.executable, "-m", "moebench", *args], cwd=REPO, env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def read_stderr_until(p: subprocess.Popen, needle: str, timeout: float = 180) -> str:
    """stderr up to the first line holding `needle` (or the process's end, or `timeout` s), without blocking on it."""
    import time

    seen = ""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline and p.poll() is None:
        seen += p.stderr.readline()
    return seen
