"""Apply the workload's parallelism to a built model, and give each rank its slice of the batch.

Every rank builds the full model from the same seed (so its weights are bit-identical to a single-process run)
and then keeps its shard: experts over the EP group, attention heads and dense MLP columns over the dense group.
Embedding, norms, router, shared experts and LM head stay replicated. Peak memory while building is therefore
the full model (of the `layers:` run) per rank.
"""

from __future__ import annotations

import torch
from torch import nn

from moebench.parallel.expert import ExpertParallel, shard_experts
from moebench.parallel.mesh import ParallelContext
from moebench.parallel.tensor import shard_attention, shard_mlp


def parallelize(model: nn.Module, ctx: ParallelContext) -> nn.Module:
    """Shard `model` (a DecoderLM) in place for this rank; returns it."""
    from moebench.models.common.moe import MoE

    for blk in model.layers:
        if ctx.dense.size > 1:
            shard_attention(blk.attn, blk.layer, ctx.dense)
        if isinstance(blk.ffn, MoE):
            if ctx.ep.size > 1:
                shard_experts(blk.ffn, ctx.ep)
            if ctx.ep.size > 1 or ctx.dense.size > 1:
                blk.ffn.dispatcher = ExpertParallel(ctx.ep, ctx.dense, blk.ffn.n_experts)
        elif ctx.dense.size > 1:
            shard_mlp(blk.ffn, blk.layer, ctx.dense)
    if ctx.device == "cuda":
        torch.cuda.empty_cache()
    return model


def local_batch(ids_BS: torch.Tensor, ctx: ParallelContext) -> torch.Tensor:
    """This rank's rows of the global batch (its data-parallel attention replica's contiguous slice)."""
    n = ctx.layout.batch_slices
    per = ids_BS.shape[0] // n
    i = ctx.layout.batch_slice(ctx.rank)
    return ids_BS[i * per : (i + 1) * per]
