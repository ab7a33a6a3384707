"""A minimal expert-parallel run for the profiler's end-to-end tests, independent of moebench.parallel.

N gloo processes; each holds a contiguous shard of every MoE layer's experts (expert_offset set, weights sliced),
runs data-parallel attention on its own batch, and plugs a dispatcher into each MoE layer:
count exchange + token all_to_all (`L{i}/dispatch`), its local experts (`L{i}/experts`), the reverse all_to_all
(`L{i}/combine`) — the same region names the real engine uses. It exists to validate the wait/transfer math on
real collectives; tests switch to the engine when `moebench.parallel` provides expert parallelism.

Legend: T tokens, D model dim, K experts per token, R rows (token-expert pairs).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from moebench.profile.regions import collective, region


def make_dispatcher(ep_rank: int, ep: int, group=None):
    def dispatch(x_TD, weights_TK, ids_TK, moe):
        t, k = ids_TK.shape
        per = moe.n_experts // ep
        dest_R = (ids_TK // per).reshape(-1)
        order_R = dest_R.argsort(stable=True)
        rows_RD = x_TD.repeat_interleave(k, dim=0)[order_R]
        local_ids_R = (ids_TK.reshape(-1) % per)[order_R]
        send = torch.bincount(dest_R, minlength=ep)
        recv = torch.empty_like(send)
        with collective(f"L{moe.layer}/dispatch"):
            dist.all_to_all_single(recv, send, group=group)
            sc, rc = send.tolist(), recv.tolist()
            got_RD = x_TD.new_empty(sum(rc), x_TD.shape[1])
            dist.all_to_all_single(got_RD, rows_RD.contiguous(), rc, sc, group=group)
            got_ids = local_ids_R.new_empty(sum(rc))
            dist.all_to_all_single(got_ids, local_ids_R.contiguous(), rc, sc, group=group)
        with region(f"L{moe.layer}/experts"):
            out_RD = moe.experts(got_RD, torch.ones(len(got_ids), 1, dtype=x_TD.dtype), got_ids[:, None])
        back_RD = x_TD.new_empty(rows_RD.shape)
        with collective(f"L{moe.layer}/combine"):
            dist.all_to_all_single(back_RD, out_RD.contiguous(), sc, rc, group=group)
        y_RD = torch.empty_like(back_RD)
        y_RD[order_R] = back_RD
        return (y_RD.view(t, k, -1) * weights_TK[..., None]).sum(1)

    return dispatch


def shard_experts(model, ep_rank: int, ep: int) -> None:
    for blk in model.layers:
        moe = blk.ffn
        if not hasattr(moe, "dispatcher"):
            continue
        per = moe.n_experts // ep
        a = ep_rank * per
        moe.w13_E2FD = torch.nn.Parameter(moe.w13_E2FD.data[a:a + per].clone())
        moe.w2_EDF = torch.nn.Parameter(moe.w2_EDF.data[a:a + per].clone())
        moe.expert_offset = a
        moe.dispatcher = make_dispatcher(ep_rank, ep)


def worker(rank: int, world: int, port: int, spec_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    spec = json.loads(Path(spec_path).read_text())
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from moebench.engine.generate import prompt_ids, time_generation
        from moebench.models import load
        from moebench.profile import ProfileSession
        from moebench.workload import Workload

        model = load(spec["model"], layers=spec.get("layers"), seed=0)
        shard_experts(model, rank, world)
        results = {}
        for run in spec["runs"]:
            os.environ.pop("MOEBENCH_TEST_DELAY_MS", None)
            if run.get("delay_ms"):
                os.environ.update(MOEBENCH_TEST_DELAY_MS=str(run["delay_ms"]), MOEBENCH_TEST_DELAY_RANK=str(run["delay_rank"]))
            sc = {**spec["scenario"], **run.get("scenario", {})}
            wl = Workload(name=run["name"], models=[spec["model"]], routing=run["routing"], profile=True,
                          scenario=dict(prompt_tokens=sc["prompt"], output_tokens=sc["output"], batch_sizes=[sc["batch"]]),
                          timing=dict(warmup=sc["warmup"], repeats=sc["repeats"]))
            ids = prompt_ids(sc["batch"], sc["prompt"], model.cfg.vocab_size, seed=rank, device="cpu")
            gen = dict(batch=sc["batch"], prompt=sc["prompt"], output=sc["output"], device="cpu", seed=0, ids_BS=ids,
                       barrier=dist.barrier)
            trace_dir = Path(spec["out"]) / run["name"] if run.get("trace") else None
            prof = ProfileSession(wl, model, rank=rank, world_size=world, device="cpu", trace_dir=trace_dir)
            plain = None
            if run.get("overhead"):
                with prof.paused():
                    plain = time_generation(model, warmup=sc["warmup"], repeats=sc["repeats"], **gen)
            samples = time_generation(model, warmup=sc["warmup"], repeats=sc["repeats"], **gen)
            section = prof.finish(overhead=(sc["batch"], plain.tpot_ms, samples.tpot_ms) if plain else None)
            # the engine's own step timer, per rank, to check the closure against an independent clock
            itl = [None] * world if rank == 0 else None
            dist.gather_object(samples.itl_ms, itl, dst=0)
            if rank == 0:
                section["engine_itl_ms"] = itl
                results[run["name"]] = section
        if rank == 0:
            Path(spec["out"], "results.json").write_text(json.dumps(results))
        Path(spec["out"], f"rank{rank}.done").touch()  # this rank's work is whole; only the teardown is left
        # no rank tears down its gloo pairs while a peer may still be reading from them (a peer's closed socket
        # aborts gloo's reader thread: "terminate called without an active exception", seen in CI runs)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(spec: dict, out: Path, world: int = 4, port: int | None = None) -> dict:
    """Spawn `world` gloo ranks over `spec` (model, scenario, runs); returns {run name: profile section}."""
    import torch.multiprocessing as mp
    from torch.multiprocessing.spawn import ProcessExitedException

    port = port or free_port()
    out.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "out": str(out)}
    p = out / "spec.json"
    p.write_text(json.dumps(spec))
    try:
        mp.start_processes(worker, args=(world, port, str(p)), nprocs=world, start_method="spawn")
    except ProcessExitedException:
        # the barrier narrows gloo's teardown race but does not close it (seen twice in CI): a rank that aborted
        # after every rank had finished its work leaves a whole run; any other failure is the test's
        if not all((out / f"rank{r}.done").exists() for r in range(world)):
            raise
    return json.loads((out / "results.json").read_text())


SPEC = {
    # Prefill-heavy (experts dominate the compute, lm_head runs on the last position only) so that hot-expert
    # imbalance stands well above the scheduling noise of 4 ranks sharing 2 cores. Uniform and hot runs alternate
    # so that both see the same machine load. 4 repeats: the hot/uniform wait ratio (the must-show: >= 3) read
    # 3.85-5.48 in five harness runs with 2 repeats (and 2.56 once under pytest), 4.21-4.88 in five with 4.
    "model": "mixtral:debug",
    "layers": 2,
    "scenario": {"prompt": 48, "output": 2, "batch": 32, "warmup": 1, "repeats": 4},
    "runs": [
        {"name": "uniform", "routing": "uniform", "trace": True, "overhead": True},
        {"name": "hot", "routing": "hot:0"},
        {"name": "uniform_b", "routing": "uniform"},
        {"name": "hot_b", "routing": "hot:0"},
        # decode-only, tiny batch: the injected delay dwarfs the compute, so it reads back as wait directly
        {"name": "delay", "routing": "uniform", "delay_ms": 150, "delay_rank": 1,
         "scenario": {"prompt": 2, "output": 5, "batch": 4, "warmup": 1, "repeats": 1}},
    ],
}


if __name__ == "__main__":  # manual use: python tests/profile/ep_harness.py OUT_DIR
    out = Path(sys.argv[1])
    res = run(SPEC, out) if not (out / "results.json").exists() else json.loads((out / "results.json").read_text())
    for name, sec in res.items():
        print(name, json.dumps({k: sec[k] for k in ("attribution", "straggler_rank")}))
        for r in sec["ranks"]:
            print("  ", r["rank"], r["n_steps"], r["stage"], {k: round(r[k], 3) for k in ("step_ms", "compute_ms", "comm_ms", "wait_ms", "transfer_ms", "idle_ms", "closure_error_pct", "wait_ms_p50")})
