"""Result documents: the contract between everything that measures and everything that reports.

Schema version 2 (results/README.md). A document is one JSON object: header `schema_version`, `kind` (the
producer: engine | kernel | projection | endpoint), `complete` (+ `error` for a partial file), `run_id`,
`created_utc`, `moebench_version`, `git_commit`, `workload`, `hardware`, `environment`, `world_size`, then
`records` (one per model × batch size × scenario; kernel documents have `points` instead) and optional
`parallel` / `ranks` / `profile` / `projection` sections. Each record's `metrics` holds statistics
{median, p20, p80, p90, p99, n, basis, unit, samples} under the names moebench.metrics declares.

For a producer (the engine, the kernel benchmark, the launcher's partial files, a projection, an endpoint
load-tester):

    doc = new_doc(kind="endpoint", workload={...}, hardware={...}, world_size=1)
    doc["records"].append(make_record(model=..., kind=..., basis="measured", batch_size=..., prompt_tokens=...,
                                      output_tokens=..., metrics={"ttft_ms": stat(samples_ms, "measured", "ms")}))
    doc["complete"] = True
    write_result(doc, out_dir)               # checked against ResultDoc, strict JSON, atomic

For a consumer: `load_result(path)` migrates an older file and checks it (BadInput naming the field), and
returns the document; `ResultDoc` / `Record` are the typed definitions it is checked against.
"""

from moebench.results.files import (
    _UMASK, _umask, dumps, environment, file_stem, finite, git_sha, new_run_id, write_atomic, write_text_atomic,
)
from moebench.results.schema import (
    MIGRATIONS, RECORD_KINDS, SCHEMA_VERSION, KernelPoint, Kind, Record, ResultDoc, load_result, make_record,
    migrate, new_doc, problem, validated, write_result,
)
from moebench.results.stats import PERCENTILES, Basis, derive, is_number, is_whole, percentile, profiled, stat

__all__ = [
    "_UMASK", "_umask", "dumps", "environment", "file_stem", "finite", "git_sha", "new_run_id", "write_atomic",
    "write_text_atomic", "MIGRATIONS", "RECORD_KINDS", "SCHEMA_VERSION", "KernelPoint", "Kind", "Record",
    "ResultDoc", "load_result", "make_record", "migrate", "new_doc", "problem", "validated", "write_result",
    "PERCENTILES", "Basis", "derive", "is_number", "is_whole", "percentile", "profiled", "stat",
]
