"""A tiny 2-process gloo job under torch.profiler (matmul + all_reduce + all_to_all_single), for the trace
analyser and the clock tests. Each rank writes its Kineto trace and its ping-pong clock estimate to OUT."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.distributed as dist


def worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from moebench.profile.clock import ping_pong_offsets

        offsets, rtts = ping_pong_offsets()
        a = torch.randn(192, 192)
        buf = torch.empty(192 * 192)
        acts = [torch.profiler.ProfilerActivity.CPU]
        with torch.profiler.profile(activities=acts, record_shapes=True) as prof:
            for _ in range(3):
                with torch.profiler.record_function("L0/attn"):
                    b = a @ a
                with torch.profiler.record_function("L0/dispatch"):
                    dist.all_to_all_single(buf, b.flatten())
                dist.all_reduce(b)
        prof.export_chrome_trace(str(Path(out) / f"trace_rank{rank}.json"))
        Path(out, f"clock{rank}.json").write_text(json.dumps({"offsets": offsets, "rtts": rtts}))
    finally:
        dist.destroy_process_group()


def run(out: Path, world: int = 2) -> None:
    import torch.multiprocessing as mp

    from tests.profile.ep_harness import free_port

    port = free_port()
    mp.start_processes(worker, args=(world, port, str(out)), nprocs=world, start_method="spawn")
