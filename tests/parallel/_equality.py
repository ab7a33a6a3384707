"""Worker for the logits-equality tests: every rank runs every case, against the single-process model.

Each case builds the full model from seed 0 (fp32, CPU), computes the single-process reference (prefill logits
at every position, then decode steps through the KV cache, fed the reference's own greedy tokens), then shards
the same model for the case's layout and runs this rank's slice of the batch through the same steps.
Results (max |diff| per case and step) go to `<out>/rank<r>.json`.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

BATCH, PROMPT, DECODE = 4, 12, 3

# case -> (model, parallel fields); world size 4 everywhere (the ranks not in EP/TP are data-parallel)
CASES: dict[str, tuple[str, dict]] = {
    "mixtral-ep4": ("mixtral:debug", {"expert": 4}),
    "mixtral-ep2": ("mixtral:debug", {"expert": 2}),
    "mixtral-ep2-tp2": ("mixtral:debug", {"expert": 2, "tensor": 2}),
    "mixtral-ep4-attn-tensor": ("mixtral:debug", {"expert": 4, "attention": "tensor"}),
    "deepseek-v3-ep4": ("deepseek-v3:debug", {"expert": 4}),
    "deepseek-v3-ep2": ("deepseek-v3:debug", {"expert": 2}),
    "deepseek-v3-ep2-tp2": ("deepseek-v3:debug", {"expert": 2, "tensor": 2}),
    "llama3-tp2": ("llama3:debug", {"tensor": 2}),
    "llama3-tp4-attn-tensor": ("llama3:debug", {"tensor": 2, "expert": 2, "attention": "tensor"}),
    "gpt-oss-ep2-tp2": ("gpt-oss:debug", {"expert": 2, "tensor": 2}),
    "qwen3-moe-ep4": ("qwen3-moe:debug", {"expert": 4}),
}


def _steps(model, ids_BS, tokens_BD):
    """Prefill logits [B, S, V], then one logits [B, V] per decode step fed `tokens_BD[:, i]`."""
    import torch

    b = ids_BS.shape[0]
    cache = model.new_cache(b, PROMPT + DECODE + 1)
    out = [model(ids_BS, cache=cache, start=0)]
    for i in range(DECODE):
        out.append(model(tokens_BD[:, i : i + 1], cache=cache, start=PROMPT + i, last_only=True)[:, -1])
    return out


def worker(rank: int, world: int, port: int, out_dir: str, cases: list[str]) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    result: dict = {}
    try:
        import torch
        import torch.distributed as dist

        torch.set_num_threads(1)
        from moebench.models import load
        from moebench.parallel.mesh import make_context
        from moebench.parallel.plan import local_batch, parallelize
        from moebench.workload import Parallel

        dist.init_process_group("gloo")
        for case in cases:
            name, fields = CASES[case]
            par = Parallel(world_size=world, **fields)
            ctx = make_context(par, "cpu")
            with torch.no_grad():
                model = load(name, seed=0)
                g = torch.Generator().manual_seed(1)
                ids = torch.randint(0, model.cfg.vocab_size, (BATCH, PROMPT), generator=g)
                cache = model.new_cache(BATCH, PROMPT + DECODE + 1)
                logits = model(ids, cache=cache, start=0)
                toks = [logits[:, -1].argmax(-1)]
                for i in range(DECODE - 1):
                    step = model(toks[-1][:, None], cache=cache, start=PROMPT + i, last_only=True)
                    toks.append(step[:, -1].argmax(-1))
                tokens = torch.stack(toks, dim=1)
                ref = _steps(model, ids, tokens)
                parallelize(model, ctx)
                mine = _steps(model, local_batch(ids, ctx), local_batch(tokens, ctx))
                rows = local_batch(torch.arange(BATCH), ctx)
                diffs = [float((m - r[rows]).abs().max()) for m, r in zip(mine, ref)]
                scale = max(float(r.abs().max()) for r in ref)
                result[case] = {"max_abs_diff": diffs, "ref_max_abs": scale, "rows": rows.tolist(),
                                "ep": ctx.ep.size, "dense": ctx.dense.size}
            dist.barrier()
        dist.destroy_process_group()
    except BaseException:  # noqa: BLE001 - reported to the test, which fails with the traceback
        result["error"] = traceback.format_exc()
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    sys.stdout.flush()
