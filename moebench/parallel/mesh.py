"""Process groups and the data × expert × tensor DeviceMesh, from the environment a launcher sets.

Launchers: `moebench run --nproc N` (torch's elastic agent), an external `torchrun`, or `srun` (Slurm's
SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID are adopted as RANK / WORLD_SIZE / LOCAL_RANK; MASTER_ADDR must be
exported). NCCL on GPU, gloo on CPU; the groups the model's collectives use carry the workload's
`collective_timeout_s`, the control group (a gloo group: barriers, gathering metrics) the setup timeout.

Rank layout: tensor innermost (TP peers share a node), then expert, then data:
rank = (d · expert + e) · tensor + t.

Which ranks hold which work:
- experts are sharded over the `expert` dim (E / expert per rank);
- attention and dense MLPs are tensor-parallel over the *dense group*: the `tensor` dim when
  `parallel.attention` is `data`, the `expert × tensor` ranks when it is `tensor`;
- the batch is split over the ranks outside the dense group (`data × expert`, or `data`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Optional

from moebench.errors import BadInput, EnvironmentProblem

DIMS = ("data", "expert", "tensor")
# Bound on waits outside the timed steps (a rank building its model or measuring roofs while the others wait);
# the collectives of the timed steps use the workload's parallel.collective_timeout_s.
SETUP_TIMEOUT_S = 900.0


def watchdog_limit_s(timeout_s: float) -> float:
    """When moebench's own watchdog (parallel.faults.Guard) fails a collective that has not returned: later than
    the backend's timeout, so gloo raises first and says which collective."""
    return 1.5 * timeout_s + 10.0


def group_timeout_s(backend: str, timeout_s: float) -> float:
    """The timeout the timed collectives' process groups get. gloo: the workload's, it raises an error the guard
    handles. NCCL: past the watchdog's, because the elastic agent sets TORCH_NCCL_ASYNC_ERROR_HANDLING=1 and
    NCCL's own watchdog then SIGABRTs the healthy ranks that wait, before moebench could name the hung one."""
    return timeout_s if backend == "gloo" else 2 * watchdog_limit_s(timeout_s)


def adopt_slurm_env() -> None:
    """Under `srun` without torchrun, map Slurm's task ids to torch's RANK / WORLD_SIZE / LOCAL_RANK."""
    env = os.environ
    if "RANK" in env or int(env.get("SLURM_NTASKS", "1")) <= 1:
        return
    env["RANK"], env["WORLD_SIZE"] = env["SLURM_PROCID"], env["SLURM_NTASKS"]
    env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
    env.setdefault("MASTER_PORT", "29500")
    if "MASTER_ADDR" not in env:
        raise EnvironmentProblem(
            "srun started this rank but MASTER_ADDR is not set; export MASTER_ADDR=<first node> (docs/distributed.md)"
        )


def launched_world_size() -> int:
    """How many ranks the launcher started (1 when nothing launched us)."""
    adopt_slurm_env()
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_rank() -> int:
    return int(os.environ.get("RANK", "0"))


