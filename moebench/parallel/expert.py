"""Expert parallelism: each EP rank keeps E / EP experts; tokens travel to them and back by all-to-all.

Dispatch sends a token once per destination rank, not once per routed expert (DeepEP's layout): the row carries
the token's K routing slots with the ids of experts on that rank made local and every other slot set to -1 and
weight 0. The receiving rank runs its local experts on those rows (`MoE.experts`; ids of -1 contribute nothing)
and returns one partial sum per row; combine adds the partial sums back into the token's output.

One layer, as seen by one rank of an EP group of P ranks:
  1. count exchange: all_to_all of [P, 1 + E/P] int64 — rows for each peer, then tokens per local expert;
  2. dispatch: one all_to_all_single (uneven splits) of the rows, each carrying its routing slots (weights and
     local ids) after its activations;
  3. local experts on the received rows;
  4. combine: all_to_all_single back (the reverse splits) and index_add into the token order.

When the dense layers are tensor-parallel, every rank of the dense group holds the same tokens; each then takes
its own contiguous chunk through steps 1-4, and an all-gather over the dense group restores every token (profiled
as `L{layer}/allreduce`, the phase of the dense group's collectives).

Legend: T tokens, D model dim, K experts per token, E experts, P EP ranks, R rows sent, Q rows received.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from moebench.parallel.comm import all_gather_rows, all_to_all, watched
from moebench.parallel.mesh import Group
from moebench.profile.regions import region


def shard_experts(moe: nn.Module, ep: Group) -> None:
    """Keep this EP rank's contiguous block of experts (copies, so the full tensors can be freed)."""
    e_local = moe.n_experts // ep.size
    lo = ep.rank * e_local
    for name in ("w13_E2FD", "w2_EDF", "b13_E2F", "b2_ED"):
        p = getattr(moe, name)
        if p is not None:
            setattr(moe, name, nn.Parameter(p.data[lo : lo + e_local].clone(), requires_grad=False))
    moe.expert_offset = lo


def _bytes(x_RC: torch.Tensor) -> torch.Tensor:
    """[R, C] of any dtype as [R, C · itemsize] uint8 (a view when contiguous)."""
    return x_RC.contiguous().view(torch.uint8)


def chunk_bounds(t: int, parts: int, i: int) -> tuple[int, int]:
    """Rows [lo, hi) of chunk i when t rows are split into `parts` nearly equal contiguous chunks."""
    base, extra = divmod(t, parts)
    lo = i * base + min(i, extra)
    return lo, lo + base + (1 if i < extra else 0)


