"""Writing result files: provenance (environment, commit), strict JSON, atomic writes, run ids."""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    """Library versions and machine facts, for provenance (the tool's version and commit are in the header)."""
    import importlib.metadata as md

    def ver(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "hostname": platform.node(),
        "libraries": {n: ver(n) for n in ("torch", "triton", "transformers", "pydantic", "nvidia-ml-py", "pandas")},
    }
    if "torch" in sys.modules:
        import torch

        env["cuda"] = torch.version.cuda
        env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
        env["torch_threads"] = torch.get_num_threads()
    return env


def _json_default(o: Any) -> Any:
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def dumps(doc: Any) -> str:
    """Strict JSON (no NaN or Infinity, which other readers reject): a non-finite number is written as null and,
    inside a record, a line in its `notes` says which (a statistic with a non-finite sample becomes null whole,
    since its percentiles are meaningless)."""
    return json.dumps(finite(doc), indent=2, default=_json_default, allow_nan=False)


def finite(node: Any, notes: list[str] | None = None, at: str = "") -> Any:
    """A copy of `node` with non-finite numbers as null, each noted in the nearest record's `notes`."""
    if isinstance(node, float) and not math.isfinite(node):
        if notes is not None:
            notes.append(f"{at.lstrip('.')} was {node} (not a finite number), written as null")
        return None
    if isinstance(node, list):
        return [finite(x, notes, f"{at}[{i}]") for i, x in enumerate(node)]
    if not isinstance(node, dict):
        return node
    if "samples" in node and isinstance(node["samples"], list) and _has_nonfinite(node):
        if notes is not None:
            notes.append(f"{at.lstrip('.')} had a non-finite value, written as null")
        return None
    if "metrics" in node and "model" in node:  # a record: notes go here
        own: list[str] = list(node.get("notes") or [])
        out = {k: finite(v, own, k) for k, v in node.items() if k != "notes"}
        if own:
            out["notes"] = own
        return out
    return {k: finite(v, notes, f"{at}.{k}") for k, v in node.items()}


def _has_nonfinite(node: Any) -> bool:
    if isinstance(node, float):
        return not math.isfinite(node)
    if isinstance(node, dict):
        return any(_has_nonfinite(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_nonfinite(v) for v in node)
    return False


def write_atomic(path: str | Path, doc: Any) -> Path:
    """A document as strict JSON (see dumps), atomically (see write_text_atomic)."""
    return write_text_atomic(path, dumps(doc))


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Temp file in the same folder, fsync, os.replace: a reader never sees half a file, and a failure leaves the
    previous file as it was. The file gets the permissions a plain open() would (mkstemp makes 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once, at import (before any thread of ours exists): os.umask can only be read by setting it, and a file
# another thread created while it was 0 would get mode 0666.
_UMASK = _umask()


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def file_stem(name: str, limit: int = 80) -> str:
    """A name a user wrote (a workload's, a model's) as one harmless path component: no separator, no leading
    dot (so never `..` nor hidden), bounded length; every file name built from a name goes through here."""
    stem = _UNSAFE.sub("_", name).lstrip(".-")[:limit]
    return stem or "unnamed"


def new_run_id(name: str) -> str:
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{file_stem(name)}-{os.getpid()}"
