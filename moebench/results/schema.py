"""The result document's schema (version 2): typed, versioned, one constructor each, migrated on load.

A document travels as its JSON object (a dict): producers append records and save partial files as they go,
and consumers read `records[i].metrics.<name>` statistics. `ResultDoc` and `Record` define what that object may
hold; `new_doc` and `make_record` build it, `load_result` and `write_result` check it against them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import (
    BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr, TypeAdapter, ValidationError, model_validator,
)

from moebench import __version__
from moebench.errors import BadInput
from moebench.results.files import environment, git_sha, new_run_id, write_atomic
from moebench.results.stats import PERCENTILES, is_number

SCHEMA_VERSION = 2
Kind = Literal["engine", "kernel", "projection", "endpoint"]
RECORD_KINDS = ("engine", "projection", "endpoint")  # documents whose records report, compare and gate read


class Record(BaseModel):
    """One model × batch size × scenario. Producers add their own sections (decode, weights, profile, phases,
    energy_source …): those are kept as they are."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: StrictStr
    kind: Optional[StrictStr] = None  # dense | moe
    basis: Optional[StrictStr] = None  # measured | extrapolated | projected
    serving: Optional[StrictStr] = None  # static | continuous
    batch_size: StrictInt
    prompt_tokens: Optional[StrictInt] = None
    output_tokens: Optional[StrictInt] = None
    metrics: dict[str, Any]
    notes: Optional[list[StrictStr]] = None

    @model_validator(mode="after")
    def _statistics(self) -> "Record":
        # counts no run produces (0 is an open-loop endpoint level's batch: no cap on requests in flight)
        for name in ("batch_size", "prompt_tokens", "output_tokens"):
            n = getattr(self, name)
            if n is not None and n < 0:
                raise ValueError(f"{name} is {n}, not a count ≥ 0")
        for name, node in self.metrics.items():
            if node is not None and not isinstance(node, dict):
                raise ValueError(f"metrics.{name} is {node!r}, not a statistic")
            problem = _stat_problem(node, f"metrics.{name}")
            if problem:
                raise ValueError(problem)
        return self


class KernelPoint(BaseModel):
    """One provider × token count of a kernel benchmark (moebench.bench)."""

    model_config = ConfigDict(extra="allow", strict=True)

    provider: StrictStr
    status: StrictStr  # ok | skipped | failed
    tokens: StrictInt
    reason: Optional[StrictStr] = None


class ResultDoc(BaseModel):
    """A result file. `records` for engine, projection and endpoint documents; `points` for kernel ones."""

    model_config = ConfigDict(extra="forbid", strict=True)

    schema_version: Literal[2]
    kind: Kind
    complete: StrictBool
    error: Optional[StrictStr] = None  # why a partial file is partial
    failed_ranks: Optional[list[StrictInt]] = None
    run_id: Optional[StrictStr] = None
    created_utc: Optional[StrictStr] = None
    moebench_version: Optional[StrictStr] = None
    git_commit: Optional[StrictStr] = None
    workload_path: Optional[StrictStr] = None
    workload: dict[str, Any]
    hardware: dict[str, Any]
    environment: dict[str, Any]
    world_size: Optional[StrictInt] = None
    records: list[Record] = []
    points: Optional[list[KernelPoint]] = None
    wall_s: Optional[float] = None
    parallel: Optional[dict[str, Any]] = None  # a distributed run's layout
    ranks: Optional[list[dict[str, Any]]] = None  # per-rank timings
    profile: Optional[dict[str, Any]] = None  # a run-wide profile (records carry their own as `profile`)
    projection: Optional[dict[str, Any]] = None  # a projection shown as a run: its source and assumptions
    contention: Optional[dict[str, Any]] = None  # how busy other processes kept the machine while it was timed
    at_interactivity: Optional[list[dict[str, Any]]] = None  # an endpoint sweep's $/M at its interactivity targets

    @model_validator(mode="after")
    def _kind_has_its_rows(self) -> "ResultDoc":
        if self.kind == "kernel" and self.points is None:
            raise ValueError("points: a kernel document lists its points")
        return self

    @model_validator(mode="after")
    def _counts_and_prices(self) -> "ResultDoc":
        """Values of the right type that no run produces: 0 ranks, a negative price."""
        if self.world_size is not None and self.world_size < 1:
            raise ValueError(f"world_size is {self.world_size}, not a count of ranks")
        price = self.hardware.get("price")
        if price is not None and not isinstance(price, dict):
            raise ValueError(f"hardware.price is {price!r}, not an object")
        priced = [("hardware.price", price or {})]
        priced += [(f"records[{i}].cost", c) for i, r in enumerate(self.records)
                   if isinstance(c := getattr(r, "cost", None), dict)]
        for at, p in priced:
            usd = p.get("usd_per_gpu_hour")
            if usd is not None and not (is_number(usd) and usd >= 0):
                raise ValueError(f"{at}.usd_per_gpu_hour is {usd!r}, not a price ≥ 0")
        return self


