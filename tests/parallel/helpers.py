"""Helpers for the multi-process tests: find processes a run left behind by a marker in their environment."""

from __future__ import annotations

import os
from pathlib import Path


def leftover_pids(marker: str) -> list[int]:
    """Live processes whose environment holds `marker` (every rank inherits the test's environment)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if marker.encode() in (d / "environ").read_bytes():
                state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(d.name))
        except OSError:
            continue
    return found
