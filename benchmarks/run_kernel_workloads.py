"""Run several `kind: kernel` workloads in one process; write one JSON (a list of result documents) and the tables.

    python benchmarks/run_kernel_workloads.py workloads/kernels/*.yaml --device cuda --out results/kernels

`moebench run WORKLOAD` does the same for one workload (and writes results/runs/); this script exists for a
GPU lease, where one call must produce everything and bring back few files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    import torch

    from moebench.bench.runner import render_table, run_kernel_workload
    from moebench.bench.timing import measure_roofs
    from moebench.workload import load_workload

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workloads", nargs="+")
    ap.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    ap.add_argument("--out", default="results/kernels")
    ap.add_argument("--tokens", default=None, help="comma-separated token counts overriding the workloads'")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    docs = []
    with open(out / "tables.txt", "w") as tables:
        console = Console(file=tables, width=230)
        for path in args.workloads:
            wl = load_workload(path)
            if args.tokens:
                tokens = [int(t) for t in args.tokens.split(",")]
                cpu = wl.cpu.model_copy(update={"tokens": tokens}) if wl.cpu is not None else None  # cpu: wins there
                wl = wl.model_copy(update={"tokens": tokens, "cpu": cpu})
            try:
                doc = run_kernel_workload(wl, device=args.device, console_err=lambda m: print(m, file=sys.stderr, flush=True))
            except Exception as exc:  # noqa: BLE001 - one workload failing must not lose the others
                print(f"{path}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                continue
            docs.append(doc)
            console.print(render_table(doc))
            if doc["hardware"]["device"] == "cpu":  # a shared host's roofs drift: show how far during this run
                before, after = doc["hardware"]["measured_roofs"], measure_roofs("cpu", torch.float32)
                line = (f"roofs re-measured after the run: {after['mem_gbps']:.1f} GB/s, {after['matmul_tflops']:.3f} "
                        f"TFLOP/s (start of the run: {before['mem_gbps']:.1f} GB/s, "
                        f"{before['matmul_tflops']:.3f} TFLOP/s)")
                console.print(line)
                print(f"{wl.name}: {line}", file=sys.stderr, flush=True)
            tables.flush()
            (out / "results.json").write_text(json.dumps(docs))
    print((out / "tables.txt").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
