"""Versioned result documents: provenance, statistics with their basis, atomic writes, safe reads.

Schema (documented in results/README.md): a run writes one JSON object with top-level
`schema_version`, `complete`, `kind`, `run_id`, `created_utc`, `workload`, `hardware`, `environment`,
`world_size`, `records` (one per model × batch size) and optional `ranks` / `profile` sections.
"""

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
from typing import Any, Callable, Iterable, Literal, Optional

from moebench import __version__
from moebench.errors import BadInput

SCHEMA_VERSION = 1
Basis = Literal["measured", "extrapolated", "projected"]


def percentile(xs: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    s = sorted(xs)
    if not s:
        return math.nan
    pos = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


# What every statistic reports besides n (shared/MEASURE.md): the median, p20–p80 as its spread, p90 and p99 as
# the tail. Files written before p90/p99 existed lack them; readers treat them as optional.
PERCENTILES: dict[str, float] = {"median": 50, "p20": 20, "p80": 80, "p90": 90, "p99": 99}


def stat(samples: Iterable[float], basis: Basis = "measured", unit: str = "") -> dict[str, Any]:
    """Median, p20, p80, p90, p99 and n of `samples`, labelled with how they were obtained; samples kept for the
    gate."""
    xs = [float(x) for x in samples]
    return {
        **{key: percentile(xs, q) for key, q in PERCENTILES.items()},
        "n": len(xs),
        "basis": basis,
        "unit": unit,
        "samples": xs,
    }


def profiled(doc: dict[str, Any]) -> bool:
    """Whether a result's records were timed with the profiler on (`--profile`): their latencies include its
    overhead, which the record's `profile.overhead` measured side by side."""
    return any(isinstance(r, dict) and r.get("profile") for r in doc.get("records") or [])


def derive(s: dict[str, Any] | None, fn: Callable[[float], Optional[float]], unit: str = "", basis: Basis | None = None):
    """A statistic of fn(sample) per sample (so monotone maps keep their spread honest); None propagates."""
    if s is None:
        return None
    ys = [fn(x) for x in s["samples"]]
    if any(y is None for y in ys):
        return None
    return stat(ys, basis or s["basis"], unit)


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    """Library versions and machine facts, for provenance."""
    import importlib.metadata as md

    def ver(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    env: dict[str, Any] = {
        "moebench_version": __version__,
        "git_sha": git_sha(),
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


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, default=_json_default, allow_nan=True)


def write_atomic(path: str | Path, doc: dict[str, Any]) -> Path:
    """A result document as JSON, atomically (see write_text_atomic)."""
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


def load_result(path: str | Path) -> dict[str, Any]:
    """Read a result file; anything unreadable, malformed or of an unknown schema is one BadInput line."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise BadInput(f"{p}: no such results file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{p}: cannot read results file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise BadInput(f"{p}: corrupt results file (invalid JSON at line {exc.lineno}: {exc.msg})") from None
    if not isinstance(doc, dict) or "schema_version" not in doc:
        raise BadInput(f"{p}: not a moebench results file (no schema_version)")
    if doc["schema_version"] != SCHEMA_VERSION:
        raise BadInput(f"{p}: results schema_version {doc['schema_version']} is not supported (expected {SCHEMA_VERSION})")
    for key in ("complete", "workload", "hardware", "environment", "records"):
        if key not in doc:
            raise BadInput(f"{p}: corrupt results file (missing {key!r})")
    problem = records_problem(doc["records"])
    if problem:
        raise BadInput(f"{p}: corrupt results file ({problem})")
    return doc


def is_number(v: Any) -> bool:
    """A JSON number (bool is not one, though Python makes it an int)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def records_problem(records: Any) -> Optional[str]:
    """What is wrong with the records' fields that compare, report and the gate read, or None: a hand-edited or
    damaged file (a result or a projection) is then one line, not a TypeError deep inside a table."""
    if not isinstance(records, list):
        return "records is not a list"
    for i, rec in enumerate(records):
        at = f"records[{i}]"
        if not isinstance(rec, dict):
            return f"{at} is not an object"
        if not isinstance(rec.get("model"), str):
            return f"{at}.model is not a string"
        for key in ("batch_size", "prompt_tokens", "output_tokens"):
            v = rec.get(key)
            if not (is_whole(v) or (v is None and key != "batch_size")):
                return f"{at}.{key} is {v!r}, not a whole number"
        metrics = rec.get("metrics")
        if not isinstance(metrics, dict):
            return f"{at}.metrics is not an object"
        for name, m in metrics.items():
            if m is not None and not isinstance(m, dict):
                return f"{at}.metrics.{name} is {m!r}, not a statistic"
            problem = _stat_problem(m, f"{at}.metrics.{name}")
            if problem:
                return problem
    return None


def _stat_problem(node: Any, at: str) -> Optional[str]:
    if not isinstance(node, dict):
        return None
    if "samples" in node:
        samples = node["samples"]
        if not isinstance(samples, list) or not all(is_number(x) for x in samples):
            return f"{at}.samples must be a list of numbers"
        for key in PERCENTILES:  # p90 / p99 may be absent (older files), never of another type
            if node.get(key) is not None and not is_number(node[key]):
                return f"{at}.{key} is {node[key]!r}, not a number"
        return None
    for key, child in node.items():
        problem = _stat_problem(child, f"{at}.{key}")
        if problem:
            return problem
    return None
