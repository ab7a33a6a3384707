"""Tune the fused-MoE launch configs on this GPU and write them in the committed format (see configs.py).

    python -m moebench_kernels.tune --shape mixtral-8x7b --dtype bf16
    python -m moebench_kernels.tune --shape qwen3-30b-a3b --tokens 1,16,256 --out /tmp/cfg

For each token bucket: uniform random routing (fixed seed), then a coordinate search: the gate-up GEMM's config
with the down GEMM at its default, then the down GEMM's with the gate-up at its best. Every candidate is first
compiled and checked against fused_moe_ref; those that fail to compile, exceed the chip's resources or miss the
reference are dropped. Timing is the whole fused_moe call replayed from a CUDA graph with the L2 flushed
(median of 15). `--gpu-lock FILE --barrier FILE2 --tuners N` let N tuners (one per shape) compile in parallel,
then take turns on the GPU so that no tuner's timing shares the GPU with another's work.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
import time
from pathlib import Path
from typing import Any, Iterator

BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def candidates(rows_per_expert: float, dtype_bytes: int) -> list[dict[str, int]]:
    """The search space for one regime: weight-bound (tiny M, deep K) to compute-bound (big tiles), each with
    the pointer and the tensor-descriptor (USE_TMA) loads. Widened after the H200 run (kernels/NOTES.md):
    BLOCK_M 32 for <= 16 rows per expert, BLOCK_K 128 and 5 stages for prefill."""
    out = []
    if rows_per_expert <= 16:
        space = itertools.product((16, 32), (32, 64, 128), (64, 128, 256), (1,), (4,), (3, 4, 5))
    elif rows_per_expert <= 128:
        space = itertools.product((32, 64), (64, 128), (64, 128), (8,), (4, 8), (3, 4))
    else:
        space = itertools.product((64, 128), (64, 128, 256), (64, 128), (8,), (4, 8), (3, 4, 5))
    for (bm, bn, bk, g, w, s), tma in itertools.product(space, (0, 1)):
        if dtype_bytes == 4 and bk > 64:
            continue
        out.append({"BLOCK_SIZE_M": bm, "BLOCK_SIZE_N": bn, "BLOCK_SIZE_K": bk, "GROUP_SIZE_M": g,
                    "num_warps": w, "num_stages": s, "USE_TMA": tma})
    return out


@contextlib.contextmanager
def gpu_turn(lock_path: str | None) -> Iterator[None]:
    if lock_path is None:
        yield
        return
    import fcntl

    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _barrier(path: str | None, n: int, max_wait_s: float = 300.0) -> None:
    """Wait until `n` tuners have finished compiling (each appends a line to `path`); a tuner that died
    never arrives, so give up waiting after `max_wait_s`."""
    if path is None or n <= 1:
        return
    with open(path, "a") as f:
        f.write("compiled\n")
    deadline = time.time() + max_wait_s
    while sum(1 for _ in open(path)) < n and time.time() < deadline:
        time.sleep(0.5)


def tune(shape_name: str, dtype_name: str, tokens: list[int], lock: str | None, log=print,
         on_bucket=lambda table: None, barrier: str | None = None, n_tuners: int = 1) -> dict[str, Any]:
    import torch

    from moebench_kernels.configs import default_configs
    from moebench_kernels.fused_moe import fused_moe, fused_moe_ref
    from moebench_kernels.shapes import SHAPES
    from moebench_kernels.timing import CudaTimer, median

    s = SHAPES[shape_name]
    dtype = getattr(torch, DTYPES[dtype_name])
    E, K, D, Fh = s.experts, s.top_k, s.hidden, s.ffn
    g = torch.Generator(device="cuda").manual_seed(0)
    w13 = torch.randn(E, 2 * Fh, D, device="cuda", dtype=dtype, generator=g) * D**-0.5
    w2 = torch.randn(E, D, Fh, device="cuda", dtype=dtype, generator=g) * Fh**-0.5
    b13 = torch.randn(E, 2 * Fh, device="cuda", dtype=dtype, generator=g) * 0.1 if s.bias else None
    b2 = torch.randn(E, D, device="cuda", dtype=dtype, generator=g) * 0.1 if s.bias else None
    timer = CudaTimer()
    points = []
    for T in tokens:
        cg = torch.Generator().manual_seed(T)
        ids = torch.rand(T, E, generator=cg).argsort(1)[:, :K].cuda()
        w = torch.softmax(torch.randn(T, K, generator=cg), -1).cuda()
        x = torch.randn(T, D, generator=cg).to("cuda", dtype)
        ref = fused_moe_ref(x, w13, w2, w, ids, s.activation, b13, b2).float()
        points.append((T, x, w, ids, ref, candidates(T * K / E, torch.finfo(dtype).bits // 8),
                       default_configs(T, K, E, Fh, D, dtype)))

    def run(pt, cfg):
        _, x, w, ids, *_ = pt
        return fused_moe(x, w13, w2, w, ids, s.activation, b13, b2, configs=cfg)

    def check(pt, cfg) -> bool:
        try:
            y = run(pt, cfg).float()
        except Exception as exc:  # noqa: BLE001 - out of resources / compile failure: not a candidate
            log(f"  {shape_name} T={pt[0]}: skipped {cfg}: {type(exc).__name__}: {str(exc).splitlines()[0][:90]}")
            return False
        err = float((y - pt[4]).norm() / pt[4].norm())
        if not err < 3e-2:
            log(f"  {shape_name} T={pt[0]}: rejected {cfg} (relative error {err:.1e})")
        return err < 3e-2

    # Phase 1, in parallel with the other tuners: compile and check every candidate of each GEMM.
    ok: dict[tuple[int, str], list[dict[str, int]]] = {}
    for pt in points:
        for which in ("gate_up", "down"):
            ok[(pt[0], which)] = [c for c in pt[5] if check(pt, pt[6] | {which: c})]
    _barrier(barrier, n_tuners)

    # Phase 2, one tuner at a time on the GPU: time (graph replay, L2 flushed).
    def measure(pt, cfg) -> float:
        with gpu_turn(lock):
            return median(timer.time(lambda: run(pt, cfg), 2, 15, graph=True))

    table: dict[str, Any] = {}
    for pt in points:
        T, best = pt[0], pt[6]
        base_ms = measure(pt, best)
        for which in ("gate_up", "down"):
            scored = [(measure(pt, best | {which: c}), c) for c in ok[(T, which)]]
            if scored:
                best = best | {which: min(scored, key=lambda sc: sc[0])[1]}
        final_ms = measure(pt, best)
        table[str(T)] = {"gate_up": best["gate_up"], "down": best["down"]}
        log(f"{shape_name} T={T}: default {base_ms * 1e3:.1f} µs -> tuned {final_ms * 1e3:.1f} µs")
        on_bucket(table)
    return table


def main(argv: list[str] | None = None) -> int:
    from moebench_kernels.shapes import SHAPES

    ap = argparse.ArgumentParser(prog="python -m moebench_kernels.tune", description=__doc__.split("\n")[0])
    ap.add_argument("--shape", required=True, choices=sorted(SHAPES))
    ap.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    ap.add_argument("--tokens", default=",".join(map(str, BUCKETS)), help="comma-separated token buckets")
    ap.add_argument("--out", default=None, help="folder for the JSON (default: the package's configs/)")
    ap.add_argument("--gpu-lock", default=None, help="lock file shared by tuners running in parallel")
    ap.add_argument("--barrier", default=None, help="file the parallel tuners meet at after compiling")
    ap.add_argument("--tuners", type=int, default=1, help="how many tuners meet at --barrier")
    args = ap.parse_args(argv)

    import torch

    from moebench_kernels.configs import CONFIG_DIR, config_file_name, write_config_doc

    if not torch.cuda.is_available():
        print("error: tuning needs a CUDA GPU", file=sys.stderr)
        return 4
    tokens = [int(t) for t in args.tokens.split(",") if t]
    t0 = time.time()
    s = SHAPES[args.shape]
    path = (Path(args.out) if args.out else CONFIG_DIR) / config_file_name(
        s.experts, s.ffn, torch.cuda.get_device_name(), DTYPES[args.dtype])
    path.parent.mkdir(parents=True, exist_ok=True)

    # after every bucket, so a cut-short run still leaves its results; merged, so buckets not retuned stay
    tune(args.shape, args.dtype, tokens, args.gpu_lock, log=lambda m: print(m, file=sys.stderr, flush=True),
         on_bucket=lambda table: write_config_doc(path, table), barrier=args.barrier, n_tuners=args.tuners)
    print(f"wrote {path} ({time.time() - t0:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