class ExpertParallel:
    """`MoE.dispatcher` for one layer: (x_TD, weights_TK, ids_TK, moe) -> routed output y_TD.

    Shared experts are not involved: MoE.forward adds them after the dispatcher returns.
    """

    def __init__(self, ep: Group, dense: Group, n_experts: int):
        self.ep, self.dense = ep, dense
        self.e_local = n_experts // ep.size
        # tokens each local expert received in the last call (from every source rank): expert load, per EP rank
        self.last_tokens_per_local_expert: list[int] = []

    def __call__(self, x_TD: torch.Tensor, weights_TK: torch.Tensor, ids_TK: torch.Tensor, moe: nn.Module) -> torch.Tensor:
        layer = moe.layer
        t_all = x_TD.shape[0]
        if self.dense.size > 1:  # tokens are replicated over the dense group: each rank takes its own chunk
            lo, hi = chunk_bounds(t_all, self.dense.size, self.dense.rank)
            x_TD, weights_TK, ids_TK = x_TD[lo:hi], weights_TK[lo:hi], ids_TK[lo:hi]
        if self.ep.size == 1:
            with region(f"L{layer}/experts"):
                y_TD = moe.experts(x_TD, weights_TK, ids_TK)
        else:
            # Only the exchanges are communication (MEASURE.md: time in collectives); packing rows for them and
            # scattering the answers back are routing and expert work on this rank.
            with region(f"L{layer}/router"):
                packed = self._pack(x_TD, weights_TK, ids_TK)
            with watched(f"L{layer}/dispatch"):
                got_rows, send, recv = self._exchange(*packed)
            with region(f"L{layer}/experts"):
                rx_QD, rw_QK, rids_QK = self._unpack(got_rows, x_TD, weights_TK, ids_TK)
                ry_QD = moe.experts(rx_QD, rw_QK, rids_QK) if rx_QD.shape[0] else rx_QD
            with watched(f"L{layer}/combine"):
                back_RD = all_to_all(ry_QD, recv, send, self.ep.pg)
            with region(f"L{layer}/experts"):
                y_TD = torch.zeros_like(x_TD).index_add_(0, packed[2], back_RD.to(x_TD.dtype))
        if self.dense.size > 1:  # a dense-group collective: named like the group's all-reduces, for the profiler
            with watched(f"L{layer}/allreduce"):
                sizes = [hi - lo for lo, hi in (chunk_bounds(t_all, self.dense.size, i) for i in range(self.dense.size))]
                y_TD = all_gather_rows(y_TD, sizes, self.dense.rank, self.dense.pg)
        return y_TD

    def _pack(self, x_TD, weights_TK, ids_TK):
        """(payload rows, rows per destination rank, source token of each row, the count-exchange message)."""
        P, El = self.ep.size, self.e_local
        t = x_TD.shape[0]
        dest_TK = torch.div(ids_TK, El, rounding_mode="floor")
        hit_TP = torch.zeros(t, P, dtype=torch.bool, device=x_TD.device)
        hit_TP.scatter_(1, dest_TK, True)
        # rows sorted by destination rank, then by token: exactly the layout all_to_all_single splits expect
        dest_R, tok_R = hit_TP.T.nonzero(as_tuple=True)
        mine_RK = dest_TK[tok_R] == dest_R[:, None]
        lid_RK = torch.where(mine_RK, ids_TK[tok_R] - dest_R[:, None] * El, -1)
        w_RK = torch.where(mine_RK, weights_TK[tok_R], 0)
        rows_P = hit_TP.sum(0)
        per_expert_PE = torch.bincount(ids_TK.reshape(-1), minlength=P * El).view(P, El)
        counts = torch.cat([rows_P[:, None], per_expert_PE], dim=1).to(torch.int64)
        # One payload all-to-all, not three: each row's bytes are its activations, then its routing slots as fp32
        # (weights, then local ids: small integers, exact in fp32). Decode steps are latency-bound.
        slots_RK2 = torch.cat([w_RK.float(), lid_RK.float()], dim=1)
        rows = torch.cat([_bytes(x_TD[tok_R]), _bytes(slots_RK2)], dim=1)
        return rows, rows_P, tok_R, counts

    def _exchange(self, rows, rows_P, tok_R, counts):
        """The count exchange, then the payload: (rows received, rows sent per peer, rows received per peer)."""
        recv_counts = torch.empty_like(counts)
        dist.all_to_all_single(recv_counts, counts, group=self.ep.pg)
        # Host sync: the split sizes must be Python ints before the payload all-to-all can be issued.
        send = rows_P.tolist()
        got = recv_counts.tolist()
        recv = [row[0] for row in got]
        self.last_tokens_per_local_expert = [sum(row[1 + e] for row in got) for e in range(self.e_local)]
        return all_to_all(rows, send, recv, self.ep.pg), send, recv

    def _unpack(self, got_rows, x_TD, weights_TK, ids_TK):
        split = x_TD.shape[1] * x_TD.element_size()
        rx_QD = got_rows[:, :split].contiguous().view(x_TD.dtype)
        rslots = got_rows[:, split:].contiguous().view(torch.float32)
        k = ids_TK.shape[1]
        return rx_QD, rslots[:, :k].to(weights_TK.dtype), rslots[:, k:].to(ids_TK.dtype)