def _stat_problem(node: Any, at: str) -> Optional[str]:
    """What is wrong with a statistic (a dict with samples) somewhere under `node`, or None."""
    if not isinstance(node, dict):
        return None
    if "samples" in node:
        samples = node["samples"]
        # every statistic moebench records is a time, a rate, a price, an energy or a share: none is negative
        # (`not x < 0`: a non-finite value passes here and is written as null with a note, results/README.md)
        if not isinstance(samples, list) or not all(is_number(x) and not x < 0 for x in samples):
            return f"{at}.samples must be a list of numbers ≥ 0"
        for key in PERCENTILES:  # p90 / p99 may be absent (files older than them), never of another type
            if node.get(key) is not None and not (is_number(node[key]) and not node[key] < 0):
                return f"{at}.{key} is {node[key]!r}, not a number ≥ 0"
        return None
    for key, child in node.items():
        problem = _stat_problem(child, f"{at}.{key}")
        if problem:
            return problem
    return None


# ------------------------------------------------------------------------------------------------ constructors
def new_doc(*, kind: Kind, workload: dict[str, Any], hardware: dict[str, Any], records: Optional[list] = None,
            complete: bool = False, run_id: Optional[str] = None, world_size: Optional[int] = None,
            **fields: Any) -> dict[str, Any]:
    """A new result document: the header (schema version, this tool's version and commit, creation time, this
    machine's environment — each computed unless given, as a projection gives its own) and the producer's parts;
    `fields` are the optional ones of ResultDoc (error, failed_ranks, workload_path, points, wall_s, parallel,
    ranks, projection). A name ResultDoc does not have is a bug in the producer (TypeError)."""
    unknown = set(fields) - set(ResultDoc.model_fields)
    if unknown:
        raise TypeError(f"new_doc: {sorted(unknown)} not fields of ResultDoc")
    header = {
        "created_utc": lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "moebench_version": lambda: __version__,
        "git_commit": git_sha,
        "environment": environment,
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "complete": complete,
        "run_id": run_id or new_run_id(str(workload.get("name") or kind)),
        **{k: fields.pop(k) if k in fields else make() for k, make in header.items()},
        "workload": workload,
        "hardware": hardware,
        "world_size": world_size,
        "records": list(records or []),
        **fields,
    }


def make_record(*, model: str, kind: Optional[str], basis: str, batch_size: int, prompt_tokens: Optional[int],
                output_tokens: Optional[int], metrics: dict[str, Any], serving: Optional[str] = None,
                **sections: Any) -> dict[str, Any]:
    """One record: identity, the metrics (statistics from `stat`, by the names moebench.metrics declares) and the
    producer's sections (params, cost, intelligence, decode, weights, profile, phases …)."""
    return {"model": model, "kind": kind, "basis": basis, "serving": serving, "batch_size": batch_size,
            "prompt_tokens": prompt_tokens, "output_tokens": output_tokens, **sections, "metrics": metrics}


# ------------------------------------------------------------------------------------------------ migration
def _v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
    """Version 1 → 2: the producer kind `model` is `engine`; the tool version and commit move from `environment`
    to the header; a run's record says it served a static batch (every `moebench run` did); `tokens_per_joule`
    sits beside `joules_per_token` (null: no version-1 file measured energy)."""
    env = dict(doc.get("environment") or {}) if isinstance(doc.get("environment"), dict) else doc.get("environment")
    out = {**doc, "schema_version": 2, "kind": {"model": "engine"}.get(doc.get("kind", "model"), doc.get("kind"))}
    if isinstance(env, dict):
        out["moebench_version"] = env.pop("moebench_version", None)
        out["git_commit"] = env.pop("git_sha", None)
        out["environment"] = env
    if isinstance(doc.get("records"), list):
        out["records"] = [_v1_record(r) for r in doc["records"]]
    return out