@dataclass(frozen=True)
class MeshShape:
    """Pure rank arithmetic for a data × expert × tensor mesh (no processes needed)."""

    data: int
    expert: int
    tensor: int
    attention: str = "data"  # data | tensor

    @classmethod
    def of(cls, par: Any) -> "MeshShape":
        return cls(par.data, par.expert, par.tensor, par.attention)

    @property
    def world_size(self) -> int:
        return self.data * self.expert * self.tensor

    def rank_of(self, d: int, e: int, t: int) -> int:
        return (d * self.expert + e) * self.tensor + t

    def coords(self, rank: int) -> dict[str, int]:
        t, rest = rank % self.tensor, rank // self.tensor
        return {"data": rest // self.expert, "expert": rest % self.expert, "tensor": t}

    def groups(self, dim: str) -> list[list[int]]:
        """Every group of `dim` (`data`, `expert`, `tensor`, or `dense`), each as its ranks in dim order."""
        D, E, T = range(self.data), range(self.expert), range(self.tensor)
        if dim == "tensor":
            return [[self.rank_of(d, e, t) for t in T] for d in D for e in E]
        if dim == "expert":
            return [[self.rank_of(d, e, t) for e in E] for d in D for t in T]
        if dim == "data":
            return [[self.rank_of(d, e, t) for d in D] for e in E for t in T]
        if dim == "dense":
            if self.attention == "data":
                return self.groups("tensor")
            return [[self.rank_of(d, e, t) for e in E for t in T] for d in D]
        raise ValueError(f"unknown mesh dim {dim!r}")

    @property
    def dense_size(self) -> int:
        return self.tensor if self.attention == "data" else self.expert * self.tensor

    @property
    def batch_slices(self) -> int:
        """Data-parallel attention replicas: each holds its own slice of the batch."""
        return self.world_size // self.dense_size

    def batch_slice(self, rank: int) -> int:
        c = self.coords(rank)
        return c["data"] * self.expert + c["expert"] if self.attention == "data" else c["data"]


def check_plan(layout: MeshShape, cfg: Any, name: str, batch_sizes: list[int], source: str = "workload") -> None:
    """One BadInput line (exit 3) when the model or the batch cannot be split as the workload asks."""
    g = layout.dense_size
    if cfg.n_routed_experts and cfg.n_routed_experts % layout.expert:
        raise BadInput(f"{source}: parallel.expert: {layout.expert} does not divide the {cfg.n_routed_experts} experts of {name}")
    if g > 1:
        what = "tensor" if layout.attention == "data" else "expert×tensor (attention: tensor)"
        kv = cfg.num_key_value_heads
        for field, n in (("attention heads", cfg.num_attention_heads), ("dense FFN width", cfg.intermediate_size)):
            if n % g:
                raise BadInput(f"{source}: parallel.{what} = {g} does not divide the {n} {field} of {name}")
        if cfg.attention != "mla" and kv % g and g % kv:  # more ranks than kv heads: kv heads are replicated
            raise BadInput(f"{source}: parallel.{what} = {g} and the {kv} key/value heads of {name} must divide one another")
    for b in batch_sizes:
        if b % layout.batch_slices:
            raise BadInput(
                f"{source}: scenario.batch_sizes: {b} is not divisible by the {layout.batch_slices} data-parallel "
                f"attention replicas (world_size / dense group {g})"
            )


@dataclass
class Group:
    """One process group as this rank sees it."""

    pg: Any
    rank: int
    size: int
    ranks: list[int]


@dataclass
class ParallelContext:
    """This rank's place in the mesh and the groups it talks on. Built by `init_parallel`."""

    layout: MeshShape
    rank: int
    world_size: int
    local_rank: int
    device: str  # "cpu" | "cuda" (the current CUDA device is set to LOCAL_RANK)
    backend: str  # gloo | nccl
    timeout_s: float
    mesh: Any  # torch.distributed.device_mesh.DeviceMesh over ("data", "expert", "tensor")
    ep: Group
    dense: Group
    control: Any  # a gloo group with the setup timeout, for host-side control (barriers, gathering metrics)
    store: Any  # a key-value store every rank reaches (heartbeats, failure reports)

    @property
    def coords(self) -> dict[str, int]:
        return self.layout.coords(self.rank)

    @property
    def is_rank0(self) -> bool:
        return self.rank == 0

    @property
    def setup_timeout_s(self) -> float:
        return max(SETUP_TIMEOUT_S, self.timeout_s)

    def barrier(self) -> None:
        """Line every rank up (before each timed repeat, after setup); a rank that never arrives is named."""
        from moebench.parallel.comm import barrier, watched

        with watched("barrier", profile=False, limit_s=1.5 * self.setup_timeout_s):
            barrier(self.control, self.setup_timeout_s)


def check_world_size(par: Any, source: str) -> int:
    """The launcher's world size must be the workload's `parallel.world_size` (exit 3 otherwise)."""
    n = launched_world_size()
    if n != par.world_size:
        how = f"--nproc {par.world_size}" if n == 1 else f"world_size: {n} in the workload"
        raise BadInput(
            f"{source}: parallel.world_size is {par.world_size} but {n} rank(s) were launched; run with {how}"
        )
    return n


def _subgroup(ranks_per_group: list[list[int]], rank: int, timeout: timedelta) -> Group:
    import torch.distributed as dist

    # A new group even when it spans the world: the default group carries the (long) setup timeout.
    pg, _ = dist.new_subgroups_by_enumeration(ranks_per_group, timeout=timeout)
    mine = next(g for g in ranks_per_group if rank in g)
    return Group(pg=pg, rank=mine.index(rank), size=len(mine), ranks=mine)


def _store(timeout: timedelta) -> Any:
    """A client of the launcher's key-value store (torchrun's agent hosts it, so it outlives a dead rank 0)."""
    import torch.distributed as dist

    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    base = dist.TCPStore(host, port, is_master=False, timeout=timeout, wait_for_workers=False)
    run = os.environ.get("TORCHELASTIC_RUN_ID") or os.environ.get("MOEBENCH_RUN_ID") or str(port)
    return dist.PrefixStore(f"moebench/{run}/", base)


def init_parallel(par: Any, device: str, source: str = "workload") -> Optional[ParallelContext]:
    """Join the process group the launcher set up; None for a single-process run (world_size 1)."""
    if check_world_size(par, source) == 1:
        return None
    import torch
    import torch.distributed as dist

    # The default group only sets up and synchronises ranks (barriers, gathering metrics): it gets the setup
    # timeout, since building a model or measuring roofs on one rank can take minutes while the others wait.
    timeout = timedelta(seconds=max(SETUP_TIMEOUT_S, par.collective_timeout_s))
    if device == "cuda":
        if not dist.is_nccl_available():
            raise EnvironmentProblem("device cuda needs NCCL, which this torch build lacks")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl", timeout=timeout, device_id=torch.device("cuda", local_rank))
    else:
        if not dist.is_gloo_available():
            raise EnvironmentProblem("a CPU run across processes needs gloo, which this torch build lacks")
        dist.init_process_group("gloo", timeout=timeout)
    return make_context(par, device)


def make_context(par: Any, device: str) -> ParallelContext:
    """The groups and mesh of `par` over an initialised default process group (collective: every rank calls it)."""
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import DeviceMesh

    n, rank = dist.get_world_size(), dist.get_rank()
    timeout = timedelta(seconds=group_timeout_s(dist.get_backend(), par.collective_timeout_s))
    layout = MeshShape.of(par)
    # Every rank creates every group, in the same order (new_group is collective).
    by_dim = {dim: _subgroup(layout.groups(dim), rank, timeout) for dim in DIMS}
    dense = by_dim["tensor"] if layout.dense_size == layout.tensor else _subgroup(layout.groups("dense"), rank, timeout)
    setup = timedelta(seconds=max(SETUP_TIMEOUT_S, par.collective_timeout_s))
    control = dist.group.WORLD if dist.get_backend() == "gloo" else dist.new_group(backend="gloo", timeout=setup)
    mesh_ids = torch.arange(n).view(layout.data, layout.expert, layout.tensor)
    mesh = DeviceMesh.from_group([by_dim[d].pg for d in DIMS], "cuda" if device == "cuda" else "cpu",
                                 mesh=mesh_ids, mesh_dim_names=DIMS)
    return ParallelContext(
        layout=layout, rank=rank, world_size=n, local_rank=int(os.environ.get("LOCAL_RANK", "0")), device=device,
        backend=dist.get_backend(), timeout_s=par.collective_timeout_s, mesh=mesh,
        ep=by_dim["expert"], dense=dense, control=control, store=_store(timedelta(seconds=10)),
    )


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