def _v1_record(rec: Any) -> Any:
    if not isinstance(rec, dict):
        return rec
    rec = dict(rec)
    if rec.get("serving") is None and rec.get("basis") in ("measured", "extrapolated"):
        rec["serving"] = "static"
    m = rec.get("metrics")
    if isinstance(m, dict) and "joules_per_token" in m and "tokens_per_joule" not in m:
        rec["metrics"] = {**m, "tokens_per_joule": None}
    return rec


MIGRATIONS = {1: _v1_to_v2}  # version → the function that lifts a document of it to the next


def migrate(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` lifted to SCHEMA_VERSION, one version at a time (a copy; `doc` is left as it was)."""
    while doc.get("schema_version") in MIGRATIONS:
        doc = MIGRATIONS[doc["schema_version"]](doc)
    return doc


# ------------------------------------------------------------------------------------------------ checking
def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out.lstrip(".")


_EXPECTED = {"int_type": "a whole number", "string_type": "a string", "bool_type": "true or false",
             "float_type": "a number", "dict_type": "an object", "model_type": "an object", "list_type": "a list"}


def _first(exc: ValidationError, prefix: tuple = ()) -> str:
    """A validation error as one line naming the field: `records[0].batch_size is 'eight', not a whole number`."""
    e = exc.errors(include_url=False)[0]
    at = _where(prefix + tuple(e["loc"]))
    if e["type"] == "missing":
        return f"{at} is missing"
    if e["type"] == "extra_forbidden":
        return f"{at}: not a field of schema {SCHEMA_VERSION}"
    if e["type"] == "value_error":
        msg = str(e["msg"]).removeprefix("Value error, ")
        return f"{at}.{msg}" if at else msg
    if e["type"] in _EXPECTED:
        return f"{at} is {e['input']!r}, not {_EXPECTED[e['type']]}"
    return f"{at}: {e['msg']}"


def problem(doc: Any) -> Optional[str]:
    """What is wrong with a (migrated) document, as one line naming the field, or None."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    try:
        ResultDoc.model_validate(doc)
    except ValidationError as exc:
        return _first(exc)
    return None


_RECORDS = TypeAdapter(list[Record])


def records_problem(records: Any) -> Optional[str]:
    """What is wrong with a list of records (a projection's, which is no ResultDoc), or None."""
    try:
        _RECORDS.validate_python(records)
    except ValidationError as exc:
        return _first(exc, ("records",))
    return None


def validated(doc: Any, source: str) -> dict[str, Any]:
    """`doc` (parsed JSON) migrated and checked: the document, or BadInput naming `source` and the first bad field."""
    if not isinstance(doc, dict) or "schema_version" not in doc:
        raise BadInput(f"{source}: not a moebench results file (no schema_version)")
    version = doc["schema_version"]
    if version != SCHEMA_VERSION and version not in MIGRATIONS:
        raise BadInput(f"{source}: results schema_version {version!r} is not supported (expected {SCHEMA_VERSION}, "
                       f"or an older one it migrates: {', '.join(map(str, MIGRATIONS))})")
    doc = migrate(doc)
    bad = problem(doc)
    if bad:
        raise BadInput(f"{source}: corrupt results file ({bad})")
    return doc


def load_result(path: str | Path) -> dict[str, Any]:
    """A result file, migrated to the current schema and checked against ResultDoc; anything unreadable,
    malformed or of an unknown schema is one BadInput line naming the file and the field."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(), parse_constant=_refuse_non_finite)
    except FileNotFoundError:
        raise BadInput(f"{p}: no such results file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{p}: cannot read results file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise BadInput(f"{p}: corrupt results file (invalid JSON at line {exc.lineno}: {exc.msg})") from None
    except ValueError as exc:  # NaN / Infinity: not JSON, and never written by moebench (allow_nan=False)
        raise BadInput(f"{p}: corrupt results file ({exc})") from None
    return validated(doc, str(p))


def _refuse_non_finite(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON number")


def write_result(doc: dict[str, Any], out_dir: str | Path, name: Optional[str] = None) -> Path:
    """`doc` checked against ResultDoc, written atomically as `out_dir/<name or run_id>.json`. A document that
    fails the check is a bug in its producer (ValueError), not bad input."""
    bad = problem(doc)
    if bad:
        raise ValueError(f"result document does not match schema {SCHEMA_VERSION}: {bad}")
    return write_atomic(Path(out_dir) / f"{name or doc['run_id']}.json", doc)
